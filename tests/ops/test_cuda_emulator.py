"""The CUDA kernels (csrc/selective_scan/cuda/*.cu, csrc/state_update/cuda/*.cu) run in a CPU emulation against
the float64 reference.

Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C).

No GPU is needed: tests/cuda_emulator/build_emu.py compiles the real .cu sources with g++ through
cuda_shim.h (threads of a block as std::threads, __syncthreads as a barrier, warp shuffles through shared
slots) together with the real host checks and packing, once per session. The block is shrunk to 64 threads
(two warps) so that L = 1100 and L = 2500 span two and three chunks of the long kernel (16 steps a thread)
and L <= 256 takes the short kernel (4 steps a thread). References run in float64 on the same rounded inputs
(hamburg_mamba.ops.reference), so the tolerances measure the kernels' float32 arithmetic and the rounding of
their input-dtype outputs only. The emulation checks the kernels' logic (indexing, chunk carries,
checkpoints, block scans, atomics, dtype handling), not a GPU's timing or its hardware exp.
"""

from __future__ import annotations

import sys

import pytest
import torch

from hamburg_mamba.ops.reference import (
    causal_conv1d_ref,
    causal_conv1d_update_ref,
    selective_scan_ref,
    selective_state_update_ref,
)

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
OPTIONAL = ("D", "z", "delta_bias", "initial_state", "dt_scale")

# Relative L2 tolerances (||got - want|| / ||want||), from the largest errors measured over this file's cases
# (2026-12-01). float32: at most 6.6e-7 (dA at L = 2500, a sum over every step), so 5e-6 leaves a factor of 7.
# Outputs returned in a half dtype (out, du, ddelta, dz, dB, dC) are dominated by that rounding (unit
# roundoff 2^-9 = 2e-3 for bfloat16, 2^-11 = 4.9e-4 for float16): measured at most 1.9e-3 (2.5e-3 for the
# 12 outputs of the bfloat16 state update, too few to average) and 2.2e-4, so 5e-3 and 1e-3. What stays
# float32 in every dtype (last state, dA, dD, ddelta_bias, dinitial_state, the updated state; at most 2.6e-7
# with half inputs) keeps the float32 tolerance.
TOLERANCE = {torch.float32: 5e-6, torch.float16: 1e-3, torch.bfloat16: 5e-3}
FLOAT32_RESULTS = ("last_state", "dA", "dD", "ddelta_bias", "dinitial_state", "state")


def tolerance(name: str, dtype: torch.dtype) -> float:
    return TOLERANCE[torch.float32] if name in FLOAT32_RESULTS else TOLERANCE[dtype]


# (B, D, L, N, G, dtype, softplus, optional inputs); G = 0 means B, C of shape (B, N, L).
SCAN_CASES = [
    pytest.param(1, 2, 7, 4, 0, torch.float32, True, OPTIONAL, id="tiny-ungrouped"),
    pytest.param(2, 4, 64, 5, 2, torch.float32, True, OPTIONAL, id="one-checkpoint-interval"),
    pytest.param(2, 4, 256, 3, 4, torch.float32, False, OPTIONAL, id="short-kernel-full-chunk"),
    pytest.param(2, 4, 2500, 3, 2, torch.float32, True, OPTIONAL, id="three-long-chunks"),
    pytest.param(1, 4, 1100, 2, 1, torch.float32, False, OPTIONAL, id="two-long-chunks-no-softplus"),
    pytest.param(1, 2, 37, 3, 1, torch.float32, True, (), id="no-optional-inputs"),
    pytest.param(1, 2, 37, 3, 2, torch.float32, False, ("D", "dt_scale"), id="D-and-dt-scale-only"),
    pytest.param(2, 4, 300, 4, 2, torch.bfloat16, True, OPTIONAL, id="bf16-long-one-chunk"),
    pytest.param(1, 2, 1100, 3, 0, torch.bfloat16, False, OPTIONAL, id="bf16-two-chunks-ungrouped"),
    pytest.param(1, 2, 200, 4, 2, torch.float16, True, OPTIONAL, id="fp16-short"),
]

# (B, D, N, G, dtype, softplus, optional inputs); D = 5 rows leave the last block with one idle warp, N = 40
# makes the lanes loop over the state twice. G = 0 means B, C of shape (B, N).
UPDATE_CASES = [
    pytest.param(1, 5, 40, 0, torch.float32, True, OPTIONAL, id="f32-ungrouped"),
    pytest.param(2, 4, 16, 2, torch.float32, False, ("D", "dt_scale"), id="f32-grouped-no-softplus"),
    pytest.param(2, 6, 8, 3, torch.bfloat16, True, OPTIONAL, id="bf16-grouped"),
    pytest.param(1, 3, 4, 1, torch.float32, True, (), id="no-optional-inputs"),
]


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def make_scan_inputs(batch, dim, seqlen, dstate, groups, dtype, softplus, optional, seed=0):
    """Inputs in a trained Mamba's ranges (A < 0, steps 0.01-1); sequences in `dtype`, parameters float32."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(dt)

    bc_shape = (batch, dstate, seqlen) if groups == 0 else (batch, groups, dstate, seqlen)
    delta = rnd(batch, dim, seqlen, scale=0.5, dt=torch.float32) - 1.0 if softplus else None
    if delta is None:
        delta = torch.rand(batch, dim, seqlen, generator=g) * 0.3 + 0.01
    args = {
        "u": rnd(batch, dim, seqlen),
        "delta": delta.to(dtype),
        "A": -(torch.rand(dim, dstate, generator=g) * 2 + 0.1),
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(dim, dt=torch.float32),
        "z": rnd(batch, dim, seqlen),
        # Without softplus the step is delta + delta_bias itself: keep it positive (a negative step grows h).
        "delta_bias": rnd(dim, scale=0.3, dt=torch.float32) if softplus else torch.rand(dim, generator=g) * 0.3,
        "initial_state": rnd(batch, dim, dstate, dt=torch.float32),
        "dt_scale": torch.rand(batch, seqlen, generator=g) * 2,
    }
    for name in OPTIONAL:
        if name not in optional:
            args[name] = None
    return args


def reference_scan(args, softplus, dout, dlast):
    """float64 reference outputs and gradients of every given input except dt_scale (not differentiable)."""
    ref = {k: None if v is None else v.detach().double().requires_grad_(k != "dt_scale") for k, v in args.items()}
    out, last = selective_scan_ref(**ref, delta_softplus=softplus, return_last_state=True)
    loss = (out * dout.double()).sum()
    if dlast is not None:
        loss = loss + (last * dlast.double()).sum()
    names = [n for n in GRAD_NAMES if ref[n] is not None]
    grads = dict(zip(names, torch.autograd.grad(loss, [ref[n] for n in names]), strict=True))
    return out, last, grads


def scan_errors(emu, args, softplus, dlast_given):
    """Relative L2 errors of the emulated forward and backward against the float64 reference."""
    pos = [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]
    out, last, checkpoints = emu.fwd(*pos, softplus, True)
    g = torch.Generator().manual_seed(1)
    dout = torch.randn(out.shape, generator=g).to(out.dtype)
    dlast = torch.randn(last.shape, generator=g) if dlast_given else None
    grads = emu.bwd(dout, dlast, *pos, checkpoints, softplus)
    want_out, want_last, want_grads = reference_scan(args, softplus, dout, dlast)
    errors = {"out": rel_l2(out, want_out), "last_state": rel_l2(last, want_last)}
    for name, got in zip(GRAD_NAMES, grads, strict=True):
        if name in want_grads:
            errors["d" + name] = rel_l2(got, want_grads[name])
    return errors


@pytest.mark.parametrize("batch, dim, seqlen, dstate, groups, dtype, softplus, optional", SCAN_CASES)
def test_scan_forward_backward_match_float64_reference(
    emu, batch, dim, seqlen, dstate, groups, dtype, softplus, optional
):
    args = make_scan_inputs(batch, dim, seqlen, dstate, groups, dtype, softplus, optional)
    # dlast_state with an initial state, as a chunked caller passes both; without, the gradient flows from out.
    errors = scan_errors(emu, args, softplus, dlast_given="initial_state" in optional)
    bad = {k: v for k, v in errors.items() if not v <= tolerance(k, dtype)}
    assert not bad, f"relative L2 errors above tolerance: {bad} (all: {errors})"


def test_scan_gradients_cover_every_input(emu):
    """Shapes the host packing promises: a checkpoint every 64 steps (ceil(70 / 64) = 2 of (B, D, N)), and one
    non-zero gradient per input, shaped like it."""
    args = make_scan_inputs(1, 2, 70, 3, 1, torch.float32, True, OPTIONAL)
    pos = [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]
    out, last, checkpoints = emu.fwd(*pos, True, True)
    assert checkpoints.shape == (1, 2, 2, 3)  # ceil(70 / 64) checkpoints of (B, D, N)
    grads = emu.bwd(torch.ones_like(out), torch.ones_like(last), *pos, checkpoints, True)
    for name, grad in zip(GRAD_NAMES, grads, strict=True):
        assert grad.shape == args[name].shape, name
        assert grad.abs().sum() > 0, name


def make_update_inputs(batch, dim, dstate, groups, dtype, softplus, optional, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g) * scale).to(dt)

    bc_shape = (batch, dstate) if groups == 0 else (batch, groups, dstate)
    dt = rnd(batch, dim, scale=0.5) - 1.0 if softplus else (torch.rand(batch, dim, generator=g) * 0.3).to(dtype)
    args = {
        "state": rnd(batch, dim, dstate, dt=torch.float32),
        "x": rnd(batch, dim),
        "dt": dt,
        "A": -(torch.rand(dim, dstate, generator=g) * 2 + 0.1),
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(dim, dt=torch.float32),
        "z": rnd(batch, dim),
        "dt_bias": rnd(dim, scale=0.3, dt=torch.float32) if softplus else torch.rand(dim, generator=g) * 0.3,
        "dt_scale": torch.rand(batch, generator=g) * 2,
    }
    renamed = {"delta_bias": "dt_bias"}
    for name in OPTIONAL:
        if name not in optional and name != "initial_state":
            args[renamed.get(name, name)] = None
    return args


@pytest.mark.parametrize("batch, dim, dstate, groups, dtype, softplus, optional", UPDATE_CASES)
def test_state_update_matches_float64_reference(emu, batch, dim, dstate, groups, dtype, softplus, optional):
    args = make_update_inputs(batch, dim, dstate, groups, dtype, softplus, optional)
    ref = {k: None if v is None else v.double() for k, v in args.items()}
    want_out = selective_state_update_ref(**ref, dt_softplus=softplus)  # updates ref["state"]
    state = args["state"].clone()
    order = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "dt_scale")
    out = emu.update(state, *[args[k] for k in order], softplus)
    errors = {"out": rel_l2(out, want_out), "state": rel_l2(state, ref["state"])}
    bad = {k: v for k, v in errors.items() if not v <= tolerance(k, dtype)}
    assert not bad, f"relative L2 errors above tolerance: {bad} (all: {errors})"


def test_state_update_steps_reproduce_the_scan(emu):
    """L single steps of the update kernel equal one emulated scan of L steps (same arithmetic per step)."""
    args = make_scan_inputs(2, 4, 12, 16, 2, torch.float32, True, OPTIONAL, seed=2)
    pos = [args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state", "dt_scale")]
    out, last, _ = emu.fwd(*pos, True, False)
    state = args["initial_state"].clone()
    steps = []
    for t in range(12):
        steps.append(
            emu.update(
                state,
                args["u"][..., t],
                args["delta"][..., t],
                args["A"],
                args["B"][..., t],
                args["C"][..., t],
                args["D"],
                args["z"][..., t],
                args["delta_bias"],
                args["dt_scale"][:, t],
                True,
            )
        )
    assert rel_l2(torch.stack(steps, -1), out) <= TOLERANCE[torch.float32]
    assert rel_l2(state, last) <= TOLERANCE[torch.float32]


# --------------------------------------------------------------------------------------------------
# The causal conv1d kernels (csrc/causal_conv1d/cuda), built into a library of their own. Their float32 sums
# of W terms and the dweight / dbias block reductions stay near 1e-7; half dtypes are the rounding of the
# returned values, as above (dweight and dbias are float32 for float32 weights).

CONV_TOLERANCE = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def conv_inputs(batch, dim, seqlen, width, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dt)

    return dict(
        x=rnd(batch, dim, seqlen),
        weight=rnd(dim, width, scale=width**-0.5, dt=torch.float32),
        bias=rnd(dim, scale=0.3, dt=torch.float32),
        initial_states=rnd(batch, dim, width - 1),
        dout=rnd(batch, dim, seqlen),
        dfinal=rnd(batch, dim, width - 1),
    )


def conv_reference_grads(a, seq_idx, silu):
    """out, final states and (dx, dweight, dbias, dinitial_states) of the float64 reference."""
    leaves = {k: a[k].double().requires_grad_(True) for k in ("x", "weight", "bias", "initial_states")}
    init = None if seq_idx is not None else leaves["initial_states"]
    result = causal_conv1d_ref(
        leaves["x"],
        leaves["weight"],
        leaves["bias"],
        seq_idx=seq_idx,
        initial_states=init,
        return_final_states=seq_idx is None,
        activation="silu" if silu else None,
    )
    out, final = result if seq_idx is None else (result, None)
    loss = (out * a["dout"].double()).sum() + (0 if final is None else (final * a["dfinal"].double()).sum())
    loss.backward()
    grads = [leaves[k].grad for k in ("x", "weight", "bias")]
    return out, final, grads + [None if seq_idx is not None else leaves["initial_states"].grad]


# (B, D, L, W, dtype, packed): L = 600 spans several 256-thread blocks of the per-element kernels; L = 2 is
# shorter than the W - 1 = 2 history steps (final states come from the initial states).
CONV_CASES = [
    pytest.param(2, 3, 37, 4, torch.float32, False, id="f32-w4"),
    pytest.param(1, 2, 600, 2, torch.float32, False, id="f32-w2-long"),
    pytest.param(2, 3, 2, 3, torch.float32, False, id="f32-w3-shorter-than-history"),
    pytest.param(2, 3, 80, 4, torch.float32, True, id="f32-packed"),
    pytest.param(2, 3, 50, 4, torch.bfloat16, False, id="bf16"),
    pytest.param(2, 3, 50, 3, torch.float16, False, id="fp16"),
]


@pytest.mark.parametrize("batch,dim,seqlen,width,dtype,packed", CONV_CASES)
@pytest.mark.parametrize("silu", [False, True])
def test_conv_forward_backward_match_float64_reference(emu_conv, batch, dim, seqlen, width, dtype, packed, silu):
    a = conv_inputs(batch, dim, seqlen, width, dtype)
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(batch, seqlen, dtype=torch.int32)
        seq_idx[:, 20:] += 1
        seq_idx[:, 21:] += 1
        seq_idx[:, seqlen - 6 :] = -1
    init = None if packed else a["initial_states"]
    out, final = emu_conv.fwd(a["x"], a["weight"], a["bias"], seq_idx, init, not packed, silu)
    grads = emu_conv.bwd(
        a["x"], a["weight"], a["bias"], a["dout"], seq_idx, init, None if packed else a["dfinal"], silu
    )
    want_out, want_final, want_grads = conv_reference_grads(a, seq_idx, silu)
    tol = CONV_TOLERANCE[dtype]
    assert rel_l2(out, want_out) < tol
    if not packed:
        assert torch.equal(final.double(), want_final.detach())
    for name, got, want in zip(("dx", "dweight", "dbias", "dinitial_states"), grads, want_grads, strict=True):
        if want is None:
            continue
        limit = CONV_TOLERANCE[torch.float32] if name in ("dweight", "dbias") else tol
        assert rel_l2(got, want) < limit, name


@pytest.mark.parametrize("circular", [False, True])
def test_conv_update_matches_float64_reference(emu_conv, circular):
    batch, dim, width, state_len, steps = 3, 5, 4, 6, 2
    a = conv_inputs(batch, dim, steps, width, torch.float32)
    cache = torch.randn(5, dim, state_len)
    cache_ref = cache.clone()
    rows = torch.tensor([3, -1, 0], dtype=torch.int32)
    lens = torch.tensor([7, 2, 11], dtype=torch.int32) if circular else None
    out = emu_conv.update(a["x"], cache, a["weight"], a["bias"], True, lens, rows)
    want = causal_conv1d_update_ref(a["x"], cache_ref, a["weight"], a["bias"], "silu", lens, rows)
    assert rel_l2(out, want) < CONV_TOLERANCE[torch.float32]
    assert torch.equal(cache, cache_ref)


def test_a_second_build_in_the_process_reuses_the_loaded_library(emu, tmp_path):
    """Loading a second library for a namespace already registered aborts the whole process (TORCH_LIBRARY),
    so the builder hands back the loaded ops instead of compiling and loading again."""
    build_emu = sys.modules["cuda_emulator_build"]  # loaded by the `emu` fixture (tests/ops/conftest.py)
    config = next(c for c in (build_emu.EmulatorConfig(threads=t, arch=900) for t in (64, 128)) if c.name == emu.name)
    again = build_emu.build(config, tmp_path)
    assert again.fwd is emu.fwd
    assert not any(tmp_path.iterdir()), "nothing is compiled for a namespace that is already loaded"
