"""Replication (eval/replicate.py): the aggregation against hand-computed values, and `replicate --tiny` end to
end on two tiny cities with two training seeds (one backbone, about 45 s on the 2-core machine)."""

import json
import math

import pandas as pd
import pytest

from hamburg_mamba import cli
from hamburg_mamba.eval import replicate as R

# Three replicates of known AUROCs; catboost has none on `icu` in the third (one class in its held-out rows).
RECORDS = [
    {
        "generator_seed": 0,
        "training_seed": 0,
        "auroc": {"ae": {"mamba": 0.70, "catboost": 0.60, "news2": 0.65}, "icu": {"mamba": 0.80, "catboost": 0.85}},
    },
    {
        "generator_seed": 0,
        "training_seed": 1,
        "auroc": {"ae": {"mamba": 0.74, "catboost": 0.76, "news2": 0.65}, "icu": {"mamba": 0.70, "catboost": 0.75}},
    },
    {
        "generator_seed": 1,
        "training_seed": 0,
        "auroc": {"ae": {"mamba": 0.78, "catboost": 0.68, "news2": 0.71}, "icu": {"mamba": 0.90}},
    },
]


def test_spread_and_paired_differences_by_hand():
    s = R.summarise(RECORDS, primary="mamba")
    ae = s["ae"]["models"]["mamba"]
    # mean (0.70 + 0.74 + 0.78) / 3 = 0.74; deviations -0.04, 0, 0.04: SD sqrt(0.0032 / 2) = 0.04
    assert ae["n"] == 3 and ae["mean"] == pytest.approx(0.74) and ae["sd"] == pytest.approx(0.04)
    assert (ae["min"], ae["max"]) == (0.70, 0.78)
    d = s["ae"]["differences"]["catboost"]  # +0.10, -0.02, +0.10: mean 0.06, SD sqrt((0.0016*2 + 0.0064) / 2)
    assert d["per_replicate"] == pytest.approx([0.10, -0.02, 0.10])
    assert d["mean"] == pytest.approx(0.06) and d["sd"] == pytest.approx(math.sqrt(0.0048))
    assert d["positive"] == 2 and d["n"] == 3
    news2 = s["ae"]["differences"]["news2"]  # +0.05, +0.09, +0.07
    assert news2["mean"] == pytest.approx(0.07) and news2["positive"] == 3
    # icu: the third replicate has no catboost AUROC, so the pair has two replicates, the model spread too
    icu = s["icu"]["differences"]["catboost"]
    assert icu["n"] == 2 and icu["per_replicate"] == pytest.approx([-0.05, -0.05]) and icu["positive"] == 0
    assert s["icu"]["models"]["catboost"]["n"] == 2 and s["icu"]["models"]["mamba"]["n"] == 3
    assert "mamba" not in s["ae"]["differences"]


def test_one_value_has_no_sd_and_none_has_no_mean():
    assert R.spread([0.5]) == {"n": 1, "mean": 0.5, "sd": None, "min": 0.5, "max": 0.5}
    assert R.spread([])["mean"] is None


def test_replicate_aurocs_reads_binary_tasks_with_a_value():
    metrics = {
        "tasks": {
            "ae": {"kind": "binary", "models": {"mamba": {"auroc": {"value": 0.7}}, "gru": {"auroc": {"value": None}}}},
            "load": {"kind": "regression", "models": {"mamba": {"mae": 1.0}}},
            "none": {"kind": "binary", "models": {}},
        }
    }
    assert R.replicate_aurocs(metrics) == {"ae": {"mamba": 0.7}}


def test_config_names_the_bad_field():
    recipe = cli.replicate_recipe(tiny=True)
    with pytest.raises(ValueError, match="generator_seeds"):
        R.ReplicateConfig(out="x", recipe=recipe, generator_seeds=(0, 0))
    with pytest.raises(ValueError, match="backbones"):
        R.ReplicateConfig(out="x", recipe=recipe, backbones=("lstm",))
    with pytest.raises(ValueError, match="primary"):
        R.ReplicateConfig(out="x", recipe=recipe, backbones=("gru",), primary="mamba")


def test_cli_refuses_repeated_seeds(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["replicate", "--tiny", "--out", str(tmp_path), "--training-seeds", "1", "1"])
    assert e.value.code == 2 and "--training-seeds: expected distinct" in capsys.readouterr().err


def test_a_folder_of_another_city_is_refused(tmp_path):
    (tmp_path / R.CITY_FILE).write_text(json.dumps({"tiny": True, "seed": 3}))
    with pytest.raises(ValueError, match="out: .* holds the city"):
        R.city(tmp_path, seed=4, tiny=True)


def test_replicate_tiny_two_cities_two_seeds(tmp_path):
    config = R.ReplicateConfig(
        out=tmp_path,
        recipe=cli.replicate_recipe(tiny=True),
        generator_seeds=(0, 1),
        training_seeds=(0, 1),
        backbones=("mamba",),
        tiny=True,
        jobs=1,
    )
    result = R.run_replicates(config, log=lambda m: None)
    records = result["replicates"]
    assert [(r["generator_seed"], r["training_seed"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # each record is its own evaluation's metrics, read independently here
    for r in records:
        metrics = json.loads(
            (
                tmp_path / f"city-{r['generator_seed']}" / f"seed-{r['training_seed']}" / "eval" / "metrics.json"
            ).read_text()
        )
        assert r["auroc"]["closure_6h"]["mamba"] == metrics["tasks"]["closure_6h"]["models"]["mamba"]["auroc"]["value"]
        assert metrics["catboost_settings"]["seed"] == r["training_seed"]
    # the two generator seeds made two cities; the two training seeds two different models
    events = [pd.read_parquet(tmp_path / f"city-{g}" / "data" / "data") for g in (0, 1)]
    assert len(events[0]) != len(events[1]) or not events[0].equals(events[1])
    values = [r["auroc"]["closure_6h"]["mamba"] for r in records]
    assert values[0] != values[1]
    s = result["summary"]["closure_6h"]
    mean = sum(values) / 4
    assert s["models"]["mamba"]["mean"] == pytest.approx(mean)
    assert s["models"]["mamba"]["sd"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 3))
    diffs = [r["auroc"]["closure_6h"]["mamba"] - r["auroc"]["closure_6h"]["catboost"] for r in records]
    assert s["differences"]["catboost"]["per_replicate"] == pytest.approx(diffs)
    assert s["differences"]["catboost"]["positive"] == sum(d > 0 for d in diffs)
    readme = (tmp_path / "README.md").read_text()
    assert "4 replicates" in readme and "| closure_6h |" in readme
    # every binary task of every replicate is either checked for saturation or listed with its prevalence
    binary = {t for t, r in metrics["tasks"].items() if r["kind"] == "binary"}
    for r in records:
        assert set(r["saturation"]["checked"]) | set(r["saturation"]["not_checked"]) == binary
        assert all(e["prevalence"] < 0.05 and "mamba" in e["models"] for e in r["saturation"]["checked"].values())
    assert "## Saturation" in readme and result["saturation"]["criterion_reads"] == "raw"
    assert json.loads((tmp_path / "replicates.json").read_text())["summary"] == json.loads(
        json.dumps(result["summary"])
    )

    # a second call keeps what is done: no run retrained, no evaluation repeated
    done = sorted(tmp_path.glob("city-*/seed-*/*/**/*.safetensors")) + sorted(
        tmp_path.glob("city-*/seed-*/eval/metrics.json")
    )
    stamps = {p: p.stat().st_mtime_ns for p in done}
    assert R.run_replicates(config, log=lambda m: None)["replicates"] == records
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
