"""Python front of the compiled selective-scan ops: public wrappers, fake (meta) kernels, autograd.

Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C).

The ops themselves live in `torch.ops.hamburg_mamba` (C++/CUDA, registered by `hamburg_mamba._C`):
    selective_scan_fwd(u, delta, A, B, C, D?, z?, delta_bias?, initial_state?, dt_scale?,
                       delta_softplus, save_checkpoints) -> (out, last_state, checkpoints)
    selective_scan_bwd(dout, dlast_state?, u, delta, A, B, C, D?, z?, delta_bias?, initial_state?,
                       dt_scale?, checkpoints, delta_softplus)
        -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state)
    selective_state_update(state!, x, dt, A, B, C, D?, z?, dt_bias?, dt_scale?, dt_softplus) -> out
                       (public wrapper with mamba_ssm's layouts: hamburg_mamba.ops.state_update)
    mamba_block_step(...) -> out    (CPU only; wrapper and fake kernel: hamburg_mamba.ops.block_step)
The math is specified by `hamburg_mamba.ops.reference.selective_scan_ref`.
"""

from __future__ import annotations

import torch

from hamburg_mamba import _C  # noqa: F401  (loading the library runs the op registrations)
from hamburg_mamba.ops.reference import refuse_complex

# Steps between the states the forward saves for the backward (kCheckpointInterval in selective_scan.h).
CHECKPOINT_INTERVAL = 64

_ops = torch.ops.hamburg_mamba


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    dt_scale: torch.Tensor | None = None,
):
    """Selective scan (Mamba S6) with the compiled CPU/CUDA kernels; drop-in for mamba_ssm's function.

    Shapes: u, delta, z (B, D, L); A (D, N), real (complex A, mamba_ssm's S4D variant, is refused);
    B, C (B, N, L) or (B, G, N, L), or (D, N) input-independent (channel d's row at every batch and step, as
    mamba_ssm; see `_variable_layout` for its cost); D, delta_bias (D,); initial_state (B, D, N);
    dt_scale (B, L). Returns `out` (B, D, L), or `(out, last_state)` with
    last_state (B, D, N) in float32 (float64 for float64 inputs). See `selective_scan_ref` for the math.

    Differentiable in every tensor argument but `dt_scale`, which is data (elapsed time between events,
    0 on padded steps); the gradient also flows through `last_state`.
    """
    if dt_scale is not None and dt_scale.requires_grad:
        raise ValueError(
            "selective_scan_fn: argument 'dt_scale' is data (elapsed time per step) and is not "
            "differentiable; pass dt_scale.detach()"
        )
    refuse_complex("selective_scan_fn", A=A, B=B, C=C)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    out_dtype = u.dtype
    if (B.dim() == 2 or C.dim() == 2) and u.dtype in (torch.float16, torch.bfloat16):
        # The kernels read B and C in u's dtype, but an input-independent (D, N) matrix is a weight and mamba_ssm
        # keeps it in float32: rounding it to bfloat16 moves the output by up to 2**-8 relative per term. So the
        # scan runs in float32 here (the half-precision inputs convert exactly; the kernels compute in float32
        # either way) and only `out` is rounded back, as the half-precision kernels round it.
        u, delta = u.float(), delta.float()
        z = None if z is None else z.float()
        B = B if B.dim() == 2 else B.float()
        C = C if C.dim() == 2 else C.float()
    B, C = _variable_layout(u, A, B, C)
    out, last_state, _ = _ops.selective_scan_fwd(
        u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus, needs_grad
    )
    out = out.to(out_dtype)
    return (out, last_state) if return_last_state else out


def _variable_layout(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor):
    """B, C in the kernels' (B, G, N, L) layout when either is an input-independent (D, N) matrix.

    A (D, N) matrix is per channel, so it becomes G = D groups: converted to u's dtype (float32 or float64 here:
    `selective_scan_fn` runs half-precision inputs in float32 on this path), materialised once over
    L as (D, N, L) (the kernels read steps contiguously) and broadcast over the batch with stride 0; autograd
    sums its gradient over batch and steps. The other of B, C, when input-dependent, is copied out to the same
    D groups (B * D * N * L elements). Cost, measured on the CPU kernels (B, D, L, N) = (4, 256, 512, 16):
    a scan with D groups of one channel fills one SIMD lane where G = 1 fills all of them, 8.6x the forward
    time and 6x forward + backward; the backward also holds dB, dC as (B, D, N, L) in float32.
    """
    if B.dim() != 2 and C.dim() != 2:
        return B, C
    if u.dim() != 3:
        raise ValueError(f"selective_scan_fn: argument 'u' must have shape (B, D, L), got {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    dstate = A.shape[-1] if A.dim() == 2 else -1

    def per_channel(name: str, M: torch.Tensor) -> torch.Tensor:
        if M.dim() == 2:
            if tuple(M.shape) != (dim, dstate):
                raise ValueError(
                    f"selective_scan_fn: argument '{name}' must have shape (B, N, L), (B, G, N, L) "
                    f"or (D, N) = ({dim}, {dstate}), got {tuple(M.shape)}"
                )
            rows = M.to(u.dtype)[:, :, None].expand(dim, dstate, seqlen).contiguous()  # (D, N, L)
            return rows[None].expand(batch, dim, dstate, seqlen)  # (B, D, N, L), stride 0 over B
        grouped = M.unsqueeze(1) if M.dim() == 3 else M  # (B, G, N, L)
        if grouped.dim() != 4 or dim % grouped.shape[1] != 0:
            raise ValueError(
                f"selective_scan_fn: argument '{name}' must have shape (B, N, L), (B, G, N, L) "
                f"with G dividing D = {dim}, or (D, N), got {tuple(M.shape)}"
            )
        return grouped.repeat_interleave(dim // grouped.shape[1], dim=1)  # (B, D, N, L)

    return per_channel("B", B), per_channel("C", C)


def cpu_isa() -> str:
    """The instruction set the CPU kernels use on this machine: 'avx512', 'avx2' or 'baseline'."""
    return _ops.cpu_isa()


# --------------------------------------------------------------------------------------------------
# Fake kernels: output shapes and dtypes for torch.compile and meta tensors.
#
# The dispatcher sends a call to the Meta kernel (these functions) as soon as one argument is on the meta
# device, whatever the device of the others, so each fake kernel checks devices itself, with the message of
# the compiled kernels' host check (selective_scan_host.cpp); otherwise a meta tensor among CPU tensors
# would return uninitialised CPU memory.


def _check_one_device(op: str, reference: str, tensors: dict[str, torch.Tensor | None]) -> None:
    """Raises ValueError naming the first tensor not on the device of `tensors[reference]`."""
    device = tensors[reference].device
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(
                f"hamburg_mamba.{op}: argument '{name}' is on {t.device} but '{reference}' is on {device}; "
                "all tensors must be on the same device"
            )


@torch.library.register_fake("hamburg_mamba::selective_scan_fwd")
def _selective_scan_fwd_fake(
    u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus, save_checkpoints
):
    _check_one_device(
        "selective_scan_fwd",
        "u",
        dict(
            u=u,
            delta=delta,
            A=A,
            B=B,
            C=C,
            D=D,
            z=z,
            delta_bias=delta_bias,
            initial_state=initial_state,
            dt_scale=dt_scale,
        ),
    )
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    cdt = _compute_dtype(u.dtype)
    out = u.new_empty((batch, dim, seqlen))
    last_state = u.new_empty((batch, dim, dstate), dtype=cdt)
    n_chunks = -(-seqlen // CHECKPOINT_INTERVAL)
    shape = (batch, dim, n_chunks, dstate) if save_checkpoints else (0,)
    return out, last_state, u.new_empty(shape, dtype=cdt)


@torch.library.register_fake("hamburg_mamba::selective_scan_bwd")
def _selective_scan_bwd_fake(
    dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, checkpoints, delta_softplus
):
    _check_one_device(
        "selective_scan_bwd",
        "u",
        dict(
            dout=dout,
            dlast_state=dlast_state,
            u=u,
            delta=delta,
            A=A,
            B=B,
            C=C,
            D=D,
            z=z,
            delta_bias=delta_bias,
            initial_state=initial_state,
            dt_scale=dt_scale,
            checkpoints=checkpoints,
        ),
    )
    cdt = _compute_dtype(u.dtype)

    def like(t):
        return t.new_empty(t.shape) if t is not None else u.new_empty((0,), dtype=cdt)

    return (like(u), like(u), like(A), like(B), like(C), like(D), like(z), like(delta_bias), like(initial_state))


@torch.library.register_fake("hamburg_mamba::selective_state_update")
def _selective_state_update_fake(state, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus):
    _check_one_device(
        "selective_state_update",
        "x",
        dict(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, dt_scale=dt_scale),
    )
    return x.new_empty(x.shape)


# --------------------------------------------------------------------------------------------------
# Autograd: the backward is its own op.


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus, _save = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, output[2])
    ctx.delta_softplus = delta_softplus


def _backward(ctx, dout, dlast_state, _dcheckpoints):
    u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, checkpoints = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(u)
    du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state = _ops.selective_scan_bwd(
        dout,
        dlast_state,
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        initial_state,
        dt_scale,
        checkpoints,
        ctx.delta_softplus,
    )
    return (
        du,
        ddelta,
        dA,
        dB,
        dC,
        dD if D is not None else None,
        dz if z is not None else None,
        ddelta_bias if delta_bias is not None else None,
        dinitial_state if initial_state is not None else None,
        None,  # dt_scale is data
        None,
        None,
    )


torch.library.register_autograd("hamburg_mamba::selective_scan_fwd", _backward, setup_context=_setup_context)
