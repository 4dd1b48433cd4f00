"""Streaming: `model.step` and `PathwayMonitor` give the full forward's outputs, event by event; the fused
CPU block step equals the PyTorch-ops step; half-precision streaming weights stay close to the forward."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from nn_batches import ALL_TASKS, make_batch, select, small_config

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaBlock, PathwayMonitor
from hamburg_mamba.nn import mamba as mamba_module
from hamburg_mamba.ops import mamba_block_step

STREAM_TOL = dict(rtol=1e-4, atol=1e-5)
# Reduced-precision streaming against the float32 forward, on a trained model: max |probability difference|
# and max |regression difference| / target std. Measured on the small preset after 80 training steps, fp16:
# 3e-6 (mamba, fused op: weights rounded, sums in float32) to 7e-5 (transformer: attention also rounds its
# activations) in probability, <= 3e-4 std in regression; bf16 about 10x that. The bounds leave >= 10x
# headroom, sit far below any decision (warning levels are 0.2 apart) and far above float32 rounding, and
# weights one optimizer step stale (a broken weight cache) exceed them more than 10x.
REDUCED_TOL = {torch.float16: 1e-3, torch.bfloat16: 1e-2}
WORKLOAD_STATS = [5.0, 1.5]  # unit_workload target mean, std (regression task of the planted signals)


def build(backbone, seed=0):
    torch.manual_seed(seed)
    return HamburgHealthcareSafetyMamba(small_config(backbone)).eval()


def test_step_equals_forward(backbone):
    model = build(backbone)
    batch = make_batch([12, 12, 12], seed=1)
    full = model(batch)
    cache = model.empty_cache(3)
    for t in range(12):
        out = model.step(select(batch, [0, 1, 2], slice(t, t + 1)), cache)
        for task in ALL_TASKS:
            torch.testing.assert_close(
                out.predictions[task],
                full.step_predictions[task][:, t].detach(),
                **STREAM_TOL,
                msg=f"{task} at event {t}",
            )


def test_monitor_interleaved_pathways_equal_forward(backbone):
    """Pathways of different lengths join at different times and leave when done; a small capacity forces the
    pool to grow; every update equals the full forward at that event. Attention caches grow past their
    initial capacity (70 events)."""
    model = build(backbone)
    lengths = torch.tensor([70, 1, 15, 40, 3, 22])
    batch = make_batch(lengths, seed=2)
    full = model(batch)
    starts = [0, 0, 5, 10, 30, 31]
    monitor = PathwayMonitor(model, capacity=2)
    for clock in range(80):
        rows = [i for i in range(6) if starts[i] <= clock < starts[i] + int(lengths[i])]
        if not rows:
            continue
        steps = [clock - starts[i] for i in rows]
        events = [select(batch, [i], slice(s, s + 1)) for i, s in zip(rows, steps, strict=True)]
        events = _concat(events)
        predictions = monitor.update(events)
        for task in ALL_TASKS:
            expected = full.step_predictions[task][rows, steps].detach()
            torch.testing.assert_close(predictions[task], expected, **STREAM_TOL, msg=f"{task} at clock {clock}")
        finished = [int(batch.pathway_id[i]) for i, s in zip(rows, steps, strict=True) if s == int(lengths[i]) - 1]
        if finished:
            monitor.close(finished)
        assert len(monitor) == len(rows) - len(finished)
    assert len(monitor) == 0


def test_monitor_join_with_history_then_stream(backbone):
    model = build(backbone)
    batch = make_batch([30, 9, 17], seed=3)
    full = model(batch)
    monitor = PathwayMonitor(model, capacity=4)
    history = select(batch, [0, 1, 2], slice(0, 8))  # first 8 events of each
    joined = monitor.join(history)
    for task in ALL_TASKS:
        torch.testing.assert_close(joined[task], full.step_predictions[task][:, 7].detach(), **STREAM_TOL)
    predictions = monitor.update(select(batch, [0, 2], slice(8, 9)))
    for task in ALL_TASKS:
        torch.testing.assert_close(predictions[task], full.step_predictions[task][[0, 2], 8].detach(), **STREAM_TOL)
    pids, risks = monitor.risks()
    assert sorted(pids.tolist()) == sorted(batch.pathway_id.tolist())
    breakdown = monitor.system_breakdown()
    assert breakdown.overall.n_pathways == 3


def test_monitor_thousands_of_live_pathways():
    """2,048 pathways live at once, all updated in one call per event: state per pathway is O(1)."""
    model = build("mamba")
    batch = make_batch(torch.full((2048,), 3), seed=4)
    monitor = PathwayMonitor(model, capacity=64)
    for t in range(3):
        predictions = monitor.update(select(batch, torch.arange(2048), slice(t, t + 1)))
    assert len(monitor) == 2048
    full = model(select(batch, torch.arange(0, 2048, 97)))
    torch.testing.assert_close(
        predictions["closure_24h"][::97], full.pathway_predictions["closure_24h"].detach(), **STREAM_TOL
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("numeric", float("nan"), "PathwayBatch.numeric: expected finite values"),
        ("numeric", float("inf"), "PathwayBatch.numeric: expected finite values"),
        ("time_since_prev_h", float("nan"), "PathwayBatch.time_since_prev_h: expected finite values"),
        ("time_since_prev_h", -0.5, r"PathwayBatch.time_since_prev_h: expected values in \[0.0, inf\]"),
        ("hour_of_day", float("nan"), "PathwayBatch.hour_of_day: expected finite values"),
    ],
)
def test_a_non_finite_streamed_event_is_refused_before_it_poisons_the_cache(field, value, message):
    """A NaN that reached the cache would make every later output of its pathway NaN; the step refuses the
    event by name and leaves the cache as it was, so the next good event streams on as if it never came."""
    model = build("mamba")
    batch = make_batch([3, 3], seed=7)
    cache = model.empty_cache(2)
    model.step(select(batch, [0, 1], slice(0, 1)), cache)
    before = copy.deepcopy(cache)
    bad = select(batch, [0, 1], slice(1, 2))
    getattr(bad, field)[1, 0, ...] = value
    with pytest.raises(ValueError, match=message):
        model.step(bad, cache)
    for got, want in zip(cache, before, strict=True):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    out = model.step(select(batch, [0, 1], slice(1, 2)), cache)
    assert all(bool(torch.isfinite(p).all()) for p in out.predictions.values())


def test_step_refuses_training_mode_and_bad_events():
    model = build("mamba").train()
    batch = make_batch([4], seed=5)
    with pytest.raises(RuntimeError, match="eval"):
        model.step(select(batch, [0], slice(0, 1)), model.empty_cache(1))
    model.eval()
    with pytest.raises(ValueError, match="one real event"):
        model.step(batch, model.empty_cache(1))
    monitor = PathwayMonitor(model)
    two = make_batch([1, 1], seed=6)
    two.pathway_id = torch.tensor([7, 7])
    with pytest.raises(ValueError, match="duplicates"):
        monitor.update(two)


# Sizes off the kernels' 16-lane blocks: d_model 40, d_inner 80, d_state 20, dt_rank 3, d_conv 3.
ODD_SIZES = dict(d_model=40, d_state=20, dt_rank=3, d_conv=3, expand=2)


def odd_block(dtype=torch.float32, seed=0) -> HamburgMambaBlock:
    """A Mamba block whose vector parameters (norm weight, conv bias, D, dt bias) and A are random too."""
    torch.manual_seed(seed)
    block = HamburgMambaBlock(small_config(**ODD_SIZES)).to(dtype)
    with torch.no_grad():
        for p in (
            block.norm.weight,
            block.mixer.conv1d.bias,
            block.mixer.D,
            block.mixer.dt_proj.bias,
            block.mixer.A_log,
        ):
            p.add_(0.3 * torch.randn_like(p))
    return block.eval()


def step_both_ways(block, batch, steps, weights_dtype=None, seed=1):
    """`steps` events of `batch` pathways through the fused op and through the PyTorch ops (the latter on a
    copy of the block whose projection weights are rounded to weights_dtype, which the fused op reads)."""
    g = torch.Generator().manual_seed(seed)
    dtype = block.norm.weight.dtype
    reference = copy.deepcopy(block)
    if weights_dtype is not None:
        with torch.no_grad():
            for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):
                weight = getattr(reference.mixer, name).weight
                weight.copy_(weight.to(weights_dtype).to(dtype))
    fused = block.empty_cache(batch)
    for t in fused.values():
        t.copy_(torch.randn(t.shape, generator=g))
    composite = {name: t.clone() for name, t in fused.items()}
    outs = []
    for _ in range(steps):
        x = torch.randn(batch, block.norm.weight.shape[0], generator=g, dtype=dtype)
        clock = torch.rand(batch, generator=g) * 3
        clock[0] = 0.0  # a zero clock leaves the state as it is
        a = block.step(x, fused, dt_scale=clock, weights_dtype=weights_dtype)
        mamba_module.FUSED_STEP_MAX_BATCH = 0
        try:
            b = reference.step(x, composite, dt_scale=clock)
        finally:
            mamba_module.FUSED_STEP_MAX_BATCH = FUSED_MAX
        outs.append((a, b))
    return outs, fused, composite


FUSED_MAX = mamba_module.FUSED_STEP_MAX_BATCH


@pytest.mark.parametrize("batch", [1, 3, 6])
@pytest.mark.parametrize(
    "dtype, weights_dtype, tol",
    [
        (torch.float32, None, 1e-5),
        (torch.float64, None, 1e-12),
        (torch.float32, torch.float16, 1e-5),
        (torch.float32, torch.bfloat16, 1e-5),
    ],
)
def test_fused_block_step_equals_pytorch_ops(batch, dtype, weights_dtype, tol):
    """Fused op == the PyTorch-ops step (norm, mixer, residual, both caches) with the weights it reads; batch 6
    covers a full pass of 4 batch rows plus a remainder, the odd sizes every kernel tail."""
    assert batch <= FUSED_MAX
    outs, fused, composite = step_both_ways(odd_block(dtype), batch, steps=5, weights_dtype=weights_dtype)
    for a, b in outs:
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for name in ("conv", "ssm"):
        torch.testing.assert_close(fused[name], composite[name], rtol=tol, atol=tol)


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_fused_block_step_on_older_isas(isa):
    """The kernels compiled for older CPUs agree too (baseline has no F16C: float16 weights are converted by
    their bits). The ISA cap is read once per process, hence a subprocess."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import torch
        import test_streaming as t
        from hamburg_mamba.ops import cpu_isa
        assert cpu_isa() in ({isa!r}, "baseline"), cpu_isa()
        torch.set_num_threads(1)
        for weights_dtype in (None, torch.float16, torch.bfloat16):
            outs, fused, composite = t.step_both_ways(t.odd_block(), 6, steps=3, weights_dtype=weights_dtype)
            for a, b in outs:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        print("ok")
        """)
    env = dict(os.environ, HAMBURG_MAMBA_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-3000:]


def test_fused_block_step_follows_parameter_updates():
    """The step's weights (half-precision copies included) are rebuilt after an in-place parameter update."""
    block = odd_block()
    step_both_ways(block, 2, steps=1, weights_dtype=torch.float16)
    with torch.no_grad():
        block.mixer.out_proj.weight.mul_(2.0)
        block.norm.weight.add_(0.5)
    outs, _, _ = step_both_ways(block, 2, steps=2, weights_dtype=torch.float16)
    for a, b in outs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_op_checks_its_arguments():
    block = odd_block()
    w = block._build_fused_weights(None)
    x, cache = torch.randn(2, 40), block.empty_cache(2)

    def call(**changes):
        args = dict(
            x=x,
            norm_weight=w.norm_weight,
            norm_eps=w.norm_eps,
            in_proj_weight=w.in_proj,
            conv_state=cache["conv"],
            conv_weight=w.conv_weight,
            conv_bias=w.conv_bias,
            x_proj_weight=w.x_proj,
            dt_proj_weight=w.dt_proj,
            dt_proj_bias=w.dt_bias,
            A=w.A,
            D=w.D,
            ssm_state=cache["ssm"],
            dt_scale=torch.ones(2),
            out_proj_weight=w.out_proj,
        )
        args.update(changes)
        return mamba_block_step(**args)

    assert call().shape == (2, 40)
    args = (
        x,
        w.norm_weight,
        w.norm_eps,
        w.in_proj,
        cache["conv"],
        w.conv_weight,
        w.conv_bias,
        w.x_proj,
        w.dt_proj,
        w.dt_bias,
        w.A,
        w.D,
        cache["ssm"],
        torch.ones(2),
        w.out_proj,
    )
    torch.library.opcheck(torch.ops.hamburg_mamba.mamba_block_step, args)  # schema (in-place states), fake kernel
    with pytest.raises(TypeError, match="'in_proj_weight' must have the dtype of 'x'"):
        call(in_proj_weight=w.in_proj.double())
    with pytest.raises(TypeError, match="'out_proj_weight' must be Half"):
        call(in_proj_weight=w.in_proj.half(), x_proj_weight=w.x_proj.half(), dt_proj_weight=w.dt_proj.half())
    with pytest.raises(ValueError, match=r"'ssm_state' must have shape \(B, E, N\) = \(2, 80, 20\)"):
        call(ssm_state=torch.zeros(3, 80, 20))
    with pytest.raises(ValueError, match="'conv_state' must be contiguous"):
        call(conv_state=torch.zeros(2, 3, 80).transpose(1, 2))
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="'dt_scale' must be finite and non-negative"):
            call(dt_scale=torch.tensor([1.0, bad]))


def trained(backbone: str, steps: int = 80) -> HamburgHealthcareSafetyMamba:
    """The small preset after `steps` AdamW steps on the planted signals (weights shaped by training)."""
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(small_config(backbone, target_stats={"unit_workload": WORKLOAD_STATS}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        batch = make_batch(torch.randint(4, 25, (16,), generator=g), seed=100 + step, planted=True)
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()
    return model.eval()


def stream_deviation(streamed, reference, batch, weights_dtype) -> tuple[float, float]:
    """Max |probability difference| and max |regression difference| / target std between `streamed.step` over
    every event of `batch` and `reference`'s full forward."""
    with torch.no_grad():
        full = reference(batch)
    cache = streamed.empty_cache(batch.batch_size)
    binary = regression = 0.0
    for t in range(batch.mask.shape[1]):
        out = streamed.step(select(batch, range(batch.batch_size), slice(t, t + 1)), cache, weights_dtype=weights_dtype)
        for task, value in out.predictions.items():
            diff = float((value - full.step_predictions[task][:, t]).abs().max())
            if ALL_TASKS[task]["kind"] == "binary":
                binary = max(binary, diff)
            else:
                regression = max(regression, diff / WORKLOAD_STATS[1])
    return binary, regression


@pytest.mark.parametrize("weights_dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_streaming_stays_close_to_forward(backbone, weights_dtype):
    """Half-precision streaming weights on a trained model, 8 pathways x 40 events against the float32 forward;
    the same check on weights one optimizer step stale (a broken weight cache) fails it."""
    model = trained(backbone)
    batch = make_batch([40] * 8, seed=7, planted=True)
    tol = REDUCED_TOL[weights_dtype]
    binary, regression = stream_deviation(model, model, batch, weights_dtype)
    assert binary < tol and regression < tol, (binary, regression)
    exact = stream_deviation(model, model, batch, None)
    assert max(exact) < 1e-5, exact
    stale = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(stale.parameters(), lr=5e-3)
    stale(make_batch([12] * 16, seed=99, planted=True)).loss.backward()
    optimizer.step()
    assert min(stream_deviation(stale.eval(), model, batch, weights_dtype)) > 3 * tol  # measured: 13x tol or more


def test_weights_dtype_is_checked():
    model = build("mamba")
    batch = make_batch([2], seed=8)
    with pytest.raises(ValueError, match="weights_dtype.*float16.*got torch.int8"):
        model.step(select(batch, [0], slice(0, 1)), model.empty_cache(1), weights_dtype=torch.int8)
    with pytest.raises(ValueError, match="PathwayMonitor: argument 'weights_dtype'.*got torch.float32"):
        PathwayMonitor(model, weights_dtype=torch.float32)
    many = make_batch(torch.full((20,), 2), seed=9)  # more than FUSED_STEP_MAX_BATCH pathways in one update
    monitor = PathwayMonitor(model, weights_dtype=torch.float16)
    for t in range(2):
        predictions = monitor.update(select(many, range(20), slice(t, t + 1)))
    full = model(many)
    for task in ALL_TASKS:
        torch.testing.assert_close(predictions[task], full.pathway_predictions[task].detach(), rtol=0, atol=1e-3)


def _concat(batches):
    first = batches[0]

    def cat(get):
        return torch.cat([get(b) for b in batches])

    return type(first)(
        categorical={n: cat(lambda b, n=n: b.categorical[n]) for n in first.categorical},
        numeric=cat(lambda b: b.numeric),
        numeric_missing=cat(lambda b: b.numeric_missing),
        time_since_prev_h=cat(lambda b: b.time_since_prev_h),
        time_since_start_h=cat(lambda b: b.time_since_start_h),
        hour_of_day=cat(lambda b: b.hour_of_day),
        day_of_week=cat(lambda b: b.day_of_week),
        mask=cat(lambda b: b.mask),
        lengths=cat(lambda b: b.lengths),
        labels={},
        label_mask={},
        event_hospital_id=cat(lambda b: b.event_hospital_id),
        subject_id=cat(lambda b: b.subject_id),
        pathway_id=cat(lambda b: b.pathway_id),
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_and_streaming_match_cpu(backbone):
    model = build(backbone)
    batch = make_batch([9, 4, 13], seed=11)
    cpu = model(batch)
    gpu_model = build(backbone).cuda()
    gpu = gpu_model(batch.to("cuda"))
    for task in ALL_TASKS:
        torch.testing.assert_close(gpu.step_logits[task].cpu(), cpu.step_logits[task], rtol=1e-3, atol=1e-3)
    monitor = PathwayMonitor(gpu_model, capacity=2)
    monitor.join(select(batch, [0, 1, 2], slice(0, 3)).to("cuda"))
    predictions = monitor.update(select(batch, [0, 1, 2], slice(3, 4)).to("cuda"))
    for task in ALL_TASKS:
        torch.testing.assert_close(
            predictions[task].cpu(), cpu.step_predictions[task][:, 3].detach(), rtol=1e-3, atol=1e-3
        )
