"""Python front of the compiled fused block step (`torch.ops.hamburg_mamba.mamba_block_step`, CPU only): one
event of a pre-norm residual Mamba block for streaming inference, its wrapper and its fake (meta) kernel.

    mamba_block_step(x, norm_weight, norm_eps, in_proj_weight, conv_state!, conv_weight, conv_bias?,
                     x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, ssm_state!, dt_scale?, out_proj_weight)
        -> out

The math is specified by `hamburg_mamba.ops.reference.mamba_block_step_ref` (float64, pure PyTorch); the C++
kernel is tested against its own float64 reference in tests/cpp (`IsaBlockStep`).
"""

from __future__ import annotations

import torch

from hamburg_mamba.ops.selective_scan import _check_one_device, _ops


def mamba_block_step(
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
    """One event of a pre-norm residual Mamba block on the CPU, for streaming inference (no gradients):
    x + out_proj(mixer(rms_norm(x))) with the mixer of `hamburg_mamba.nn.SelectiveSSMLayer` (in_proj, causal
    depthwise conv over `conv_state` and SiLU, x_proj, dt_proj, one `selective_state_update` step with
    softplus, D skip and SiLU(z) gate). Advances `conv_state` and `ssm_state` in place.

    Glossary: M d_model, E d_inner, K d_conv, R dt_rank. Shapes: x (B, M); norm_weight (M,);
    in_proj_weight (2E, M); conv_state (B, E, K), oldest input first; conv_weight (E, K); conv_bias,
    dt_proj_bias, D (E,); x_proj_weight (R + 2N, E); dt_proj_weight (E, R); A (E, N); ssm_state (B, E, N);
    dt_scale (B,) non-negative; out_proj_weight (M, E). Returns (B, M).
    x, states and the small parameters are float32 or float64 (one dtype); the four projection weights are in
    that dtype, or float16 / bfloat16 with float32 x (converted to float32 as they are read; sums in float32).
    All contiguous, on the CPU. The weights are read once per call for all B rows, so it suits small B.
    """
    return _ops.mamba_block_step(
        x,
        norm_weight,
        norm_eps,
        in_proj_weight,
        conv_state,
        conv_weight,
        conv_bias,
        x_proj_weight,
        dt_proj_weight,
        dt_proj_bias,
        A,
        D,
        ssm_state,
        dt_scale,
        out_proj_weight,
    )


@torch.library.register_fake("hamburg_mamba::mamba_block_step")
def _mamba_block_step_fake(
    x,
    norm_weight,
    norm_eps,
    in_proj_weight,
    conv_state,
    conv_weight,
    conv_bias,
    x_proj_weight,
    dt_proj_weight,
    dt_proj_bias,
    A,
    D,
    ssm_state,
    dt_scale,
    out_proj_weight,
):
    _check_one_device(
        "mamba_block_step",
        "x",
        dict(
            x=x,
            norm_weight=norm_weight,
            in_proj_weight=in_proj_weight,
            conv_state=conv_state,
            conv_weight=conv_weight,
            conv_bias=conv_bias,
            x_proj_weight=x_proj_weight,
            dt_proj_weight=dt_proj_weight,
            dt_proj_bias=dt_proj_bias,
            A=A,
            D=D,
            ssm_state=ssm_state,
            dt_scale=dt_scale,
            out_proj_weight=out_proj_weight,
        ),
    )
    return x.new_empty(x.shape)
