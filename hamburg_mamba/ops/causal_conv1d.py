"""Python front of the compiled causal conv1d ops: public wrappers, fake (meta) kernels, autograd.

Glossary: B batch, D channels, L steps, W kernel width, S conv_state length.

Drop-in for Dao-AILab/causal-conv1d's `causal_conv1d_fn` and `causal_conv1d_update` (same arguments and
semantics). The ops live in `torch.ops.hamburg_mamba` (C++/CUDA, registered by `hamburg_mamba._C`):
    causal_conv1d_fwd(x, weight, bias?, seq_idx?, initial_states?, return_final_states, silu)
        -> (out, final_states)                 final_states is empty (0,) unless requested
    causal_conv1d_bwd(x, weight, bias?, dout, seq_idx?, initial_states?, dfinal_states?, silu)
        -> (dx, dweight, dbias, dinitial_states)   gradients of absent inputs are empty (0,)
    causal_conv1d_update(x, conv_state!, weight, bias?, silu, cache_seqlens?, conv_state_indices?) -> out
The math is specified by `hamburg_mamba.ops.reference.causal_conv1d_ref` / `causal_conv1d_update_ref`.
Outputs are contiguous (B, D, L) whatever the layout of x (causal-conv1d returns x's layout).
"""

from __future__ import annotations

import torch

from hamburg_mamba import _C  # noqa: F401  (loading the library runs the op registrations)
from hamburg_mamba.ops.reference import conv_activation_is_silu
from hamburg_mamba.ops.selective_scan import _check_one_device

_ops = torch.ops.hamburg_mamba


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: torch.Tensor | None = None,
    activation: str | None = None,
):
    """Causal depthwise conv1d with the compiled CPU/CUDA kernels.

    Shapes: x (B, D, L) float32, float16, bfloat16 (or float64 on the CPU); weight (D, W) with W in 2..8,
    float32, float16 or bfloat16 (converted to float32 for the sums); bias (D,) in the weight's dtype;
    seq_idx (B, L) int32 (packed sequences; negative marks padding); initial_states (B, D, W - 1) in x's dtype;
    activation None, "silu" or "swish". Returns out (B, D, L) in x's dtype, or (out, final_states) with
    final_states (B, D, W - 1), written into final_states_out when given. seq_idx excludes initial_states and
    return_final_states, as in causal-conv1d. Differentiable in x, weight, bias and initial_states, also
    through final_states. See `causal_conv1d_ref` for the math.
    """
    silu = conv_activation_is_silu("causal_conv1d_fn", activation)
    if final_states_out is not None and not return_final_states:
        raise ValueError("causal_conv1d_fn: argument 'final_states_out' needs return_final_states=True")
    out, final_states = _ops.causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, return_final_states, silu)
    if not return_final_states:
        return out
    if final_states_out is not None:
        if final_states_out.shape != final_states.shape:
            raise ValueError(
                "causal_conv1d_fn: argument 'final_states_out' must have shape (batch, dim, width - 1) = "
                f"{tuple(final_states.shape)}, got {tuple(final_states_out.shape)}"
            )
        final_states_out.copy_(final_states)
        final_states = final_states_out
    return out, final_states


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """New steps of the causal conv1d for streaming inference; updates `conv_state` in place (no gradients).

    Shapes: x (B, D) or (B, D, L); conv_state (B, D, S) in x's dtype with S >= W - 1, or (rows, D, S) with
    conv_state_indices (B,) int32 picking a row per batch entry (negative: padding, output 0);
    cache_seqlens (B,) int32 makes conv_state a circular buffer written from cache_seqlens mod S.
    weight, bias and activation as in `causal_conv1d_fn`. Returns the output shaped like x.
    See `causal_conv1d_update_ref` for the math.
    """
    silu = conv_activation_is_silu("causal_conv1d_update", activation)
    one_step = x.dim() == 2
    if one_step:
        x = x.unsqueeze(-1)  # (B, D, 1)
    out = _ops.causal_conv1d_update(x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices)
    return out.squeeze(-1) if one_step else out


# --------------------------------------------------------------------------------------------------
# Fake kernels: output shapes and dtypes for torch.compile and meta tensors (devices checked as in
# selective_scan.py, so a meta tensor among CPU tensors is refused like in the compiled host checks).


@torch.library.register_fake("hamburg_mamba::causal_conv1d_fwd")
def _causal_conv1d_fwd_fake(x, weight, bias, seq_idx, initial_states, return_final_states, silu):
    _check_one_device(
        "causal_conv1d_fwd",
        "x",
        dict(x=x, weight=weight, bias=bias, seq_idx=seq_idx, initial_states=initial_states),
    )
    batch, dim, _ = x.shape
    final_shape = (batch, dim, weight.shape[1] - 1) if return_final_states else (0,)
    return x.new_empty(x.shape), x.new_empty(final_shape)


@torch.library.register_fake("hamburg_mamba::causal_conv1d_bwd")
def _causal_conv1d_bwd_fake(x, weight, bias, dout, seq_idx, initial_states, dfinal_states, silu):
    _check_one_device(
        "causal_conv1d_bwd",
        "x",
        dict(
            x=x,
            weight=weight,
            bias=bias,
            dout=dout,
            seq_idx=seq_idx,
            initial_states=initial_states,
            dfinal_states=dfinal_states,
        ),
    )
    dbias = weight.new_empty(bias.shape if bias is not None else (0,))
    dinitial_states = x.new_empty(initial_states.shape if initial_states is not None else (0,))
    return x.new_empty(x.shape), weight.new_empty(weight.shape), dbias, dinitial_states


@torch.library.register_fake("hamburg_mamba::causal_conv1d_update")
def _causal_conv1d_update_fake(x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices):
    _check_one_device(
        "causal_conv1d_update",
        "x",
        dict(
            x=x,
            conv_state=conv_state,
            weight=weight,
            bias=bias,
            cache_seqlens=cache_seqlens,
            conv_state_indices=conv_state_indices,
        ),
    )
    return x.new_empty(x.shape)


# --------------------------------------------------------------------------------------------------
# Autograd: the backward is its own op.


def _setup_context(ctx, inputs, output):
    x, weight, bias, seq_idx, initial_states, _return_final_states, silu = inputs
    ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
    ctx.silu = silu


def _backward(ctx, dout, dfinal_states):
    x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(x)
    if dfinal_states is not None and dfinal_states.numel() == 0:
        dfinal_states = None  # the empty placeholder when final states were not requested
    dx, dweight, dbias, dinitial_states = _ops.causal_conv1d_bwd(
        x, weight, bias, dout, seq_idx, initial_states, dfinal_states, ctx.silu
    )
    return (
        dx,
        dweight,
        dbias if bias is not None else None,
        None,  # seq_idx: integer data
        dinitial_states if initial_states is not None else None,
        None,
        None,
    )


torch.library.register_autograd("hamburg_mamba::causal_conv1d_fwd", _backward, setup_context=_setup_context)
