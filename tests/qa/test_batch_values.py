"""Values a batch must not carry into the model: each refused naming the field, not turned into NaN outputs.

A NaN input made every later prediction of its pathway NaN, and one in a padded or missing slot poisoned the
weights' gradients (0 * NaN); a negative gap (events out of time order) was clamped to 0 without a word; a
day of week of 9 or an hour of 30 wrapped around the cyclic encoding; a binary label of 2 trained as a BCE
target; an empty batch crashed in a reshape.
"""

import dataclasses

import pytest
import torch

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig


@pytest.fixture(scope="module")
def batch(tiny_data):
    return tiny_data.batch(tiny_data.indices("train")[:3])


@pytest.fixture(scope="module")
def model(tiny_data):
    torch.manual_seed(0)
    return HamburgHealthcareSafetyMamba(HamburgMambaConfig.from_schema(tiny_data.schema, preset="small")).eval()


def with_value(batch, name, value, where=(0, 1)):
    t = getattr(batch, name).clone()
    t[where] = value
    return dataclasses.replace(batch, **{name: t})


@pytest.mark.parametrize(
    "name, value",
    [
        ("numeric", float("nan")),
        ("numeric", float("inf")),
        ("time_since_prev_h", float("nan")),
        ("time_since_prev_h", -0.5),
        ("time_since_start_h", -1.0),
        ("hour_of_day", 30.0),
        ("day_of_week", 9),
    ],
)
def test_bad_values_are_refused_naming_the_field(batch, model, name, value):
    bad = with_value(batch, name, value)
    with pytest.raises(ValueError, match=f"PathwayBatch.{name}: expected"):
        bad.check()
    with pytest.raises(ValueError, match=f"PathwayBatch.{name}"):
        model(bad)


def test_nan_in_a_missing_slot_is_refused(batch):
    # The encoder reads the missing embedding there, but the gradient of the value weight is 0 * NaN.
    missing = batch.numeric_missing.nonzero()[0].tolist()
    with pytest.raises(ValueError, match="PathwayBatch.numeric"):
        with_value(batch, "numeric", float("nan"), tuple(missing)).check()


def test_the_edges_of_the_ranges_pass(batch, model):
    # float32 rounds a time a microsecond before midnight to 24.0 hours: still a valid hour.
    edge = with_value(with_value(batch, "hour_of_day", 24.0), "day_of_week", 6, (1, 0))
    edge.check()
    out = model(edge)
    assert all(bool(torch.isfinite(v).all()) for v in out.pathway_predictions.values())


def test_empty_batch_is_refused_naming_the_batch(tiny_data, model):
    with pytest.raises(ValueError, match=r"batch.mask: expected \(B, L\) with B >= 1 pathways, got \(0, 0\)"):
        model(tiny_data.batch([]))


@pytest.mark.parametrize("value", [2.0, float("nan")])
def test_binary_label_outside_0_1_is_refused(batch, model, value):
    task = "adverse_event"
    where = tuple(batch.label_mask[task].nonzero()[0].tolist())
    labels = {**batch.labels, task: batch.labels[task].clone()}
    labels[task][where] = value
    with pytest.raises(ValueError, match=f"batch.labels\\['{task}'\\]: a binary task expects 0 or 1"):
        model(dataclasses.replace(batch, labels=labels))


def test_regression_label_must_be_finite_where_labelled(batch, model):
    task = "unit_workload"
    where = tuple(batch.label_mask[task].nonzero()[0].tolist())
    labels = {**batch.labels, task: batch.labels[task].clone()}
    labels[task][where] = float("inf")
    with pytest.raises(ValueError, match=f"batch.labels\\['{task}'\\]: a regression task expects finite"):
        model(dataclasses.replace(batch, labels=labels))
