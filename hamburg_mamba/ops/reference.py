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


# --------------------------------------------------------------------------------------------------
# Causal depthwise conv1d (Dao-AILab/causal-conv1d's causal_conv1d_fn and causal_conv1d_update).
# Glossary: W kernel width, S conv_state length (>= W - 1).

CONV_ACTIVATIONS = (None, "silu", "swish")


def conv_activation_is_silu(fn: str, activation: str | None) -> bool:
    """True for "silu" / "swish", False for None; ValueError naming `activation` otherwise."""
    if activation not in CONV_ACTIVATIONS:
        raise ValueError(f"{fn}: argument 'activation' must be None, 'silu' or 'swish', got {activation!r}")
    return activation is not None


def causal_conv1d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: torch.Tensor | None = None,
    activation: str | None = None,
):
    r"""Causal depthwise conv1d, computed in float64: the specification of `causal_conv1d_fn`.

    Arguments:
        x:              (B, D, L).
        weight:         (D, W); bias: (D,) optional.
        seq_idx:        (B, L) integer, optional: packed sequences; step t only sees steps of its own
                        sequence, and a padding step (seq_idx < 0) outputs 0. Not with initial_states.
        initial_states: (B, D, W - 1) optional: the W - 1 inputs before step 0, oldest first (zeros if None).
        return_final_states: also return the last W - 1 inputs (B, D, W - 1), to chain a later call;
                        written into final_states_out when given.
        activation:     None, "silu" or "swish" (the same).

    Math, with x_ext = (initial_states, x) along the steps (step -(W-1) .. L-1):
        out[b, d, t] = act(bias[d] + sum_k weight[d, k] x_ext[b, d, t - (W - 1) + k]),  k = 0 .. W - 1
    Returns out in the dtype of x, or (out, final_states).
    """
    silu = conv_activation_is_silu("causal_conv1d_ref", activation)
    batch, dim, seqlen = x.shape
    width = weight.shape[1]
    history = width - 1
    cdt = torch.float64
    xc = x.to(cdt)
    init = xc.new_zeros(batch, dim, history) if initial_states is None else initial_states.to(cdt)
    x_ext = torch.cat([init, xc], dim=-1)  # (B, D, W - 1 + L); column j is step j - (W - 1)
    w = weight.to(cdt)
    pre = xc.new_zeros(batch, dim, seqlen)
    if bias is not None:
        pre = pre + bias.to(cdt)[:, None]
    if seq_idx is not None:
        # Steps before 0 read zeros from x_ext, so their sequence id (the fill) never matters.
        seq_ext = torch.cat([seq_idx.new_zeros(batch, history), seq_idx], dim=-1)  # (B, W - 1 + L)
    for k in range(width):
        tap = x_ext[..., k : k + seqlen]  # (B, D, L): step t - (W - 1) + k
        if seq_idx is not None:
            tap = tap * (seq_ext[:, k : k + seqlen] == seq_idx)[:, None, :]
        pre = pre + w[:, k, None] * tap
    if seq_idx is not None:
        pre = torch.where((seq_idx >= 0)[:, None, :], pre, 0.0)
    out = (F.silu(pre) if silu else pre).to(x.dtype)
    if not return_final_states:
        return out
    final_states = x_ext[..., x_ext.shape[-1] - history :].to(x.dtype)  # (B, D, W - 1)
    if final_states_out is not None:
        final_states_out.copy_(final_states)
        final_states = final_states_out
    return out, final_states


def causal_conv1d_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""New steps of `causal_conv1d_ref` for streaming inference; updates `conv_state` in place.

    Arguments:
        x:          (B, D) one step, or (B, D, L) a few.
        conv_state: (B, D, S) with S >= W - 1, the latest inputs, oldest first; with conv_state_indices
                    (cache rows, D, S).
        weight:     (D, W); bias: (D,) optional; activation as in `causal_conv1d_ref`.
        cache_seqlens: (B,) integer, optional: conv_state is a circular buffer, the W - 1 inputs before x
                    end just before position cache_seqlens[b] mod S and x is written from there on.
                    Without it the state shifts left by L and x fills its end.
        conv_state_indices: (B,) integer, optional: batch row b reads and updates conv_state[index[b]]
                    (continuous batching); a negative index is a padding row (output 0, no state touched).

    Math: the W - 1 inputs before x, read from conv_state before it is updated, are the initial states of
    `causal_conv1d_ref(x, weight, bias, initial_states=window, activation=activation)`.
    Returns the output in the dtype and shape of x.
    """
    if conv_state_indices is not None:
        keep = conv_state_indices >= 0  # (B,)
        rows_idx = conv_state_indices[keep].long()
        rows = conv_state[rows_idx]  # (B', D, S), a copy
        out = torch.zeros_like(x)
        lens = None if cache_seqlens is None else cache_seqlens[keep]
        out[keep] = causal_conv1d_update_ref(x[keep], rows, weight, bias, activation, lens)
        conv_state[rows_idx] = rows
        return out
    if x.dim() == 2:
        return causal_conv1d_update_ref(x.unsqueeze(-1), conv_state, weight, bias, activation, cache_seqlens)[..., 0]
    batch, dim, seqlen = x.shape
    history = weight.shape[1] - 1
    state_len = conv_state.shape[-1]
    if cache_seqlens is None:
        window = conv_state[..., state_len - history :].clone()  # (B, D, W - 1)
        conv_state.copy_(torch.cat([conv_state, x], dim=-1)[..., -state_len:])
    else:
        lens = cache_seqlens.long()[:, None]  # (B, 1); % below is a floor modulo, as the kernels'
        read = (lens + torch.arange(-history, 0, device=x.device)) % state_len  # (B, W - 1)
        window = conv_state.gather(2, read[:, None, :].expand(batch, dim, history))  # (B, D, W - 1)
        write = (lens + torch.arange(seqlen, device=x.device)) % state_len  # (B, L)
        conv_state.scatter_(2, write[:, None, :].expand(batch, dim, seqlen), x.to(conv_state.dtype))
    return causal_conv1d_ref(x, weight, bias, initial_states=window, activation=activation)
