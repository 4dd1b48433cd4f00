"""Pure-PyTorch reference of the whole Mamba-1 mixer, the specification of `hamburg_mamba.mamba_inner_fn`.

Glossary: B batch, L steps, M d_model, E d_inner, N d_state, R dt_rank, K d_conv, G groups sharing (B, C).

Written out step by step on purpose (no fused op, no recomputation): the conv is torch's own depthwise
`F.conv1d`, the scan is `selective_scan_ref`'s Python loop over L, and autograd differentiates all of it, so the
tests can compare values and gradients of the compiled mixer against it in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hamburg_mamba.ops.reference import selective_scan_ref


def mamba_inner_ref(
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
    b_rms_weight: torch.Tensor | None = None,
    c_rms_weight: torch.Tensor | None = None,
    dt_rms_weight: torch.Tensor | None = None,
    b_c_dt_rms_eps: float = 1e-6,
    dt_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The Mamba-1 mixer after in_proj (Gu and Dao 2023, Fig. 3; mamba_ssm's `mamba_inner_ref`):

        x, z   = xz split over channels                       (B, E, L) each
        xc     = SiLU(causal depthwise conv1d(x) + conv1d_bias)
        x_dbl  = x_proj_weight @ xc  ->  dt (R rows), B (N rows), C (N rows)
        delta  = delta_proj_weight @ dt                        (B, E, L)
        B, C   = projected rows + B_proj_bias / C_proj_bias, unless given
        delta, B, C optionally RMS-normalised over E, N, N with weights dt_rms_weight, b_rms_weight, c_rms_weight
        y      = selective_scan(xc, delta, A, B, C, D, z, delta_bias, delta_softplus, dt_scale)
        out    = y^T @ out_proj_weight^T + out_proj_bias       (B, L, M)

    Shapes: xz (B, 2E, L); conv1d_weight (E, 1, K) (nn.Conv1d's) or (E, K); conv1d_bias (E,);
    x_proj_weight (R + 2N, E); delta_proj_weight (E, R); out_proj_weight (M, E); out_proj_bias (M,);
    A (E, N) real; B, C given: (E, N), (B, N, L) or (B, G, N, L); D, delta_bias (E,);
    B_proj_bias, C_proj_bias, b_rms_weight, c_rms_weight (N,); dt_rms_weight (E,); dt_scale (B, L), the
    per-step clock of `selective_scan_ref` (hamburg_mamba's addition; None = 1). Returns (B, L, M) in xz's dtype.
    When B (C) is given, the projected B (C) rows of x_dbl are unused, as in mamba_ssm.
    """
    dt_rank = delta_proj_weight.shape[1]
    dstate = A.shape[-1]
    x, z = xz.chunk(2, dim=1)  # (B, E, L) each
    weight = conv1d_weight if conv1d_weight.dim() == 3 else conv1d_weight[:, None, :]  # (E, 1, K)
    width = weight.shape[-1]
    conv = F.conv1d(F.pad(x, (width - 1, 0)), weight.to(x.dtype), _cast(conv1d_bias, x.dtype), groups=x.shape[1])
    xc = F.silu(conv)  # (B, E, L)
    x_dbl = torch.matmul(x_proj_weight, xc)  # (B, R + 2N, L)
    delta = torch.matmul(delta_proj_weight, x_dbl[:, :dt_rank])  # (B, E, L)
    if B is None:
        B = x_dbl[:, dt_rank : dt_rank + dstate]  # (B, N, L)
        if B_proj_bias is not None:
            B = B + B_proj_bias.to(B.dtype)[:, None]
    if C is None:
        C = x_dbl[:, -dstate:]  # (B, N, L)
        if C_proj_bias is not None:
            C = C + C_proj_bias.to(C.dtype)[:, None]
    if dt_rms_weight is not None:
        delta = rms_norm_over_channels(delta, dt_rms_weight, b_c_dt_rms_eps)
    if b_rms_weight is not None:
        B = rms_norm_over_channels(B, b_rms_weight, b_c_dt_rms_eps)
    if c_rms_weight is not None:
        C = rms_norm_over_channels(C, c_rms_weight, b_c_dt_rms_eps)
    y = selective_scan_ref(
        xc, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus, dt_scale=dt_scale
    )  # (B, E, L)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)  # (B, L, M)


def rms_norm_over_channels(t: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of each step's channel vector: t (B, C, L) normalised over C, scaled by weight (C,).

    In float32 (float64 for float64 t) and returned in t's dtype, as mamba_ssm's fused RMSNorm of B, C and dt
    (its `b_rms_weight`, `c_rms_weight`, `dt_rms_weight` options)."""
    cdt = torch.float64 if t.dtype == torch.float64 else torch.float32
    tc = t.to(cdt)
    normed = tc * torch.rsqrt(tc.square().mean(dim=1, keepdim=True) + eps)
    return (normed * weight.to(cdt)[:, None]).to(t.dtype)


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)
