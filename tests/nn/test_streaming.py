"""Streaming: `model.step` and `PathwayMonitor` give the full forward's outputs, event by event."""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_TASKS, make_batch, select, small_config

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, PathwayMonitor

STREAM_TOL = dict(rtol=1e-4, atol=1e-5)


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
            torch.testing.assert_close(out.predictions[task], full.step_predictions[task][:, t].detach(),
                                       **STREAM_TOL, msg=f"{task} at event {t}")


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
        events = [select(batch, [i], slice(s, s + 1)) for i, s in zip(rows, steps)]
        events = _concat(events)
        predictions = monitor.update(events)
        for task in ALL_TASKS:
            expected = full.step_predictions[task][rows, steps].detach()
            torch.testing.assert_close(predictions[task], expected, **STREAM_TOL, msg=f"{task} at clock {clock}")
        finished = [int(batch.pathway_id[i]) for i, s in zip(rows, steps) if s == int(lengths[i]) - 1]
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
    torch.testing.assert_close(predictions["closure_24h"][::97], full.pathway_predictions["closure_24h"].detach(),
                               **STREAM_TOL)


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


def _concat(batches):
    first = batches[0]

    def cat(get):
        return torch.cat([get(b) for b in batches])

    return type(first)(
        categorical={n: cat(lambda b: b.categorical[n]) for n in first.categorical},
        numeric=cat(lambda b: b.numeric), numeric_missing=cat(lambda b: b.numeric_missing),
        time_since_prev_h=cat(lambda b: b.time_since_prev_h), time_since_start_h=cat(lambda b: b.time_since_start_h),
        hour_of_day=cat(lambda b: b.hour_of_day), day_of_week=cat(lambda b: b.day_of_week),
        mask=cat(lambda b: b.mask), lengths=cat(lambda b: b.lengths), labels={}, label_mask={},
        subject_id=cat(lambda b: b.subject_id), hospital_id=cat(lambda b: b.hospital_id),
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
        torch.testing.assert_close(predictions[task].cpu(), cpu.step_predictions[task][:, 3].detach(),
                                   rtol=1e-3, atol=1e-3)
