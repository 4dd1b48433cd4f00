"""`selective_state_update`: one decoding step of the scan, with mamba_ssm's signature and shapes.

Glossary: B batch, D channels, N state size, G groups sharing (B, C), H heads, P channels per head
(D = H * P), S rows of a state cache.

The compiled op `torch.ops.hamburg_mamba.selective_state_update` works on channels: state (B, D, N), x (B, D).
This wrapper maps mamba_ssm's layouts onto it:
- a heads axis (Mamba-2 style) is flattened, channel h * P + p; with G groups over H heads, the op's channel
  groups d // (D / G) are then exactly mamba_ssm's head groups h // (H / G);
- `state_batch_indices` gathers the rows of a larger cache (a copy of B rows), runs the op on them and scatters
  them back with index_copy_, so rows outside the batch are never written: two copies of B * D * N elements;
- a state in another dtype than the compute type (float32; float64 for float64 x), e.g. a float16 or bfloat16
  cache, is updated through a float32 copy that is rounded back into it: the output reads the float32 state
  (as mamba_ssm's kernel), the stored state is rounded once per step;
- inputs in mixed dtypes (B, C in float32 with bfloat16 x, as mamba_ssm allows) are all converted to the compute
  type (B * D elements each); parameters A, D, dt_bias, dt_scale always are.
"""

from __future__ import annotations

import torch

from hamburg_mamba import _C  # noqa: F401  (loading the library runs the op registrations)
from hamburg_mamba.ops.reference import refuse_complex

_ops = torch.ops.hamburg_mamba
_OP = "selective_state_update"
# State dtypes updated through a copy in the compute type and rounded back.
_HALF_STATES = (torch.float16, torch.bfloat16)


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    state_batch_indices: torch.Tensor | None = None,
    dt_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of the scan for streaming inference; updates `state` in place. Drop-in for mamba_ssm's
    `selective_state_update` (same positional arguments), plus `dt_scale`.

    Shapes, without or with a heads axis: state (B, D, N) or (B, H, P, N), float32, float16, bfloat16 (or
    float64 with float64 x); x, dt, z (B, D) or (B, H, P); A (D, N) or (H, P, N) (a stride-0 broadcast of one
    value per head is fine); B, C (B, N) or (B, G, N), G dividing H (or D without heads); D, dt_bias (D,) or
    (H, P); dt_scale (B,) non-negative. state_batch_indices (B,) integer: row b updates
    state[state_batch_indices[b]] of a cache of S >= B rows (indices distinct; a negative one is a padding slot
    with output 0 and no state touched, as mamba_ssm). Returns the output shaped like x, in x's dtype.
    Equals one step of `selective_scan_fn` with initial_state=state; the math is `selective_state_update_ref`.
    Inference only: it has no autograd formula (train with selective_scan_fn).
    """
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (state, x, dt, A, B, C, D, z, dt_bias, dt_scale)
    ):
        raise RuntimeError(
            "selective_state_update is an inference op without gradients; call it under torch.no_grad() "
            "or torch.inference_mode(), and train with selective_scan_fn"
        )
    refuse_complex(_OP, A=A, B=B, C=C)
    if state_batch_indices is not None:
        return _update_cache_rows(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, dt_scale)
    if state.dim() == 4:
        return _update_heads(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_scale)
    return _update_channels(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_scale)


def _update_channels(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_scale):
    """The op's own layout: state (B, D, N), x (B, D); a float16/bfloat16 state through a copy, mixed input dtypes."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    out_dtype = x.dtype
    inputs = (x, dt, B, C) + ((z,) if z is not None else ())
    if any(t.dtype != x.dtype for t in inputs):
        x, dt, B, C = (t.to(compute) for t in (x, dt, B, C))
        z = None if z is None else z.to(compute)
    A, D, dt_bias, dt_scale = (None if t is None else t.to(compute) for t in (A, D, dt_bias, dt_scale))
    if state.dtype not in _HALF_STATES:
        # The compute type itself, or a dtype the op refuses with its own message.
        out = _ops.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus)
        return out.to(out_dtype)
    work = state.to(compute)  # (B, D, N) a copy
    out = _ops.selective_state_update(work, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus)
    state.copy_(work)
    return out.to(out_dtype)


def _update_heads(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_scale):
    """state (B, H, P, N): flattened to the op's channels h * P + p (a view where the strides allow)."""
    batch, heads, per_head, dstate = state.shape
    _check_heads_shapes(state, x, dt, A, B, C, D, z, dt_bias)
    dim = heads * per_head

    def flat(t, shape):
        return None if t is None else t.reshape(shape)

    mergeable = heads == 1 or per_head == 1 or state.stride(1) == per_head * state.stride(2)
    work = state.view(batch, dim, dstate) if mergeable else state.reshape(batch, dim, dstate)  # (B, D, N)
    out = _update_channels(
        work,
        x.reshape(batch, dim),
        dt.reshape(batch, dim),
        A.reshape(dim, dstate),
        B,
        C,
        flat(D, (dim,)),
        flat(z, (batch, dim)),
        flat(dt_bias, (dim,)),
        dt_softplus,
        dt_scale,
    )
    if not mergeable:
        state.copy_(work.view(state.shape))
    return out.view(batch, heads, per_head)


def _check_heads_shapes(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """mamba_ssm's shape rules with a heads axis, as ValueErrors naming the argument."""
    _, heads, per_head, dstate = state.shape
    batch = x.shape[0] if x.dim() > 0 else -1
    expected = {
        "x": (x, (batch, heads, per_head)),
        "dt": (dt, (batch, heads, per_head)),
        "A": (A, (heads, per_head, dstate)),
        "z": (z, (batch, heads, per_head)),
        "D": (D, (heads, per_head)),
        "dt_bias": (dt_bias, (heads, per_head)),
    }
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(
                f"{_OP}: argument '{name}' must have shape {shape} for state of shape "
                f"{tuple(state.shape)} (B, H, P, N), got {tuple(t.shape)}"
            )
    if B.dim() not in (2, 3) or (B.dim() == 3 and heads % B.shape[1] != 0):
        raise ValueError(
            f"{_OP}: argument 'B' must have shape (B, N) or (B, G, N) with G dividing H = {heads} "
            f"heads, got {tuple(B.shape)}"
        )


def _update_cache_rows(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, dt_scale):
    """Gathers rows state[state_batch_indices] (B rows copied), updates them, scatters them back."""
    indices = _checked_indices(state, x, state_batch_indices)
    keep = indices >= 0  # (B,) negative: padding slot
    if not bool(keep.all()):
        out = torch.zeros_like(x)
        rows = keep.nonzero().squeeze(1)  # (B',)
        if rows.numel() > 0:
            out[rows] = _update_cache_rows(
                state,
                x[rows],
                dt[rows],
                A,
                B[rows],
                C[rows],
                D,
                None if z is None else z[rows],
                dt_bias,
                dt_softplus,
                indices[rows],
                None if dt_scale is None else dt_scale[rows],
            )
        return out
    work = state.index_select(0, indices)  # (B, ...) a copy of the batch's rows
    update = _update_heads if work.dim() == 4 else _update_channels
    out = update(work, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_scale)
    state.index_copy_(0, indices, work)
    return out


def _checked_indices(state, x, indices: torch.Tensor) -> torch.Tensor:
    """Checks state_batch_indices: (B,) integers on state's device, < S, the non-negative ones distinct.
    The value checks read the indices on the host (a synchronisation on CUDA): an index out of range would
    otherwise be a device-side assert, and a repeated one a race between two updates of the same row."""
    batch = x.shape[0] if x.dim() > 0 else -1
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"{_OP}: argument 'state_batch_indices' must be an integer tensor, got {indices.dtype}")
    if tuple(indices.shape) != (batch,):
        raise ValueError(
            f"{_OP}: argument 'state_batch_indices' must have shape (B,) = ({batch},), got {tuple(indices.shape)}"
        )
    if indices.device != state.device:
        raise ValueError(
            f"{_OP}: argument 'state_batch_indices' is on {indices.device} but 'state' is on "
            f"{state.device}; all tensors must be on the same device"
        )
    indices = indices.long()
    rows = state.shape[0]
    valid = indices[indices >= 0]
    if valid.numel() > 0 and int(valid.max()) >= rows:
        raise ValueError(
            f"{_OP}: argument 'state_batch_indices' must be < S = {rows} (state.shape[0]), got {int(valid.max())}"
        )
    if valid.unique().numel() != valid.numel():
        raise ValueError(
            f"{_OP}: argument 'state_batch_indices' must not repeat a row (two updates of one state row in one step)"
        )
    return indices
