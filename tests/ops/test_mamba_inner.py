"""mamba_inner_fn (fused Mamba-1 mixer) against the float64 pure-PyTorch reference `mamba_inner_ref`. float64 runs on
the CPU (a CPU-only dtype of the kernels); reduced precision on each device of the `device` fixture
(tests/ops/conftest.py), inputs and reference on the CPU.

Glossary: B batch, L steps, M d_model, E d_inner, N d_state, R dt_rank, K d_conv, G groups.
L = 70 crosses one scan checkpoint (every 64 steps), so the backward restarts from a saved state.
"""

from __future__ import annotations

import pytest
import torch
from scan_cases import dict_to_device

from hamburg_mamba.ops.mamba_inner import mamba_inner_fn
from hamburg_mamba.ops.reference_mixer import mamba_inner_ref

BATCH, E, L, N, R, M, K, G = 2, 8, 70, 4, 3, 6, 4, 2


def make_inputs(dtype=torch.float64, seed=0, **variant) -> dict:
    """Random mixer inputs; `variant` picks optional pieces: bias, given B/C layouts, rms weights, dt_scale."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.5):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    inputs = dict(
        xz=rnd(BATCH, 2 * E, L),
        conv1d_weight=rnd(E, 1, K),
        conv1d_bias=rnd(E) if variant.get("conv_bias", True) else None,
        x_proj_weight=rnd(R + 2 * N, E),
        delta_proj_weight=rnd(E, R),
        out_proj_weight=rnd(M, E),
        out_proj_bias=rnd(M) if variant.get("out_bias", True) else None,
        A=-(torch.rand(E, N, generator=g, dtype=torch.float64) + 0.5),
        D=rnd(E),
        delta_bias=rnd(E),
    )
    given = {"variable": (BATCH, N, L), "grouped": (BATCH, G, N, L), "fixed": (E, N)}
    for name in ("B", "C"):
        layout = variant.get(name)
        if layout is not None:
            inputs[name] = rnd(*given[layout])
        elif variant.get("proj_bias"):
            inputs[f"{name}_proj_bias"] = rnd(N)
    if variant.get("rms"):
        inputs.update(b_rms_weight=1 + rnd(N, scale=0.1), c_rms_weight=1 + rnd(N, scale=0.1))
        inputs.update(dt_rms_weight=1 + rnd(E, scale=0.1))
    if variant.get("dt_scale"):
        inputs["dt_scale"] = torch.rand(BATCH, L, generator=g, dtype=torch.float64) * 2
    # The scan's parameters stay float32, as in the layer; so does a given (E, N) B or C (a weight, as in mamba_ssm).
    low = {"A", "D", "delta_bias", "dt_scale"} | {name for name in ("B", "C") if variant.get(name) == "fixed"}
    return {
        k: (v.to(dtype if k not in low else max(dtype, torch.float32, key=_width)) if v is not None else None)
        for k, v in inputs.items()
    }


def _width(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits


def values_and_grads(fn, inputs: dict, dout: torch.Tensor, device="cpu", **options):
    """fn's output and the gradients of <out, dout> with respect to every floating input but dt_scale, with fn run
    on `device`; results on the CPU."""
    inputs = dict_to_device(inputs, device)
    leaves = {k: v.detach().clone().requires_grad_(k != "dt_scale") for k, v in inputs.items() if v is not None}
    out = fn(**{**inputs, **leaves}, **options)
    names = [k for k in leaves if k != "dt_scale"]
    grads = torch.autograd.grad(out, [leaves[k] for k in names], dout.to(out.device, out.dtype))
    return out.cpu(), {k: v.cpu() for k, v in zip(names, grads, strict=True)}


VARIANTS = {
    "projected": {},
    "projected_with_bias": {"proj_bias": True},
    "given_variable_B": {"B": "variable"},
    "given_grouped_C": {"C": "grouped"},
    "given_fixed_B_C": {"B": "fixed", "C": "fixed"},
    "rms_weights": {"rms": True},
    "dt_scale_no_biases": {"dt_scale": True, "conv_bias": False, "out_bias": False},
}


@pytest.mark.parametrize("checkpoint_lvl", [0, 1])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float64_matches_reference(variant, checkpoint_lvl):
    inputs = make_inputs(**VARIANTS[variant])
    dout = torch.randn(BATCH, L, M, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref, ref_grads = values_and_grads(mamba_inner_ref, inputs, dout)
    out, grads = values_and_grads(mamba_inner_fn, inputs, dout, checkpoint_lvl=checkpoint_lvl)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-11, msg=name)


# Reduced precision against the float64 reference of the same (rounded) inputs. The error is measured relative to
# each tensor's largest entry. float32: the conv, projections and scan accumulate in float32 (unit roundoff 6e-8)
# over L = 70 steps and E = 8 channels; 1e-5 leaves 100x room. bfloat16: xz, the weights and every intermediate
# tensor (conv output, x_dbl, delta, the gated output) are rounded to 8 significant bits (unit roundoff 3.9e-3)
# at about five stages; measured errors are up to 2.8e-2 of the largest entry (dA), so 5e-2.
REDUCED_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}


@pytest.mark.parametrize("dtype", list(REDUCED_TOLERANCE))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reduced_precision_matches_reference(dtype, variant, device):
    inputs = make_inputs(dtype, **VARIANTS[variant])
    as_f64 = {k: v.double() if v is not None else None for k, v in inputs.items()}
    dout = torch.randn(BATCH, L, M, generator=torch.Generator().manual_seed(1)).to(dtype)
    ref, ref_grads = values_and_grads(mamba_inner_ref, as_f64, dout.double())
    out, grads = values_and_grads(mamba_inner_fn, inputs, dout, device)
    assert out.dtype == dtype
    tol = REDUCED_TOLERANCE[dtype]
    assert_relative_close(out, ref, tol, "out")
    for name in ref_grads:
        assert grads[name].dtype == inputs[name].dtype, name
        assert_relative_close(grads[name], ref_grads[name], tol, name)


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    scale = expected.abs().max().item()
    error = (actual.double() - expected).abs().max().item()
    assert error <= tol * scale, f"{name}: max error {error:.3g} > {tol} x max |expected| {scale:.3g}"


def test_saves_only_xz_gated_output_and_checkpoints():
    """checkpoint_lvl=1 keeps, besides the arguments, exactly the gated scan output (B, E, L) and the scan's
    state checkpoints (B, E, ceil(L / 64), N): the conv output and delta are recomputed in the backward."""
    inputs = {k: v.float() if v is not None else None for k, v in make_inputs().items()}
    leaves = {k: v.requires_grad_() for k, v in inputs.items() if v is not None}
    argument_ptrs = {v.untyped_storage().data_ptr() for v in leaves.values()}
    saved = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in argument_ptrs:
            saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mamba_inner_fn(**leaves, checkpoint_lvl=1)
    assert sorted(saved) == sorted([(BATCH, E, L), (BATCH, E, 2, N)])


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        (dict(checkpoint_lvl=2), "checkpoint_lvl"),
        (dict(xz=torch.zeros(BATCH, 2 * E + 1, L)), "xz"),
        (dict(x_proj_weight=torch.zeros(R + N, E)), "x_proj_weight"),
        (dict(delta_proj_weight=torch.zeros(E + 1, R)), "delta_proj_weight"),
        (dict(conv1d_weight=torch.zeros(E + 1, 1, K)), "conv1d_weight"),
        (dict(D=torch.zeros(E + 1)), "D"),
        (dict(B=torch.zeros(BATCH, N, L), B_proj_bias=torch.zeros(N)), "B_proj_bias"),
        (dict(C=torch.zeros(BATCH, N, L), c_rms_weight=torch.ones(N)), "c_rms_weight"),
        (dict(dt_scale=torch.ones(BATCH, L, requires_grad=True)), "dt_scale"),
        (dict(A=torch.zeros(E, N, dtype=torch.complex64)), "A"),
    ],
)
def test_bad_arguments_are_named(change, argument):
    inputs = {k: v.float() if v is not None else None for k, v in make_inputs().items()}
    with pytest.raises(ValueError, match=f"'{argument}'"):
        mamba_inner_fn(**{**inputs, **change})


def test_selective_ssm_layer_fused_training_path_changes_nothing(monkeypatch):
    """SelectiveSSMLayer in training runs mamba_inner_fn; its outputs and every gradient equal the unfused path's
    (float64, with the per-event clock and a padded step), and the fused call happens exactly once per forward."""
    from hamburg_mamba.nn import mamba as mamba_module

    torch.manual_seed(0)
    layer = mamba_module.SelectiveSSMLayer(d_model=M, d_inner=E, d_state=N, dt_rank=R, d_conv=K).double().train()
    x = torch.randn(BATCH, L, M, dtype=torch.float64)
    dt_scale = torch.rand(BATCH, L, dtype=torch.float64) * 2
    dt_scale[1, -5:] = 0  # padded events
    dout = torch.randn(BATCH, L, M, dtype=torch.float64)
    calls = []
    fused = mamba_module.mamba_inner_fn
    monkeypatch.setattr(mamba_module, "mamba_inner_fn", lambda *a, **k: calls.append(1) or fused(*a, **k))

    def run(use_fused: bool):
        layer.use_fused_mixer = use_fused
        leaf = x.clone().requires_grad_()
        out = layer(leaf, dt_scale=dt_scale)
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad(out, [leaf, *params.values()], dout)
        return out, dict(zip(["x", *params], grads, strict=True))

    out, grads = run(True)
    assert len(calls) == 1
    ref, ref_grads = run(False)
    assert len(calls) == 1
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-9, atol=1e-11, msg=name)
    layer(x, dt_scale=dt_scale, return_state=True)  # the cache needs the unfused path
    with torch.no_grad():
        layer(x, dt_scale=dt_scale)
    layer.eval()(x, dt_scale=dt_scale)
    assert len(calls) == 1
