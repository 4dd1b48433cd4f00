"""The fused Mamba-1 mixer (`mamba_inner_fn`) on the emulated CUDA kernels, against the float64 reference.

mamba_inner_fn is Python over four kernels: the causal conv forward and backward and the selective scan
forward and backward (mamba_ssm's is built the same way). Here the four ops' CPU kernels are replaced, for the
duration of one test, by the real .cu kernels compiled for the CPU emulator (tests/cuda_emulator, see
test_cuda_emulator.py), so the mixer's forward and its recomputing backward run end to end on the CUDA code:
the conv output recomputed in the backward, the scan backward starting from the forward's checkpoints, the
gate z read as a strided half of xz, and the layouts the mixer hands each kernel. References:
`mamba_inner_ref` in float64 on the same rounded inputs. Relative L2 tolerances from the largest errors measured
over these cases (2026-12-01): float32 4.6e-7 (the gradient of delta_proj_weight), so 5e-6; bfloat16 8.9e-3
(the same gradient, through the kernels' bfloat16 du and ddelta, unit roundoff 2^-9 each), so 2e-2.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from hamburg_mamba.ops.mamba_inner import mamba_inner_fn
from hamburg_mamba.ops.reference_mixer import mamba_inner_ref

BATCH, E, N, R, M, K = 2, 8, 4, 3, 6, 4
TOLERANCE = {torch.float32: 5e-6, torch.bfloat16: 2e-2}


@contextlib.contextmanager
def emulated_kernels(emu, emu_conv):
    """hamburg_mamba's conv and scan ops dispatch to the emulated CUDA kernels on CPU tensors inside the
    block; the compiled CPU kernels come back on exit (the dispatcher restores the previous kernel)."""
    library = torch.library.Library("hamburg_mamba", "IMPL")
    kernels = {
        "selective_scan_fwd": emu.fwd,
        "selective_scan_bwd": emu.bwd,
        "causal_conv1d_fwd": emu_conv.fwd,
        "causal_conv1d_bwd": emu_conv.bwd,
    }
    calls = dict.fromkeys(kernels, 0)
    try:
        for name, kernel in kernels.items():

            def counted(*args, _name=name, _kernel=kernel):
                calls[_name] += 1
                return _kernel(*args)

            library.impl(name, counted, "CPU")
        yield calls
    finally:
        library._destroy()


def mixer_inputs(dtype, seqlen, seed=0, given_C=False, dt_scale=False) -> dict:
    """xz and the projections in `dtype`, the scan's parameters float32 (as SelectiveSSMLayer keeps them)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.5, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dt)

    inputs = dict(
        xz=rnd(BATCH, 2 * E, seqlen),
        conv1d_weight=rnd(E, 1, K),
        conv1d_bias=rnd(E),
        x_proj_weight=rnd(R + 2 * N, E),
        delta_proj_weight=rnd(E, R),
        out_proj_weight=rnd(M, E),
        out_proj_bias=rnd(M),
        A=-(torch.rand(E, N, generator=g) + 0.5),
        D=rnd(E, dt=torch.float32),
        delta_bias=rnd(E, dt=torch.float32),
    )
    if given_C:
        inputs["C"] = rnd(BATCH, 2, N, seqlen)  # two groups of channels share C
    if dt_scale:
        inputs["dt_scale"] = torch.rand(BATCH, seqlen, generator=g) * 2
    return inputs


def output_and_grads(fn, inputs: dict, dout: torch.Tensor, to=None):
    leaves = {
        k: (v if to is None else v.to(to)).detach().clone().requires_grad_(k != "dt_scale") for k, v in inputs.items()
    }
    out = fn(**leaves)
    names = [k for k in leaves if k != "dt_scale"]
    grads = torch.autograd.grad(out, [leaves[k] for k in names], dout.to(out.dtype))
    return out, dict(zip(names, grads, strict=True))


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


# L = 70 crosses the CPU kernels' 64-step checkpoint; L = 300 takes the emulated long kernel.
@pytest.mark.parametrize(
    "dtype, seqlen, variant",
    [
        pytest.param(torch.float32, 70, {}, id="f32-projected"),
        pytest.param(torch.float32, 300, {"given_C": True, "dt_scale": True}, id="f32-grouped-C-dt-scale-long"),
        pytest.param(torch.bfloat16, 70, {}, id="bf16-projected"),
    ],
)
def test_mixer_on_emulated_cuda_kernels_matches_float64_reference(emu, emu_conv, dtype, seqlen, variant):
    inputs = mixer_inputs(dtype, seqlen, **variant)
    dout = torch.randn(BATCH, seqlen, M, generator=torch.Generator().manual_seed(1))
    with emulated_kernels(emu, emu_conv) as calls:
        out, grads = output_and_grads(mamba_inner_fn, inputs, dout)
    # the backward recomputes the conv forward: two conv forwards, one of everything else
    assert calls == {"selective_scan_fwd": 1, "selective_scan_bwd": 1, "causal_conv1d_fwd": 2, "causal_conv1d_bwd": 1}
    want_out, want_grads = output_and_grads(mamba_inner_ref, inputs, dout, to=torch.float64)
    assert out.dtype == dtype
    assert rel_l2(out, want_out) < TOLERANCE[dtype]
    for name, want in want_grads.items():
        assert rel_l2(grads[name], want) < TOLERANCE[dtype], name


def test_emulated_kernels_are_removed_on_exit(emu, emu_conv):
    """Inside the block the emulated kernels answer; after it the compiled CPU kernels do again."""
    inputs = mixer_inputs(torch.float32, 20)
    with emulated_kernels(emu, emu_conv) as calls:
        mamba_inner_fn(**inputs)
    assert calls["selective_scan_fwd"] == 1
    mamba_inner_fn(**inputs)
    assert calls["selective_scan_fwd"] == 1
