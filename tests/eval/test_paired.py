"""Paired comparisons (metrics.paired_difference) against a plain cluster bootstrap that writes the resampled
rows out and scores both models on each, and the clusters each task's interval is drawn by."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hamburg_mamba.eval import metrics as M

N_BOOT = 60


def _plain_paired(y, a, b, cluster, n_boot, seed, alpha=0.05):
    """bootstrap_binary's draw order: one integers(0, K, K) per replicate, index k naming the k-th smallest id."""
    ids = np.unique(cluster)
    rows_of = [np.flatnonzero(cluster == c) for c in ids]
    rng = np.random.default_rng(seed)
    diffs, own_a = [], []
    for _ in range(n_boot):
        take = np.concatenate([rows_of[k] for k in rng.integers(0, ids.size, ids.size)])
        if 0 < y[take].sum() < take.size:
            diffs.append(roc_auc_score(y[take], a[take]) - roc_auc_score(y[take], b[take]))
            own_a.append(roc_auc_score(y[take], a[take]))
    return np.quantile(diffs, [alpha / 2, 1 - alpha / 2]), np.quantile(own_a, [alpha / 2, 1 - alpha / 2])


@pytest.fixture(scope="module")
def two_models():
    rng = np.random.default_rng(3)
    n = 400
    cluster = rng.integers(0, 60, n)  # 60 patients with several rows each
    risk = rng.normal(size=60)[cluster]  # the patient's own level: rows of a patient are correlated
    y = (rng.random(n) < 1 / (1 + np.exp(-(risk - 1.5)))).astype(float)
    a = 1 / (1 + np.exp(-(risk + 0.3 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-(risk + 1.0 * rng.normal(size=n))))
    return y, a, b, cluster


def test_paired_difference_equals_a_plain_cluster_bootstrap(two_models):
    y, a, b, cluster = two_models
    got = M.paired_difference(y, a, b, cluster, N_BOOT, seed=0)
    assert got.value == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    (lo, hi), (lo_a, hi_a) = _plain_paired(y, a, b, cluster, N_BOOT, 0)
    assert got.low == pytest.approx(lo, abs=1e-12) and got.high == pytest.approx(hi, abs=1e-12)
    # the same resamples as the model's own interval (bootstrap_binary at the same seed)
    own = M.bootstrap_binary(y, a, cluster, N_BOOT, seed=0, metrics=("auroc",))["auroc"]
    assert own.low == pytest.approx(lo_a, abs=1e-12) and own.high == pytest.approx(hi_a, abs=1e-12)
    # rows as clusters would give another interval: the test can tell the two apart
    rows = M.paired_difference(y, a, b, None, N_BOOT, seed=0)
    assert abs(rows.low - lo) > 1e-6 or abs(rows.high - hi) > 1e-6


def test_paired_interval_is_narrower_than_the_unpaired_one(two_models):
    """Both models rank the same patients: pairing removes the shared patient-to-patient variation, so the
    interval of the difference is narrower than the one made of the two separate intervals."""
    y, a, b, cluster = two_models
    d = M.paired_difference(y, a, b, cluster, N_BOOT)
    ea = M.bootstrap_binary(y, a, cluster, N_BOOT, metrics=("auroc",))["auroc"]
    eb = M.bootstrap_binary(y, b, cluster, N_BOOT, metrics=("auroc",))["auroc"]
    assert d.high - d.low < (ea.high - ea.low) + (eb.high - eb.low)


def test_cluster_draws_need_one_cluster_per_row():
    with pytest.raises(ValueError, match="cluster"):
        list(M.cluster_draws(np.arange(3), 4, 2))
    with pytest.raises(ValueError, match="unknown"):
        M.bootstrap_binary([0, 1], [0.2, 0.8], metrics=("auroc", "accuracy"))


def test_each_task_is_resampled_by_its_labels_unit(tiny_spec, known_model, tmp_path):
    """Closure rows by hospital-day, staff rows by unit-shift, patient rows by subject: the interval in
    metrics.json equals a plain bootstrap over those clusters, written from the predictions file."""
    import json

    import pandas as pd

    from hamburg_mamba.eval.experiment import _row_clusters, run_comparison
    from hamburg_mamba.eval.predictions import prediction_rows

    run_comparison(tiny_spec, {"known": known_model}, tmp_path, baselines=("oracle",), n_boot=N_BOOT, timeline=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    pred = pd.read_parquet(tmp_path / "predictions.parquet")
    data = tiny_spec.connect()
    rows = prediction_rows(data, "held_out")
    clusters = _row_clusters(data, rows)
    # by hand: the hospital-day key of each row from the predictions file's own columns
    names = data.encoded.event_hospital_name[rows.flat]
    day = pd.to_datetime(pred["time"]).dt.strftime("%Y-%m-%d").to_numpy()
    by_hand = np.array([f"{'unknown' if n is None else n}|{d}" for n, d in zip(names, day, strict=True)])
    np.testing.assert_array_equal(clusters["hospital_day"], by_hand)
    for task, kind in (("closure_6h", "hospital_day"), ("ratio_violation_next_shift", "unit_shift")):
        r = metrics["tasks"][task]
        assert r["cluster"] == kind
        if "known" not in r["models"]:
            continue
        m = pred[f"{task}|mask"].to_numpy()
        y = pred[f"{task}|label"].to_numpy()[m].astype(float)
        p = pred[f"{task}|known"].to_numpy()[m]
        _, (lo, hi) = _plain_paired(y, p, p, clusters[kind][m], N_BOOT, 0)
        got = r["models"]["known"]["auroc"]
        assert got["low"] == pytest.approx(lo, abs=1e-12) and got["high"] == pytest.approx(hi, abs=1e-12)
        assert r["comparisons"]["oracle"]["auroc_difference"]["value"] == pytest.approx(0.0, abs=1e-7)
