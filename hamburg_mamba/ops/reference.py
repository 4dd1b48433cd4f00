"""Pure-PyTorch references for the selective-scan ops. These functions *are* the specification.

Glossary of dimension letters: B batch, D channels, L steps, N state size, G groups sharing (B, C).

They are sequential and legible on purpose (a Python loop over L): tests compare the compiled kernels
against them in float64, and users can read the exact math here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# softplus(x) = x above this threshold, as torch.nn.functional.softplus's default.
SOFTPLUS_THRESHOLD = 20.0


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _expand_groups(M: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, N, L) or (B, G, N, L) -> (B, D, N, L), channel d reading group d // (D // G)."""
    if M.dim() == 3:
        M = M.unsqueeze(1)  # (B, 1, N, L)
    groups = M.shape[1]
    return M.repeat_interleave(dim // groups, dim=1)  # (B, D, N, L)


def effective_step(
    delta: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    dt_scale: torch.Tensor | None,
) -> torch.Tensor:
    """step = softplus?(delta + delta_bias) * dt_scale, in the compute dtype. delta: (..., D, L) or (B, D)."""
    step = delta.to(_compute_dtype(delta.dtype))
    if delta_bias is not None:
        bias = delta_bias.to(step.dtype)  # (D,)
        step = step + (bias[:, None] if step.dim() == 3 else bias)
    if delta_softplus:
        step = F.softplus(step, threshold=SOFTPLUS_THRESHOLD)
    if dt_scale is not None:
        scale = dt_scale.to(step.dtype)
        step = step * (scale[:, None, :] if step.dim() == 3 else scale[:, None])
    return step


def selective_scan_ref(
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
    r"""Selective scan (Mamba S6), sequential reference.

    Arguments (B batch, D channels, L steps, N state size, G groups):
        u:             (B, D, L) input.
        delta:         (B, D, L) raw step sizes.
        A:             (D, N) real state matrix (diagonal per channel), usually negative.
        B:             (B, N, L) or (B, G, N, L) input projection; channel d uses group d // (D // G).
        C:             same shape as B, output projection.
        D:             (D,) optional skip connection.
        z:             (B, D, L) optional gate.
        delta_bias:    (D,) optional bias added to delta.
        delta_softplus: apply softplus (threshold 20) to delta + delta_bias.
        return_last_state: also return the state after the last step.
        initial_state: (B, D, N) optional state before the first step (zeros when omitted).
        dt_scale:      (B, L) optional non-negative per-step multiplier of the step size (elapsed time;
                       0 makes a step an exact no-op, for padding).

    Math, for every batch b, channel d, state index n and step t = 1..L:

        s_t   = softplus(delta_t + delta_bias) if delta_softplus else delta_t + delta_bias
        s_t   = s_t * dt_scale_t
        h_t   = exp(s_t * A[d, n]) * h_{t-1} + s_t * B_t[n] * u_t,      h_0 = initial_state
        y_t   = sum_n C_t[n] * h_t[n] + D[d] * u_t
        out_t = y_t * silu(z_t)   when z is given, else y_t

    Arithmetic is in float32 (float64 for float64 inputs); `out` has the dtype of u, the last state
    (B, D, N) is float32 (float64 for float64 inputs). Returns `out` or `(out, last_state)`.
    """
    cdt = _compute_dtype(u.dtype)
    batch, dim, _ = u.shape
    step = effective_step(delta, delta_bias, delta_softplus, dt_scale)  # (B, D, L)
    uc = u.to(cdt)
    Af = A.to(cdt)  # (D, N)
    Bf = _expand_groups(B, dim).to(cdt)  # (B, D, N, L)
    Cf = _expand_groups(C, dim).to(cdt)  # (B, D, N, L)
    dA = torch.exp(step.unsqueeze(2) * Af[None, :, :, None])  # (B, D, N, L)
    dBu = step.unsqueeze(2) * Bf * uc.unsqueeze(2)  # (B, D, N, L)

    if initial_state is None:
        h = torch.zeros(batch, dim, A.shape[1], dtype=cdt, device=u.device)  # (B, D, N)
    else:
        h = initial_state.to(cdt)
    ys = []
    # unbind (not dA[..., t]) keeps autograd linear in L: one stack in the backward, not L full-size adds.
    for dA_t, dBu_t, C_t in zip(dA.unbind(-1), dBu.unbind(-1), Cf.unbind(-1)):
        h = dA_t * h + dBu_t  # (B, D, N)
        ys.append((h * C_t).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + D.to(cdt)[:, None] * uc
    if z is not None:
        y = y * F.silu(z.to(cdt))
    out = y.to(u.dtype)
    return (out, h) if return_last_state else out


def selective_state_update_ref(
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
    dt_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One step of `selective_scan_ref` for streaming inference; updates `state` in place.

    Arguments:
        state:    (B, D, N) float32 (float64 for float64 inputs), updated in place.
        x, dt:    (B, D) input and raw step size of the new step.
        A:        (D, N).
        B, C:     (B, N) or (B, G, N).
        D:        (D,) optional; z: (B, D) optional gate; dt_bias: (D,) optional.
        dt_scale: (B,) optional per-step multiplier of the step size (0 leaves the state unchanged).

    Returns the step's output (B, D) in the dtype of x; equals one step of the scan with
    initial_state=state.
    """
    cdt = state.dtype
    dim = x.shape[1]
    step = effective_step(dt, dt_bias, dt_softplus, dt_scale)  # (B, D)
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)  # (B, 1, N)
    reps = dim // B.shape[1]
    Bf = B.to(cdt).repeat_interleave(reps, dim=1)  # (B, D, N)
    Cf = C.to(cdt).repeat_interleave(reps, dim=1)  # (B, D, N)
    dA = torch.exp(step.unsqueeze(-1) * A.to(cdt))  # (B, D, N)
    new_state = dA * state + step.unsqueeze(-1) * Bf * x.to(cdt).unsqueeze(-1)
    state.copy_(new_state)
    y = (new_state * Cf).sum(-1)  # (B, D)
    if D is not None:
        y = y + D.to(cdt) * x.to(cdt)
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(x.dtype)


def mamba_block_step_ref(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_eps: float,
    in_proj_weight: torch.Tensor,
    conv_state: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    ssm_state: torch.Tensor,
    dt_scale: torch.Tensor | None,
    out_proj_weight: torch.Tensor,
) -> torch.Tensor:
    r"""One event of a pre-norm residual Mamba block (the fused op `mamba_block_step`); updates `conv_state`
    and `ssm_state` in place.

    Glossary: M d_model, E d_inner, K d_conv, R dt_rank. Arguments:
        x:               (B, M) the event's input.
        norm_weight:     (M,) RMSNorm weight; norm_eps its epsilon.
        in_proj_weight:  (2E, M) -> (xi, z).
        conv_state:      (B, E, K) the last K conv inputs, oldest first.
        conv_weight:     (E, K); conv_bias: (E,) optional.
        x_proj_weight:   (R + 2N, E) -> (dt_r, B, C).
        dt_proj_weight:  (E, R); dt_proj_bias: (E,).
        A:               (E, N); D: (E,).
        ssm_state:       (B, E, N).
        dt_scale:        (B,) optional step multiplier.
        out_proj_weight: (M, E).

    Math (weights read in the dtype of x):

        h     = x / sqrt(mean(x^2) + eps) * norm_weight
        xi, z = split(in_proj h)
        window = (conv_state[..., 1:], xi);  xc = silu(sum_k window_k conv_weight_k + conv_bias)
        dt_r, B, C = split(x_proj xc);  dt = dt_proj dt_r
        y     = selective_state_update_ref(ssm_state, xc, dt, A, B, C, D, z, dt_proj_bias, softplus, dt_scale)
        out   = x + out_proj y
    """
    cdt = x.dtype
    dstate = A.shape[1]
    rank = x_proj_weight.shape[0] - 2 * dstate
    normed = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + norm_eps) * norm_weight  # (B, M)
    xz = normed @ in_proj_weight.to(cdt).T  # (B, 2E)
    xi, z = xz.chunk(2, dim=-1)  # (B, E) each
    window = torch.cat([conv_state[..., 1:], xi[..., None]], dim=-1)  # (B, E, K)
    conv_state.copy_(window)
    xc = (window * conv_weight).sum(-1)  # (B, E)
    if conv_bias is not None:
        xc = xc + conv_bias
    xc = F.silu(xc)
    dt_r, B, C = torch.split(xc @ x_proj_weight.to(cdt).T, [rank, dstate, dstate], dim=-1)  # (B, R), (B, N) x2
    dt = dt_r @ dt_proj_weight.to(cdt).T  # (B, E)
    y = selective_state_update_ref(ssm_state, xc, dt, A, B, C, D=D, z=z, dt_bias=dt_proj_bias, dt_softplus=True,
                                   dt_scale=dt_scale)  # (B, E)
    return x + y @ out_proj_weight.to(cdt).T
