"""The model on batches from the data package's generator and connector (the contract end to end): config from
the fitted schema, training step, streaming equal to the forward, system breakdown per hospital."""

from __future__ import annotations

import pytest
import torch

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig, PathwayMonitor

pytest.importorskip("pandas")

# One week of three hospitals at 3 % of their 2016 ED volume: a few hundred pathways, seconds to generate.
TINY_COHORT = dict(
    days=7,
    scale=0.03,
    hospitals=("Asklepios Harburg", "Albertinen", "Asklepios Nord"),
    heat_wave_start="2023-08-03",
    heat_wave_days=3,
    mci_time="2023-08-05 15:00",
    mci_casualties=10,
)


@pytest.fixture(scope="module")
def data():
    from hamburg_mamba.data import SyntheticConfig, connect_hamburg_data, generate_synthetic

    synthetic = generate_synthetic(SyntheticConfig(**TINY_COHORT))
    return connect_hamburg_data(
        synthetic.events, labels=synthetic.labels, oracle=synthetic.oracle, split="subject", seed=0
    )


def test_generated_batches_train_stream_and_warn(data):
    config = HamburgMambaConfig.from_schema(data.schema, preset="small", backbone="hybrid")
    assert config.vocab_sizes == data.schema.vocab_sizes
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(config)
    train = data.indices("train")
    batch = data.batch(train[:24])
    out = model(batch)
    assert set(out.task_losses) == set(data.schema.tasks)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())

    model.eval()
    batch = data.batch(train[24:30])
    full = model(batch)
    monitor = PathwayMonitor(model, capacity=4)
    lengths = batch.lengths.tolist()
    for t in range(max(lengths)):
        rows = [i for i, n in enumerate(lengths) if t < n]
        events = _events_at(batch, rows, t)
        predictions = monitor.update(events)
        for task in config.tasks:
            torch.testing.assert_close(
                predictions[task], full.step_predictions[task][rows, t].detach(), rtol=1e-4, atol=1e-5
            )
    breakdown = model.predict_system_breakdown(data.batch(train[:64]))
    assert set(breakdown.hospitals) <= set(data.encoded.sites["hospital"])
    assert sum(w.n_pathways for w in breakdown.hospitals.values()) == 64


def _events_at(batch, rows, t):
    """Event t of the given pathways as a one-event PathwayBatch."""
    from hamburg_mamba.data.batch import PathwayBatch

    r = torch.tensor(rows)
    one = slice(t, t + 1)
    return PathwayBatch(
        categorical={n: v[r, one] for n, v in batch.categorical.items()},
        numeric=batch.numeric[r, one],
        numeric_missing=batch.numeric_missing[r, one],
        time_since_prev_h=batch.time_since_prev_h[r, one],
        time_since_start_h=batch.time_since_start_h[r, one],
        hour_of_day=batch.hour_of_day[r, one],
        day_of_week=batch.day_of_week[r, one],
        mask=batch.mask[r, one],
        lengths=torch.ones(len(rows), dtype=torch.int64),
        labels={},
        label_mask={},
        event_hospital_id=batch.event_hospital_id[r, one],
        subject_id=batch.subject_id[r],
        pathway_id=batch.pathway_id[r],
    )
