"""Hugging Face transformers' Mamba (`MambaModel`, `MambaForCausalLM`) on hamburg_mamba's compiled ops.

    import hamburg_mamba.integrations.transformers as hm_transformers

    hm_transformers.use_hamburg_mamba_kernels()        # from now on, for the whole process
    with hm_transformers.hamburg_mamba_kernels():      # or only inside the block; restored on exit
        logits = model(input_ids).logits

Glossary: B batch, L tokens, E intermediate size (d_inner), N state size, K conv kernel.

What runs where. transformers' `MambaMixer.forward` calls five module-level functions of
`transformers.models.mamba.modeling_mamba`, each decorated with `use_kernel_func_from_hub_with_fallback`:
    training without a cache  -> mamba_inner_fn (the fused mixer; transformers' own returns None, "no kernel",
                                  and the forward then falls through to the unfused ops below)
    prompt / no cache         -> causal_conv1d_fn, then mamba_selective_scan (with the last state for a cache)
    one token with a cache    -> causal_conv1d_update, then mamba_selective_state_update
There is no device or `is_fast_path_available` condition any more (transformers 5): the same five calls run
on the CPU and on CUDA, so replacing them moves every path onto our ops: `mamba_inner_fn`,
`causal_conv1d_fn`, `selective_scan_fn`, `causal_conv1d_update` and `selective_state_update`.

Fused decoding (`fused_decode=True`, the default). Once the step's kernels are fast, a cached CPU step is
dominated by the dozen small PyTorch calls around them in every block (norm, four projections, splits,
casts, the residual). So `MambaBlock.forward` is also replaced: one cached token per row, on the CPU, without
gradients, becomes one `mamba_block_step` call per block (RMSNorm, in_proj, conv step, x_proj, dt_proj, state
update, gate, out_proj and the residual in one pass that reads each weight once), and the cache's conv and
recurrent states advance in place exactly as in the unfused step. Every other call, and every block the
fused op does not cover (projection biases, another activation, an attention mask, half-precision
activations, autocast, more than `FUSED_STEP_MAX_BATCH` rows, a state not contiguous), runs transformers' own
`MambaBlock.forward` over the five replaced functions.

Why a patch and not transformers' kernel mapping. The decorators resolve their implementation once, at import:
the Hub kernel (only with the `kernels` package installed and a Hub repository id), else the original package
(`mamba_ssm`, `causal_conv1d`) if importable, else the PyTorch code. Without `kernels` the decorators are
no-ops, and with it a local kernel (`LocalFuncRepository`) must be a kernel-builder build tree loaded by
`kernelize(model)`, which our in-place torch extension is not. So this module replaces the five module-level
names, which `MambaMixer.forward` looks up at every call, with adapters to our ops, and puts the originals
back on exit. Models built before or after the call are both affected; other model families
(FalconMamba, Mamba2) are not touched.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import NamedTuple

import torch

from hamburg_mamba.nn.mamba import FUSED_STEP_MAX_BATCH, cached_step_weights
from hamburg_mamba.ops.block_step import mamba_block_step
from hamburg_mamba.ops.causal_conv1d import causal_conv1d_fn, causal_conv1d_update
from hamburg_mamba.ops.mamba_inner import mamba_inner_fn
from hamburg_mamba.ops.selective_scan import selective_scan_fn
from hamburg_mamba.ops.state_update import selective_state_update

MODELING_MODULE = "transformers.models.mamba.modeling_mamba"


def _conv1d_fn(hidden_states, weight, bias=None, activation=None, **kwargs):
    """transformers' causal_conv1d_fn: hidden_states (B, E, L), weight (E, K) -> (B, E, L)."""
    return causal_conv1d_fn(hidden_states, weight, bias, seq_idx=kwargs.get("seq_idx"), activation=activation)


def _conv1d_update(hidden_states, conv_state, weight, bias=None, activation=None, **kwargs):
    """transformers' causal_conv1d_update: hidden_states (B, E, L) new tokens, conv_state (B, E, K) updated in
    place -> (B, E, L)."""
    return causal_conv1d_update(hidden_states, conv_state, weight, bias, activation=activation)


def _inner_fn(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A,
              B=None, C=None, D=None, delta_bias=None, delta_softplus=True, b_rms_weight=None, c_rms_weight=None,
              dt_rms_weight=None, b_c_dt_rms_eps=1e-6, **kwargs):  # fmt: skip
    """transformers' mamba_inner_fn (its argument order; the B/C projection biases are not passed there)."""
    return mamba_inner_fn(
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
        delta_softplus=delta_softplus,
        b_rms_weight=b_rms_weight,
        c_rms_weight=c_rms_weight,
        dt_rms_weight=dt_rms_weight,
        b_c_dt_rms_eps=b_c_dt_rms_eps,
    )


def _state_update(state, hidden_states, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, z=None, **kwargs):
    """transformers' mamba_selective_state_update: state (B, E, N) updated in place, hidden_states, dt, z (B, E),
    B, C (B, N) -> (B, E)."""
    return selective_state_update(state, hidden_states, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def _selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                    return_last_state=False, **kwargs):  # fmt: skip
    """transformers' mamba_selective_scan: (B, E, L) inputs, B, C (B, N, L); use_mambapy and
    use_associative_scan choose among its PyTorch scans and do not apply to the compiled one."""
    result = selective_scan_fn(
        hidden_states,
        dt,
        A,
        B,
        C,
        D=D,
        z=z,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        return_last_state=return_last_state,
    )
    if not return_last_state:
        return result
    out, last_state = result
    # transformers keeps the recurrent state in the activations' dtype (the decode step updates it in place)
    return out, last_state.to(hidden_states.dtype)


class _BlockStepWeights(NamedTuple):
    """A MambaBlock's weights as `mamba_block_step` reads them (contiguous; A = -exp(A_log) computed once)."""

    norm_weight: torch.Tensor
    norm_eps: float
    in_proj: torch.Tensor
    conv_weight: torch.Tensor
    conv_bias: torch.Tensor | None
    x_proj: torch.Tensor
    dt_proj: torch.Tensor
    dt_bias: torch.Tensor
    A: torch.Tensor
    D: torch.Tensor
    out_proj: torch.Tensor


def _block_step_weights(block) -> _BlockStepWeights:
    mixer = block.mixer
    dtype = block.norm.weight.dtype

    def weight(linear) -> torch.Tensor:
        return linear.weight.detach().contiguous()

    return _BlockStepWeights(
        norm_weight=block.norm.weight.detach(),
        norm_eps=float(block.norm.variance_epsilon),
        in_proj=weight(mixer.in_proj),
        conv_weight=mixer.conv1d.weight.detach()[:, 0, :].contiguous(),
        conv_bias=None if mixer.conv1d.bias is None else mixer.conv1d.bias.detach(),
        x_proj=weight(mixer.x_proj),
        dt_proj=weight(mixer.dt_proj),
        dt_bias=mixer.dt_proj.bias.detach().float().to(dtype),
        # MambaMixer rounds A to float32 whatever the model's dtype (A = -exp(A_log.float())); so do we
        A=(-torch.exp(mixer.A_log.detach().float())).to(dtype),
        D=mixer.D.detach(),
        out_proj=weight(mixer.out_proj),
    )


def _fused_step_states(block, hidden_states, cache, attention_mask, kwargs):
    """The cache's (conv_state, recurrent_state) of `block` when this call is one cached token per row that
    `mamba_block_step` computes exactly as MambaBlock.forward would; None otherwise."""
    mixer = block.mixer
    if (
        cache is None
        or attention_mask is not None
        or kwargs
        or hidden_states.dim() != 3
        or hidden_states.shape[1] != 1
        or hidden_states.shape[0] > FUSED_STEP_MAX_BATCH
        or not hidden_states.is_cpu
        or hidden_states.dtype not in (torch.float32, torch.float64)
        or block.norm.weight.dtype != hidden_states.dtype
        or mixer.in_proj.weight.dtype != hidden_states.dtype
        or mixer.use_bias
        or mixer.activation not in ("silu", "swish")
        or mixer.dt_proj.bias is None
        or (torch.is_grad_enabled() and hidden_states.requires_grad)
        or (torch.is_grad_enabled() and mixer.in_proj.weight.requires_grad)
        or torch.is_autocast_enabled("cpu")
        or cache.is_recording_past(block.layer_idx)
    ):
        return None
    conv_state = cache.get_conv_state(block.layer_idx, state_idx=0)
    recurrent_state = cache.get_recurrent_state(block.layer_idx, state_idx=0)
    for state in (conv_state, recurrent_state):
        if state is None or state.dtype != hidden_states.dtype or not state.is_contiguous():
            return None
    return conv_state, recurrent_state


def _block_forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
    """transformers' MambaBlock.forward, with one cached token per row on the CPU fused into one
    `mamba_block_step` call (see "Fused decoding" in the module docstring)."""
    states = _fused_step_states(self, hidden_states, cache, attention_mask, kwargs)
    if states is None:
        return _ORIGINAL_BLOCK_FORWARD[0](self, hidden_states, cache=cache, attention_mask=attention_mask, **kwargs)
    conv_state, recurrent_state = states
    w = cached_step_weights(self, None, lambda _: _block_step_weights(self))
    out = mamba_block_step(
        hidden_states[:, 0].contiguous(),
        w.norm_weight,
        w.norm_eps,
        w.in_proj,
        conv_state,
        w.conv_weight,
        w.conv_bias,
        w.x_proj,
        w.dt_proj,
        w.dt_bias,
        w.A,
        w.D,
        recurrent_state,
        None,
        w.out_proj,
    )
    return out.unsqueeze(1)


_ORIGINAL_BLOCK_FORWARD: list = []  # MambaBlock.forward as transformers defines it, once the module is imported


# The module-level names MambaMixer.forward calls, and what replaces each.
REPLACEMENTS = {
    "mamba_inner_fn": _inner_fn,
    "causal_conv1d_fn": _conv1d_fn,
    "causal_conv1d_update": _conv1d_update,
    "mamba_selective_scan": _selective_scan,
    "mamba_selective_state_update": _state_update,
}


def use_hamburg_mamba_kernels(fused_decode: bool = True) -> None:
    """Make transformers' MambaModel / MambaForCausalLM run on hamburg_mamba's ops for the rest of the process
    (CPU and CUDA; training, prompt and token-by-token generation). With `fused_decode`, a cached CPU step of
    one token per row runs each block as one `mamba_block_step` call. Idempotent; a second call with the
    other `fused_decode` switches it."""
    modeling = importlib.import_module(MODELING_MODULE)
    for name, function in REPLACEMENTS.items():
        if not hasattr(modeling, name):
            raise RuntimeError(
                f"use_hamburg_mamba_kernels: {MODELING_MODULE} has no function '{name}'; this transformers "
                "version calls its Mamba kernels differently (written against transformers 5.24)"
            )
        setattr(modeling, name, function)
    block = modeling.MambaBlock
    if not _ORIGINAL_BLOCK_FORWARD:
        _ORIGINAL_BLOCK_FORWARD.append(block.forward)
    block.forward = _block_forward if fused_decode else _ORIGINAL_BLOCK_FORWARD[0]


@contextlib.contextmanager
def hamburg_mamba_kernels(fused_decode: bool = True) -> Iterator[None]:
    """`use_hamburg_mamba_kernels(fused_decode)` inside the block only: the previous functions are restored
    on exit."""
    modeling = importlib.import_module(MODELING_MODULE)
    previous = {name: getattr(modeling, name, None) for name in REPLACEMENTS}
    previous_block_forward = modeling.MambaBlock.forward
    use_hamburg_mamba_kernels(fused_decode)
    try:
        yield
    finally:
        for name, function in previous.items():
            setattr(modeling, name, function)
        modeling.MambaBlock.forward = previous_block_forward


def is_active() -> bool:
    """Whether transformers' Mamba currently runs on hamburg_mamba's ops."""
    modeling = importlib.import_module(MODELING_MODULE)
    return all(getattr(modeling, name, None) is function for name, function in REPLACEMENTS.items())


__all__ = ["hamburg_mamba_kernels", "is_active", "use_hamburg_mamba_kernels"]
