"""Robustness table: shifted rows, metrics per part against hand-computed values, when a warning fires.

Hand-built rows: two groups of 200 rows each, true rates 0.2 and 0.6, the positives spread evenly (every run of
ten rows of a group holds its share), so each equal-mass ECE bin (40 rows) holds exactly its group's rate.
"""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from hamburg_mamba.eval import robustness as R
from hamburg_mamba.eval.experiment import _clean

GROUP = 200
RATES = (0.2, 0.6)


def _labels() -> np.ndarray:
    """(400,) group 0 then group 1, each ten-row run holding rate x 10 positives."""
    runs = [np.repeat([1.0, 0.0], [round(10 * r), 10 - round(10 * r)]) for r in RATES]
    return np.concatenate([np.tile(run, GROUP // 10) for run in runs])


def _predictions(low: float, high: float) -> np.ndarray:
    return np.repeat([low, high], GROUP)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _scenario(shifted_p):
    """400 shifted rows with predictions `shifted_p`, then 400 rows of the rest predicted 0.25 / 0.55."""
    y = np.concatenate([_labels(), _labels()])
    p = np.concatenate([shifted_p, _predictions(0.25, 0.55)])
    shifted = np.repeat([True, False], 2 * GROUP)
    cluster = np.arange(y.size)
    return y, p, shifted, cluster


def test_metrics_of_each_part_equal_hand_values_and_an_overconfident_shift_breaks():
    y, p, shifted, cluster = _scenario(_predictions(0.02, 0.98))  # over-confident on the shifted rows
    r = R.compare_parts(y, p, shifted, cluster, n_boot=200)
    s, rest = r["shifted"], r["rest"]
    assert (s["n"], rest["n"], s["positives"], s["clusters"]) == (400, 400, 160, 400)
    # AUROC of two tied groups: (pos in the high group x neg in the low) + half the within-group pairs
    pos, neg = (40, 120), (160, 80)
    want_auc = (pos[1] * neg[0] + 0.5 * (pos[0] * neg[0] + pos[1] * neg[1])) / (sum(pos) * sum(neg))
    assert s["auroc"]["value"] == pytest.approx(want_auc) and rest["auroc"]["value"] == pytest.approx(want_auc)
    # ECE: every bin holds one group, |rate - p| per group, equal mass
    assert s["ece"]["value"] == pytest.approx((abs(0.2 - 0.02) + abs(0.6 - 0.98)) / 2)
    assert rest["ece"]["value"] == pytest.approx((abs(0.2 - 0.25) + abs(0.6 - 0.55)) / 2)
    # two distinct predictions: the logistic fit is saturated, so its slope maps the logits onto the true rates
    want_slope = (_logit(0.6) - _logit(0.2)) / (_logit(0.98) - _logit(0.02))
    assert s["calibration_slope"]["value"] == pytest.approx(want_slope, rel=1e-6)
    assert s["calibration_slope"]["high"] < 1.0
    assert rest["calibration_slope"]["value"] == pytest.approx(
        (_logit(0.6) - _logit(0.2)) / (_logit(0.55) - _logit(0.25)), rel=1e-6
    )
    assert r["breaks"] is True
    lines = R.warning_lines({"tasks": {"icu_transfer": {"prevalence": 0.4, "models": {"hybrid": r}}}})
    assert len(lines) == 1 and lines[0].startswith("WARNING hybrid on icu_transfer: calibration breaks")


def test_an_overconfident_shift_on_a_few_clusters_gets_no_verdict():
    """The breaking scenario above, its shifted rows in three clusters (three hospital-days): the bootstrap
    interval of three resampled clusters is no evidence, so no warning."""
    y, p, shifted, cluster = _scenario(_predictions(0.02, 0.98))
    cluster = np.where(shifted, np.arange(y.size) % 3, 1000 + np.arange(y.size))
    r = R.compare_parts(y, p, shifted, cluster, n_boot=200)
    assert r["shifted"]["clusters"] == 3 and r["breaks"] is False


def test_a_shift_that_keeps_the_calibration_does_not_warn():
    y, p, shifted, cluster = _scenario(_predictions(0.25, 0.55))  # the same predictions as the rest
    r = R.compare_parts(y, p, shifted, cluster, n_boot=200)
    assert r["shifted"]["ece"]["value"] == pytest.approx(r["rest"]["ece"]["value"])
    assert r["breaks"] is False
    assert R.warning_lines({"tasks": {"t": {"prevalence": 0.4, "models": {"m": r}}}}) == []


@pytest.mark.parametrize(
    "slope, intercept, ece_shifted, expected",
    [
        ((0.5, 0.9), (-0.2, 0.2), 0.030, True),  # slope interval excludes 1, ECE tripled
        ((0.5, 0.9), (-0.2, 0.2), 0.015, False),  # slope interval excludes 1, ECE x 1.5 only
        ((0.8, 1.2), (-0.2, 0.2), 0.030, False),  # ECE tripled, both intervals hold the ideal
        ((1.1, 1.6), (-0.2, 0.2), 0.0201, True),  # too steep counts as well; just over twice
        ((0.8, 1.2), (0.1, 0.9), 0.030, True),  # level off (under-prediction), slope fine, ECE tripled
        ((0.8, 1.2), (-0.9, -0.1), 0.015, False),  # level off, ECE x 1.5 only
        ((None, None), (None, None), 0.030, False),  # intervals undefined (every replicate fit failed)
    ],
)
def test_breaks_needs_an_interval_off_its_ideal_and_the_ece_ratio(slope, intercept, ece_shifted, expected):
    shifted = {
        "ece": {"value": ece_shifted},
        "calibration_slope": {"value": 1.0, "low": slope[0], "high": slope[1]},
        "calibration_intercept": {"value": 0.0, "low": intercept[0], "high": intercept[1]},
        "clusters": R.MIN_CLUSTERS,
    }
    rest = {"ece": {"value": 0.010}, "calibration_slope": {"value": 1.0, "low": None, "high": None}}
    assert R.calibration_breaks(shifted, rest) is expected
    assert R.calibration_breaks({"n": 3}, rest) is False  # one class only: no metrics, no verdict
    few = {**shifted, "clusters": R.MIN_CLUSTERS - 1}
    assert R.calibration_breaks(few, rest) is False  # too few clusters for a verdict


def test_saturation_share_and_its_calibrated_bound():
    y = np.zeros(100)
    y[:2] = 1  # prevalence 0.02: a calibrated model has at most 0.02 / 0.9 of its rows above 0.9
    p = np.full(100, 0.01)
    p[[0, 1, 50, 60, 70]] = 0.95  # 5 % above 0.9
    shifted = np.zeros(100, dtype=bool)
    shifted[50:75] = True
    sat = R.saturation(y, p, shifted)
    assert sat == pytest.approx({"all": 0.05, "shifted": 3 / 25, "rest": 2 / 75, "calibrated_max": 0.02 / 0.9})
    entry = {"prevalence": 0.02, "models": {"hybrid": {"breaks": False, "saturation": sat}}}
    assert len(R.warning_lines({"tasks": {"icu_transfer": entry}})) == 1
    p[[50, 60, 70]] = 0.01  # 2 % above 0.9: within the bound
    entry["models"]["hybrid"]["saturation"] = R.saturation(y, p, shifted)
    assert R.warning_lines({"tasks": {"icu_transfer": entry}}) == []


def _fake_data():
    """Four events; numeric = [value, age, status a, status b] with ranks as the connector writes them."""
    numeric = np.array(
        [
            [0.3, 0.1, 0.5, 1.0],  # in range (1.0 is the training maximum)
            [0.0, 0.0, 1.2, 0.3],  # status a beyond the maximum
            [0.0, 0.0, -0.1, 0.4],  # below the minimum, but missing: not shifted
            [9.0, -9.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )  # value and age do not count
    missing = np.zeros_like(numeric, dtype=bool)
    missing[2, 2] = True
    return SimpleNamespace(encoded=SimpleNamespace(numeric=numeric, numeric_missing=missing))


def test_shifted_rows_are_status_ranks_outside_the_unit_interval():
    assert R.shifted_rows(_fake_data(), np.array([0, 1, 2, 3, 1])).tolist() == [False, True, False, False, True]


def test_table_from_rows_models_and_tasks_and_the_report_section():
    data = _fake_data()
    n = 400
    flat = np.tile([0, 1], n // 2)  # alternate in-range and shifted events
    y = np.zeros(n)
    y[::50] = 1  # prevalence 0.02
    rows = SimpleNamespace(
        flat=flat,
        labels={"rare": y, "common": (np.arange(n) % 3 == 0).astype(float)},
        masks={"rare": np.ones(n, bool), "common": np.ones(n, bool)},
    )
    prows = SimpleNamespace(flat=np.array([1, 0]), labels={}, masks={})
    rare_p = np.where(flat == 1, 0.95, 0.01)  # saturated on every shifted row
    preds = {"m": {"held_out": {"rare": rare_p, "common": np.full(n, 0.3)}}}
    tasks = {
        "rare": SimpleNamespace(kind="binary", level="event"),
        "common": SimpleNamespace(kind="binary", level="event"),
        "size": SimpleNamespace(kind="regression", level="event"),
    }
    clusters = {"rare": np.arange(n), "common": np.arange(n)}
    rob = R.shift_robustness(data, rows, prows, preds, tasks, clusters, n_boot=20)
    assert rob["shifted_rows"]["event"] == {"n": n // 2, "share": 0.5}
    assert set(rob["tasks"]) == {"rare", "common"}
    assert "saturation" not in rob["tasks"]["common"]["models"]["m"]  # prevalence 1/3: not a rare task
    sat = rob["tasks"]["rare"]["models"]["m"]["saturation"]
    assert sat == pytest.approx({"all": 0.5, "shifted": 1.0, "rest": 0.0, "calibrated_max": 0.02 / 0.9})
    metrics = json.loads(json.dumps(_clean({"robustness": rob})))  # as the report reads it back
    section = "\n".join(R.report_section(metrics))
    assert "| rare | m | 200 (200 clusters) / 200 |" in section
    assert "WARNING m on rare: 50.0 % of held-out predictions above 0.9" in section
    assert R.report_section({}) == []


def test_stress_city_shifts_more_rows_and_every_model_is_tabled(tiny_data, tiny_spec, tmp_path):
    """A tiny run on the tiny city and on the same city with a twice as severe, wider flu wave (whose peak lies
    in the held-out days): the stronger crisis puts more held-out rows beyond the training range."""
    from hamburg_mamba.data.splits import tiny_synthetic_config
    from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

    config = build_model_config(tiny_data, backbone="gru", preset="tiny")
    tc = TrainConfig(epochs=1, max_steps=4, batch_size=16, warmup_steps=1, progress=False, num_threads=1)
    Trainer(build_model(config, seed=0), tiny_data, tc, tmp_path / "run", data_spec=tiny_spec.as_dict()).fit()
    runs = {"gru": tmp_path / "run"}
    same = R.stress_test(runs, tmp_path / "same", base=tiny_synthetic_config(), changes={}, n_boot=10)
    stress = R.stress_test(
        runs,
        tmp_path / "stress",
        base=tiny_synthetic_config(),
        changes={"flu_peak_share": 0.3, "flu_width_days": 10.0},
        n_boot=10,
    )
    assert stress["changes"] == {"flu_peak_share": 0.3, "flu_width_days": 10.0}
    assert stress["shifted_rows"]["event"]["share"] > same["shifted_rows"]["event"]["share"]
    for result in (same, stress):
        assert all(set(e["models"]) == {"gru", "oracle"} for e in result["tasks"].values())
    section = "\n".join(R.report_section({"stress": stress}, title="Stress city", key="stress"))
    assert section.startswith("## Stress city") and "'flu_peak_share': 0.3" in section
    with pytest.raises(ValueError, match="runs"):
        R.stress_test({}, tmp_path / "none")
