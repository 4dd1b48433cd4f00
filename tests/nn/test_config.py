"""HamburgMambaConfig's config.json: loading does not depend on the key order other JSON tools write, every field
is present and checked (type and range), and an error names the field, the value and what was expected."""

from __future__ import annotations

import json

import pytest
import torch
from nn_batches import ALL_TASKS, VOCAB_SIZES, make_batch, small_config

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig


def reorder_objects(value, order):
    """`value` with the keys of every JSON object, at any depth, rearranged by `order` (a function of the key
    list), as a tool that re-serialises JSON may do; arrays keep their order."""
    if isinstance(value, dict):
        return {k: reorder_objects(value[k], order) for k in order(list(value))}
    if isinstance(value, list):
        return [reorder_objects(v, order) for v in value]
    return value


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(5)
    model = HamburgHealthcareSafetyMamba(small_config("mamba")).eval()
    model.save_pretrained(tmp_path)
    return model, tmp_path


@pytest.mark.parametrize("order", [sorted, lambda keys: keys[::-1]], ids=["sorted", "reversed"])
def test_reordered_config_json_gives_the_same_predictions(saved, order):
    # the declaration orders are neither sorted nor symmetric, so a reordering moves heads and embeddings
    assert order(list(ALL_TASKS)) != list(ALL_TASKS) and order(list(VOCAB_SIZES)) != list(VOCAB_SIZES)
    model, folder = saved
    path = folder / "config.json"
    path.write_text(
        json.dumps(reorder_objects(json.loads(path.read_text()), order), indent=1, sort_keys=order is sorted)
    )
    loaded = HamburgHealthcareSafetyMamba.from_pretrained(folder).eval()
    assert list(loaded.config.tasks) == list(ALL_TASKS)
    assert list(loaded.config.vocab_sizes) == list(VOCAB_SIZES)
    batch = make_batch([7, 3, 12], seed=4)
    with torch.no_grad():
        before, after = model(batch), loaded(batch)
    for task in ALL_TASKS:
        torch.testing.assert_close(after.step_logits[task], before.step_logits[task], rtol=0, atol=0)


def test_object_form_of_ordered_fields_is_refused_unless_trusted(saved):
    """A config.json written before tasks and vocab_sizes became [name, value] pairs holds them as objects:
    refused by default (their order cannot be trusted), read in written order on request."""
    model, folder = saved
    path = folder / "config.json"
    blob = json.loads(path.read_text())
    for name in ("vocab_sizes", "tasks"):
        blob[name] = dict(blob[name])
    path.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match=r"config\.json.*vocab_sizes.*trust_key_order=True"):
        HamburgHealthcareSafetyMamba.from_pretrained(folder)
    assert HamburgMambaConfig.load(path, trust_key_order=True) == model.config


def test_pairs_are_checked(saved):
    _, folder = saved
    path = folder / "config.json"
    blob = json.loads(path.read_text())
    for bad in ({"code": 24}, [["code", 24], ["code", 5]], [["code"]]):
        blob["vocab_sizes"] = bad
        with pytest.raises(ValueError, match="vocab_sizes"):
            HamburgMambaConfig.from_json(json.dumps(blob))


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("d_model", "16", "an int >= 1"),
        ("d_model", 16.0, "an int >= 1"),
        ("n_layers", -1, "an int >= 1"),
        ("n_layers", True, "an int >= 1"),
        ("dropout", 1.0, "a finite number >= 0 and < 1"),
        ("norm_eps", 0, "a finite number > 0"),
        ("use_reference_scan", "yes", "true or false"),
        ("dt_rank", 0, "'auto' or a positive int"),
        ("cat_embed_dim", None, "an int >= 1"),
        ("num_numeric", -2, "an int >= 0"),
    ],
)
def test_bad_value_in_config_json_names_field_value_and_expectation(saved, field, value, expected):
    _, folder = saved
    path = folder / "config.json"
    blob = json.loads(path.read_text())
    blob[field] = value
    path.write_text(json.dumps(blob))
    with pytest.raises(ValueError) as exc:
        HamburgHealthcareSafetyMamba.from_pretrained(folder)
    message = str(exc.value)
    assert str(path) in message and f"HamburgMambaConfig.{field}" in message and expected in message
    assert repr(value) in message


@pytest.mark.parametrize(
    "change,named",
    [
        ({"vocab_sizes": [["code", 0]]}, "vocab_sizes"),
        ({"tasks": [["x", {"kind": "binary", "level": "event", "horizon_h": -1.0, "group": "crisis"}]]}, "horizon_h"),
        ({"tasks": [["x", {"kind": "binary", "level": "event", "group": "crisis"}]]}, "tasks['x']"),
        ({"target_stats": {"unit_workload": [0.0, 0.0]}}, "target_stats"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_max"),
    ],
)
def test_bad_structured_values_are_named(saved, change, named):
    _, folder = saved
    blob = json.loads((folder / "config.json").read_text())
    blob.update(change)
    with pytest.raises(ValueError) as exc:
        HamburgMambaConfig.from_json(json.dumps(blob))
    assert named in str(exc.value)


def test_missing_and_unknown_fields_are_refused(saved):
    _, folder = saved
    blob = json.loads((folder / "config.json").read_text())
    del blob["d_state"]
    with pytest.raises(ValueError, match=r"missing fields \['d_state'\]"):
        HamburgMambaConfig.from_json(json.dumps(blob))
    blob["d_state"], blob["d_staet"] = 16, 16
    with pytest.raises(ValueError, match=r"unknown fields \['d_staet'\]"):
        HamburgMambaConfig.from_json(json.dumps(blob))
    with pytest.raises(ValueError, match="not valid JSON"):
        HamburgMambaConfig.from_json("{")
