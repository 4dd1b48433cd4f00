"""The whole Mamba-1 mixer as one autograd function (mamba_ssm's `mamba_inner_fn`), on the compiled ops.

Glossary: B batch, L steps, M d_model, E d_inner, N d_state, R dt_rank, K d_conv, G groups sharing (B, C).

    xz (B, 2E, L) -> x, z -> causal conv + SiLU -> x_proj -> (dt, B, C) -> dt_proj -> selective scan
    (D skip, SiLU(z) gate) -> out_proj -> (B, L, M)

Why one function. Autograd over the separate ops saves, per layer, the conv output before and after the SiLU,
the scan's input, delta, z, the gated output and the projections' inputs, each (B, E, L). This function saves
only xz (B, 2E, L), the gated scan output (B, E, L) (out_proj's weight gradient needs it) and the scan's state
checkpoints (B, E, L / 64, N), and its backward recomputes the rest: the conv, x_proj and dt_proj products
(checkpoint_lvl=1, as mamba_ssm). The scan itself is never re-run: its backward op starts from the
checkpoints. In the backward, the recomputed pre-scan part (conv, projections, optional RMS norms, B/C layout)
is differentiated by autograd, seeded with the scan backward op's gradients; so each op's own backward (the
compiled conv's among them) is reused rather than rewritten.

The math is specified by `hamburg_mamba.ops.reference_mixer.mamba_inner_ref`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from hamburg_mamba.ops.causal_conv1d import causal_conv1d_fn
from hamburg_mamba.ops.reference import refuse_complex
from hamburg_mamba.ops.reference_mixer import rms_norm_over_channels
from hamburg_mamba.ops.selective_scan import _ops, _variable_layout

CHECKPOINT_LEVELS = (0, 1)


class MixerTensors(NamedTuple):
    """The tensor arguments of `mamba_inner_fn`, in the order the autograd function receives them."""

    xz: torch.Tensor
    conv1d_weight: torch.Tensor
    conv1d_bias: torch.Tensor | None
    x_proj_weight: torch.Tensor
    delta_proj_weight: torch.Tensor
    out_proj_weight: torch.Tensor
    out_proj_bias: torch.Tensor | None
    A: torch.Tensor
    B: torch.Tensor | None
    C: torch.Tensor | None
    D: torch.Tensor | None
    delta_bias: torch.Tensor | None
    B_proj_bias: torch.Tensor | None
    C_proj_bias: torch.Tensor | None
    b_rms_weight: torch.Tensor | None
    c_rms_weight: torch.Tensor | None
    dt_rms_weight: torch.Tensor | None
    dt_scale: torch.Tensor | None


class MixerOptions(NamedTuple):
    delta_softplus: bool
    checkpoint_lvl: int
    rms_eps: float


# The tensors the recomputed pre-scan graph differentiates (the rest get their gradients from the scan
# backward op or from out_proj directly).
_PRE_SCAN_LEAVES = (
    "conv1d_weight",
    "conv1d_bias",
    "x_proj_weight",
    "delta_proj_weight",
    "B",
    "C",
    "B_proj_bias",
    "C_proj_bias",
    "b_rms_weight",
    "c_rms_weight",
    "dt_rms_weight",
)


def mamba_inner_fn(
    xz: torch.Tensor,
    conv1d_weight: torch.Tensor,
    conv1d_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    delta_proj_weight: torch.Tensor,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor | None = None,
    C: torch.Tensor | None = None,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    B_proj_bias: torch.Tensor | None = None,
    C_proj_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    checkpoint_lvl: int = 1,
    b_rms_weight: torch.Tensor | None = None,
    c_rms_weight: torch.Tensor | None = None,
    dt_rms_weight: torch.Tensor | None = None,
    b_c_dt_rms_eps: float = 1e-6,
    *,
    dt_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Mamba-1 mixer after in_proj, fused for training; drop-in for mamba_ssm's `mamba_inner_fn`.

    Shapes: xz (B, 2E, L), the in_proj output, last dimension contiguous or not; conv1d_weight (E, 1, K)
    (nn.Conv1d's) or (E, K); conv1d_bias (E,); x_proj_weight (R + 2N, E); delta_proj_weight (E, R);
    out_proj_weight (M, E); out_proj_bias (M,); A (E, N) real; B, C None (projected from x_proj's output, as
    in Mamba) or given as (E, N), (B, N, L) or (B, G, N, L); D, delta_bias (E,); B_proj_bias, C_proj_bias,
    b_rms_weight, c_rms_weight (N,) (only with projected B, C); dt_rms_weight (E,).
    checkpoint_lvl 1 recomputes the conv output and delta in the backward; 0 keeps them.
    dt_scale (B, L), keyword only, is hamburg_mamba's per-step clock (see `selective_scan_fn`; data, no
    gradient). Returns (B, L, M) in xz's dtype. Under autocast, xz and the three projection weights are cast
    to the autocast dtype first, as mamba_ssm does for the weights. See `mamba_inner_ref` for the math.
    """
    tensors = MixerTensors(
        xz,
        conv1d_weight,
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        out_proj_weight,
        out_proj_bias,
        A,
        B,
        C,
        D,
        delta_bias,
        B_proj_bias,
        C_proj_bias,
        b_rms_weight,
        c_rms_weight,
        dt_rms_weight,
        dt_scale,
    )
    _check_inputs(tensors, checkpoint_lvl)
    tensors = _autocast_inputs(tensors)
    options = MixerOptions(bool(delta_softplus), int(checkpoint_lvl), float(b_c_dt_rms_eps))
    return _MambaInnerFn.apply(options, *tensors)


class _MambaInnerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, options: MixerOptions, *tensors):
        t = MixerTensors(*tensors)
        with torch.autocast(t.xz.device.type, enabled=False):
            if options.checkpoint_lvl == 0:
                with torch.enable_grad():
                    ctx.kept_graph = _pre_scan_graph(t, options, ctx.needs_input_grad[1:])
                scan_in = ctx.kept_graph[1]
            else:
                scan_in = _pre_scan(_conv_input(t.xz), t, options)
            u, delta, B, C = scan_in.detached()
            out_z, _, checkpoints = _ops.selective_scan_fwd(
                u,
                delta,
                t.A,
                B,
                C,
                t.D,
                _gate(t.xz).to(u.dtype),
                t.delta_bias,
                None,
                t.dt_scale,
                options.delta_softplus,
                True,
            )  # (B, E, L) gated output
            out_z = out_z.to(t.xz.dtype)  # float32 when a given (E, N) B or C made the scan run in float32
            ctx.options = options
            ctx.save_for_backward(*tensors, checkpoints, out_z)
            return F.linear(out_z.transpose(1, 2), t.out_proj_weight, t.out_proj_bias)  # (B, L, M)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        *tensors, checkpoints, out_z = ctx.saved_tensors
        t = MixerTensors(*tensors)
        needs = MixerTensors(*ctx.needs_input_grad[1:])
        options = ctx.options
        with torch.autocast(t.xz.device.type, enabled=False):
            if options.checkpoint_lvl == 0:
                leaves, scan_in = ctx.kept_graph
                del ctx.kept_graph
            else:
                with torch.enable_grad():
                    leaves, scan_in = _pre_scan_graph(t, options, needs)
            dy = torch.matmul(t.out_proj_weight.t(), dout.transpose(1, 2))  # (B, E, L)
            u, delta, B, C = scan_in.detached()
            du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, _ = _ops.selective_scan_bwd(
                dy.to(u.dtype),
                None,
                u,
                delta,
                t.A,
                B,
                C,
                t.D,
                _gate(t.xz).to(u.dtype),
                t.delta_bias,
                None,
                t.dt_scale,
                checkpoints,
                options.delta_softplus,
            )
            grads = _pre_scan_grads(leaves, scan_in, (du, ddelta, dB, dC))
            if needs.xz:
                grads["xz"] = torch.cat([grads.pop("x"), dz.to(t.xz.dtype)], dim=1)  # (B, 2E, L)
            if needs.out_proj_weight:
                grads["out_proj_weight"] = torch.einsum("blm,bel->me", dout, out_z).to(t.out_proj_weight.dtype)
            if needs.out_proj_bias:
                grads["out_proj_bias"] = dout.sum(dim=(0, 1)).to(t.out_proj_bias.dtype)
            grads.update(A=dA, D=dD, delta_bias=ddelta_bias)
        return (None, *(grads.get(name) if need else None for name, need in zip(t._fields, needs, strict=True)))


class ScanInputs(NamedTuple):
    """What the scan reads besides the mixer's own parameters: u (B, E, L), delta (B, E, L), B, C."""

    u: torch.Tensor
    delta: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    def detached(self) -> tuple[torch.Tensor, ...]:
        return tuple(t.detach() for t in self)


def _conv_input(xz: torch.Tensor) -> torch.Tensor:
    return xz[:, : xz.shape[1] // 2]  # (B, E, L)


def _gate(xz: torch.Tensor) -> torch.Tensor:
    return xz[:, xz.shape[1] // 2 :]  # (B, E, L)


def _pre_scan(x: torch.Tensor, t: MixerTensors, options: MixerOptions) -> ScanInputs:
    """Conv + SiLU, x_proj, dt_proj, B and C (projected or given), optional RMS norms. x: (B, E, L)."""
    dt_rank = t.delta_proj_weight.shape[1]
    dstate = t.A.shape[-1]
    weight = t.conv1d_weight.reshape(t.conv1d_weight.shape[0], -1)  # (E, K)
    xc = causal_conv1d_fn(x, weight, t.conv1d_bias, activation="silu")  # (B, E, L)
    x_dbl = torch.matmul(t.x_proj_weight, xc)  # (B, R + 2N, L)
    delta = torch.matmul(t.delta_proj_weight, x_dbl[:, :dt_rank])  # (B, E, L)
    B = t.B if t.B is not None else _projected(x_dbl[:, dt_rank : dt_rank + dstate], t.B_proj_bias)
    C = t.C if t.C is not None else _projected(x_dbl[:, dt_rank + dstate :], t.C_proj_bias)
    if t.dt_rms_weight is not None:
        delta = rms_norm_over_channels(delta, t.dt_rms_weight, options.rms_eps)
    if t.b_rms_weight is not None:
        B = rms_norm_over_channels(B, t.b_rms_weight, options.rms_eps)
    if t.c_rms_weight is not None:
        C = rms_norm_over_channels(C, t.c_rms_weight, options.rms_eps)
    if (B.dim() == 2 or C.dim() == 2) and xc.dtype in (torch.float16, torch.bfloat16):
        # A given (E, N) B or C is a weight that the scan reads in float32, as selective_scan_fn does (see there).
        xc, delta = xc.float(), delta.float()
        B, C = (M if M.dim() == 2 else M.float() for M in (B, C))
    B, C = _variable_layout(xc, t.A, *_same_groups(B, C, xc.shape[1]))
    return ScanInputs(xc, delta, B, C)


def _same_groups(B: torch.Tensor, C: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B and C in one (B, G, N, L) layout when one is given with groups and the other is projected (the scan
    op reads both with one group count): the one with fewer groups is repeated to the other's count, or both
    to one group per channel (G = E) when neither count is 1. (E, N) matrices are left to `_variable_layout`."""
    if B.dim() == 2 or C.dim() == 2 or B.shape == C.shape:
        return B, C
    B4, C4 = (M if M.dim() == 4 else M.unsqueeze(1) for M in (B, C))  # (B, G, N, L)
    gb, gc = B4.shape[1], C4.shape[1]
    groups = gc if gb == 1 else gb if gc == 1 else dim
    return B4.repeat_interleave(groups // gb, dim=1), C4.repeat_interleave(groups // gc, dim=1)


def _projected(rows: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Rows of x_dbl (B, N, L) as the scan's B or C, plus the projection bias (N,) if any."""
    return rows if bias is None else rows + bias.to(rows.dtype)[:, None]


def _pre_scan_graph(t: MixerTensors, options: MixerOptions, needs) -> tuple[dict, ScanInputs]:
    """`_pre_scan` on detached leaves (those whose gradient is needed require it); call under enable_grad.
    Returns the leaves by name ("x" for the conv input) and the scan inputs with their autograd graph."""
    needs = MixerTensors(*needs)
    leaves = {"x": _conv_input(t.xz).detach().requires_grad_(needs.xz)}
    for name in _PRE_SCAN_LEAVES:
        value = getattr(t, name)
        if value is not None:
            leaves[name] = value.detach().requires_grad_(getattr(needs, name))
    t = t._replace(**{name: leaf for name, leaf in leaves.items() if name != "x"})
    return leaves, _pre_scan(leaves["x"], t, options)


def _pre_scan_grads(leaves: dict, scan_in: ScanInputs, scan_grads: tuple) -> dict:
    """Gradients of the pre-scan leaves, seeded with the scan backward op's (du, ddelta, dB, dC)."""
    wanted = {name: leaf for name, leaf in leaves.items() if leaf.requires_grad}
    seeded = [(out, grad) for out, grad in zip(scan_in, scan_grads, strict=True) if out.requires_grad]
    if not wanted or not seeded:
        return {}
    outputs, grad_outputs = zip(*seeded, strict=True)
    grads = torch.autograd.grad(outputs, list(wanted.values()), grad_outputs, allow_unused=True)
    return {
        name: grad if grad is not None else torch.zeros_like(leaf)
        for (name, leaf), grad in zip(wanted.items(), grads, strict=True)
    }


def _autocast_inputs(t: MixerTensors) -> MixerTensors:
    """Under autocast, xz and the projection weights in the autocast dtype (the function itself runs with
    autocast off, so the scan and the conv see one dtype); autograd carries the gradients back through the
    casts to the parameters' own dtype."""
    device_type = t.xz.device.type
    if not torch.is_autocast_enabled(device_type):
        return t
    dtype = torch.get_autocast_dtype(device_type)

    def cast(x):
        return None if x is None else x.to(dtype)

    return t._replace(
        xz=cast(t.xz),
        x_proj_weight=cast(t.x_proj_weight),
        delta_proj_weight=cast(t.delta_proj_weight),
        out_proj_weight=cast(t.out_proj_weight),
        out_proj_bias=cast(t.out_proj_bias),
    )


def _check_inputs(t: MixerTensors, checkpoint_lvl: int) -> None:
    """ValueError naming the first argument with a shape or option the mixer does not take."""
    if checkpoint_lvl not in CHECKPOINT_LEVELS:
        _fail(f"argument 'checkpoint_lvl' must be 0 or 1, got {checkpoint_lvl!r}")
    refuse_complex("mamba_inner_fn", A=t.A, **{n: getattr(t, n) for n in ("B", "C") if getattr(t, n) is not None})
    if t.xz.dim() != 3 or t.xz.shape[1] % 2:
        _fail(f"argument 'xz' must have shape (B, 2E, L), got {tuple(t.xz.shape)}")
    if t.A.dim() != 2:
        _fail(f"argument 'A' must have shape (E, N), got {tuple(t.A.shape)}")
    batch, dim, seqlen = t.xz.shape[0], t.xz.shape[1] // 2, t.xz.shape[2]
    dstate = t.A.shape[1]
    if t.delta_proj_weight.dim() != 2 or t.delta_proj_weight.shape[0] != dim:
        _fail(
            f"argument 'delta_proj_weight' must have shape (E, R) = ({dim}, R), got {tuple(t.delta_proj_weight.shape)}"
        )
    dt_rank = t.delta_proj_weight.shape[1]
    expected = {
        "conv1d_weight": [(dim, 1, t.conv1d_weight.shape[-1]), (dim, t.conv1d_weight.shape[-1])],
        "conv1d_bias": [(dim,)],
        "x_proj_weight": [(dt_rank + 2 * dstate, dim)],
        "out_proj_weight": [(t.out_proj_weight.shape[0], dim)],
        "out_proj_bias": [(t.out_proj_weight.shape[0],)],
        "A": [(dim, dstate)],
        "D": [(dim,)],
        "delta_bias": [(dim,)],
        "B_proj_bias": [(dstate,)],
        "C_proj_bias": [(dstate,)],
        "b_rms_weight": [(dstate,)],
        "c_rms_weight": [(dstate,)],
        "dt_rms_weight": [(dim,)],
        "dt_scale": [(batch, seqlen)],
    }
    for name, shapes in expected.items():
        value = getattr(t, name)
        if value is not None and tuple(value.shape) not in shapes:
            wanted = " or ".join(str(s) for s in shapes)
            _fail(f"argument '{name}' must have shape {wanted}, got {tuple(value.shape)}")
    for given, option in (("B", "B_proj_bias"), ("B", "b_rms_weight"), ("C", "C_proj_bias"), ("C", "c_rms_weight")):
        if getattr(t, given) is not None and getattr(t, option) is not None:
            _fail(f"argument '{option}' applies to the projected {given} only; pass {given}=None or {option}=None")
    if t.dt_scale is not None and t.dt_scale.requires_grad:
        _fail("argument 'dt_scale' is data (elapsed time per step) and is not differentiable; pass dt_scale.detach()")


def _fail(message: str) -> None:
    raise ValueError(f"mamba_inner_fn: {message}")
