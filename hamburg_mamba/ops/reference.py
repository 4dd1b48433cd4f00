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


def _expand_groups(M: torch.Tensor, batch: int, dim: int, seqlen: int) -> torch.Tensor:
    """(D, N), (B, N, L) or (B, G, N, L) -> (B, D, N, L): a (D, N) matrix is channel d's own row at every
    batch and step (mamba_ssm's input-independent B and C); channel d reads group d // (D // G)."""
    if M.dim() == 2:
        return M[None, :, :, None].expand(batch, dim, M.shape[1], seqlen)  # (B, D, N, L)
    if M.dim() == 3:
        M = M.unsqueeze(1)  # (B, 1, N, L)
    groups = M.shape[1]
    return M.repeat_interleave(dim // groups, dim=1)  # (B, D, N, L)


def refuse_complex(fn: str, **tensors: torch.Tensor) -> None:
    """Raises ValueError when A, B or C is complex: mamba_ssm's complex S4D variant has no kernel here."""
    for name, t in tensors.items():
        if t.is_complex():
            raise ValueError(
                f"{fn}: argument '{name}' is complex ({t.dtype}); complex A (and complex B, C) is not "
                "supported, only the real (S6 / Mamba) parametrisation"
            )


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
        B:             (B, N, L) or (B, G, N, L) input projection, channel d using group d // (D // G);
                       or (D, N), input-independent: channel d's row at every batch and step (as mamba_ssm).
        C:             output projection, the same choices as B (each chosen on its own).
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
    refuse_complex("selective_scan_ref", A=A, B=B, C=C)
    cdt = _compute_dtype(u.dtype)
    batch, dim, seqlen = u.shape
    step = effective_step(delta, delta_bias, delta_softplus, dt_scale)  # (B, D, L)
    uc = u.to(cdt)
    Af = A.to(cdt)  # (D, N)
    Bf = _expand_groups(B, batch, dim, seqlen).to(cdt)  # (B, D, N, L)
    Cf = _expand_groups(C, batch, dim, seqlen).to(cdt)  # (B, D, N, L)
    dA = torch.exp(step.unsqueeze(2) * Af[None, :, :, None])  # (B, D, N, L)
    dBu = step.unsqueeze(2) * Bf * uc.unsqueeze(2)  # (B, D, N, L)

    if initial_state is None:
        h = torch.zeros(batch, dim, A.shape[1], dtype=cdt, device=u.device)  # (B, D, N)
    else:
        h = initial_state.to(cdt)
    ys = []
    # unbind (not dA[..., t]) keeps autograd linear in L: one stack in the backward, not L full-size adds.
    for dA_t, dBu_t, C_t in zip(dA.unbind(-1), dBu.unbind(-1), Cf.unbind(-1), strict=True):
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
    state_batch_indices: torch.Tensor | None = None,
    dt_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One step of `selective_scan_ref` for streaming inference (mamba_ssm's `selective_state_update_ref`,
    plus `state_batch_indices` and `dt_scale`); updates `state` in place.

    Glossary: H heads, P channels per head, S rows of the state cache. Arguments, without or with a heads axis:
        state:    (B, D, N) or (B, H, P, N); with state_batch_indices (S, D, N) or (S, H, P, N), S >= B.
        x, dt, z: (B, D) or (B, H, P) input, raw step size and optional gate of the new step.
        A:        (D, N) or (H, P, N).
        B, C:     (B, N) or (B, G, N); group g serves heads g * H/G .. (g+1) * H/G - 1, or without a heads
                  axis channels g * D/G .. (g+1) * D/G - 1.
        D, dt_bias: (D,) or (H, P), optional.
        state_batch_indices: (B,) optional; row b of the batch reads and updates state[state_batch_indices[b]]
                  (a negative index is a padding slot: output 0, no state touched, as mamba_ssm).
        dt_scale: (B,) optional per-step multiplier of the step size (0 leaves the state unchanged).

    Math per (b, channel, n), in float32 (float64 when state or x is float64):
        s = softplus?(dt + dt_bias) * dt_scale;  state = exp(s A) state + s B x   (rounded to state's dtype)
        y = sum_n state C + D x;  out = y * silu(z)
    Returns the step's output in the dtype of x, shaped like x.
    """
    if state_batch_indices is not None:
        return _update_cache_rows(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, dt_scale)
    refuse_complex("selective_state_update_ref", A=A, B=B, C=C)
    if state.dim() == 3:
        # Without a heads axis each channel is a head of one: (B, D, N) -> (B, D, 1, N), so channel groups
        # are head groups and one formula serves both layouts.
        out = selective_state_update_ref(
            state.unsqueeze(2),
            x.unsqueeze(-1),
            dt.unsqueeze(-1),
            A.unsqueeze(1),
            B,
            C,
            None if D is None else D.unsqueeze(-1),
            None if z is None else z.unsqueeze(-1),
            None if dt_bias is None else dt_bias.unsqueeze(-1),
            dt_softplus,
            None,
            dt_scale,
        )
        return out.squeeze(-1)
    cdt = torch.float64 if torch.float64 in (state.dtype, x.dtype) else torch.float32
    heads = state.shape[1]
    step = dt.to(cdt)  # (B, H, P)
    if dt_bias is not None:
        step = step + dt_bias.to(cdt)
    if dt_softplus:
        step = F.softplus(step, threshold=SOFTPLUS_THRESHOLD)
    if dt_scale is not None:
        step = step * dt_scale.to(cdt)[:, None, None]
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)  # (B, 1, N)
    reps = heads // B.shape[1]
    Bh = B.to(cdt).repeat_interleave(reps, dim=1)  # (B, H, N)
    Ch = C.to(cdt).repeat_interleave(reps, dim=1)  # (B, H, N)
    xc = x.to(cdt)  # (B, H, P)
    dA = torch.exp(step[..., None] * A.to(cdt))  # (B, H, P, N)
    dB = step[..., None] * Bh[:, :, None, :]  # (B, H, P, N)
    state.copy_(state.to(cdt) * dA + dB * xc[..., None])
    # As mamba_ssm's reference: the output reads the state as stored (rounded to its dtype).
    y = torch.einsum("bhpn,bhn->bhp", state.to(cdt), Ch)  # (B, H, P)
    if D is not None:
        y = y + D.to(cdt) * xc
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(x.dtype)


def _update_cache_rows(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, dt_scale):
    """selective_state_update_ref on the rows state[state_batch_indices] of a state cache."""
    keep = state_batch_indices >= 0  # (B,) negative: padding slot
    rows_idx = state_batch_indices[keep]
    rows = state[rows_idx]  # (B', ...) a copy
    out = torch.zeros_like(x)
    out[keep] = selective_state_update_ref(
        rows,
        x[keep],
        dt[keep],
        A,
        B[keep],
        C[keep],
        D,
        None if z is None else z[keep],
        dt_bias,
        dt_softplus,
        None,
        None if dt_scale is None else dt_scale[keep],
    )
    state[rows_idx] = rows
    return out


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
    y = selective_state_update_ref(
        ssm_state, xc, dt, A, B, C, D=D, z=z, dt_bias=dt_proj_bias, dt_softplus=True, dt_scale=dt_scale
    )  # (B, E)
    return x + y @ out_proj_weight.to(cdt).T
