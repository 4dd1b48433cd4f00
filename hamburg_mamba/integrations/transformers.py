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


# The module-level names MambaMixer.forward calls, and what replaces each.
REPLACEMENTS = {
    "mamba_inner_fn": _inner_fn,
    "causal_conv1d_fn": _conv1d_fn,
    "causal_conv1d_update": _conv1d_update,
    "mamba_selective_scan": _selective_scan,
    "mamba_selective_state_update": _state_update,
}


def use_hamburg_mamba_kernels() -> None:
    """Make transformers' MambaModel / MambaForCausalLM run on hamburg_mamba's ops for the rest of the process
    (CPU and CUDA; training, prompt and token-by-token generation). Idempotent."""
    modeling = importlib.import_module(MODELING_MODULE)
    for name, function in REPLACEMENTS.items():
        if not hasattr(modeling, name):
            raise RuntimeError(
                f"use_hamburg_mamba_kernels: {MODELING_MODULE} has no function '{name}'; this transformers "
                "version calls its Mamba kernels differently (written against transformers 5.24)"
            )
        setattr(modeling, name, function)


@contextlib.contextmanager
def hamburg_mamba_kernels() -> Iterator[None]:
    """`use_hamburg_mamba_kernels()` inside the block only: the previous functions are restored on exit."""
    modeling = importlib.import_module(MODELING_MODULE)
    previous = {name: getattr(modeling, name, None) for name in REPLACEMENTS}
    use_hamburg_mamba_kernels()
    try:
        yield
    finally:
        for name, function in previous.items():
            setattr(modeling, name, function)


def is_active() -> bool:
    """Whether transformers' Mamba currently runs on hamburg_mamba's ops."""
    modeling = importlib.import_module(MODELING_MODULE)
    return all(getattr(modeling, name, None) is function for name, function in REPLACEMENTS.items())


__all__ = ["hamburg_mamba_kernels", "is_active", "use_hamburg_mamba_kernels"]
