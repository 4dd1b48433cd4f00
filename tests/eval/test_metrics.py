"""Metrics against scikit-learn and hand-computed small cases."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from hamburg_mamba.eval import metrics as M


@pytest.fixture
def sample():
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(x * 1.3 - 2)))
    y = (rng.random(n) < p).astype(float)
    p_rounded = np.round(p, 2)  # with ties
    return y, p, p_rounded


def test_auroc_auprc_brier_match_sklearn(sample):
    y, p, pr = sample
    for score in (p, pr):
        assert M.auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert M.average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_weighted_metrics_match_sklearn_sample_weight(sample):
    y, _, pr = sample
    w = np.random.default_rng(1).integers(0, 4, y.size).astype(float)
    assert M.auroc(y, pr, w) == pytest.approx(roc_auc_score(y, pr, sample_weight=w), abs=1e-12)
    assert M.average_precision(y, pr, w) == pytest.approx(average_precision_score(y, pr, sample_weight=w), abs=1e-12)
    # integer weights = repeating rows; ECE too (its bins hold equal weight, a bin edge may split a row). Binning
    # by rows instead of weight was 0.0025 off this ECE of 0.035: a 1 % error is 3.5e-4, far above 1e-12.
    rep = np.repeat(np.arange(y.size), w.astype(int))
    assert M.ece(y[rep], pr[rep]) == pytest.approx(M.ece(y, pr, w), abs=1e-12)
    _, p, _ = sample
    assert M.ece(y[rep], p[rep]) == pytest.approx(M.ece(y, p, w), abs=1e-12)
    assert M.brier(y, pr, w) == pytest.approx(brier_score_loss(y[rep], pr[rep]), abs=1e-12)


def test_auroc_hand_case():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 half) (0.4>0.1) = 3.5 / 4
    assert M.auroc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert np.isnan(M.auroc([1, 1], [0.2, 0.3]))


def test_ece_hand_case():
    # 4 rows, 2 equal-mass bins: low bin p (0.1, 0.3) y (0, 1): |0.5 - 0.2| = 0.3; high bin p (0.6, 0.8) y (1, 1):
    # |1 - 0.7| = 0.3; ECE = 0.5 * 0.3 + 0.5 * 0.3 = 0.3
    assert M.ece([0, 1, 1, 1], [0.1, 0.3, 0.6, 0.8], bins=2) == pytest.approx(0.3, abs=1e-15)
    # 5 rows in 2 bins: edges at round(2.5) = 2 (numpy rounds half to even), bins {0.1, 0.2} and {0.4, 0.7, 0.9}
    # y (0, 0 | 1, 0, 1): |0 - 0.3| + |2 - 2.0| = 0.3, over 5 rows = 0.06
    assert M.ece([0, 0, 1, 0, 1], [0.7, 0.1, 0.9, 0.2, 0.4], bins=2) == pytest.approx(0.06, abs=1e-15)


def test_weighted_ece_splits_a_row_across_a_bin_edge():
    # rows sorted p (0.2, 0.5, 0.9) weights (1, 2, 1): total mass 4, two bins of mass 2. Row 0.5 straddles the
    # edge: one unit in each bin. Bin 1: 0.2 (y 0) + one unit of 0.5 (y 1): |1 - 0.7| = 0.3; bin 2: one unit of
    # 0.5 (y 1) + 0.9 (y 1): |2 - 1.4| = 0.6; ECE = (0.3 + 0.6) / 4 = 0.225
    got = M.ece([1, 0, 1], [0.5, 0.2, 0.9], weight=[2, 1, 1], bins=2)
    assert got == pytest.approx(0.225, abs=1e-15)
    assert got == pytest.approx(M.ece([0, 1, 1, 1], [0.2, 0.5, 0.5, 0.9], bins=2), abs=1e-15)
    # zero weights are absent rows
    assert M.ece([1, 0, 1, 0], [0.5, 0.2, 0.9, 0.3], weight=[2, 1, 1, 0], bins=2) == pytest.approx(0.225, abs=1e-15)


def test_calibration_slope_matches_unpenalised_logistic_regression(sample):
    y, p, _ = sample
    p_over = 1 / (1 + np.exp(-(2.0 * M.logit(p))))  # overconfident: slope should be about 0.5
    slope, intercept = M.calibration_slope_intercept(y, p_over)
    lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(M.logit(p_over)[:, None], y)
    assert slope == pytest.approx(lr.coef_[0, 0], rel=1e-5)
    assert 0.35 < slope < 0.65
    # calibration-in-the-large: the root of the offset model's score equation, found by bisection (scipy)
    from scipy.optimize import brentq

    lp = M.logit(p_over)
    want = brentq(lambda a: np.sum(y - 1 / (1 + np.exp(-(a + lp)))), -10, 10, xtol=1e-14)
    assert intercept == pytest.approx(want, abs=1e-9)
    # calibration-in-the-large of a well calibrated model is near 0; shifting the logits by -1 gives about +1
    rng = np.random.default_rng(0)
    p_big = 1 / (1 + np.exp(-(rng.normal(size=40000) * 1.3 - 2)))
    y_big = (rng.random(p_big.size) < p_big).astype(float)
    s0, i0 = M.calibration_slope_intercept(y_big, p_big)
    _, i1 = M.calibration_slope_intercept(y_big, 1 / (1 + np.exp(-(M.logit(p_big) - 1))))
    assert abs(i0) < 0.05 and abs(s0 - 1) < 0.05 and i1 == pytest.approx(i0 + 1, abs=0.05)


def test_net_benefit_hand_case():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.05])
    nb = M.net_benefit(y, p, thresholds=[0.2, 0.5])
    # t=0.2: treat 0.9, 0.3, 0.6 -> TP 2, FP 1; NB = 2/5 - 1/5 * 0.25 = 0.35
    # t=0.5: treat 0.9, 0.6 -> TP 1, FP 1; NB = 1/5 - 1/5 * 1 = 0
    np.testing.assert_allclose(nb["model"], [0.35, 0.0])
    np.testing.assert_allclose(nb["treat_all"], [0.4 - 0.6 * 0.25, 0.4 - 0.6])


def test_threshold_at_sensitivity():
    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.7, 0.5, 0.2, 0.6, 0.1])
    t = M.threshold_at_sensitivity(y, p, 0.75)
    assert t == 0.5 and (p[y == 1] >= t).mean() >= 0.75


def test_bootstrap_interval_covers_and_clusters(sample):
    y, p, _ = sample
    est = M.bootstrap_binary(y, p, n_boot=60, seed=0)
    a = est["auroc"]
    assert a.low < a.value < a.high and a.high - a.low < 0.1
    # duplicating every row under the same cluster id must not narrow the interval (rows are not independent)
    yy, pp = np.r_[y, y], np.r_[p, p]
    cl = np.r_[np.arange(y.size), np.arange(y.size)]
    est_c = M.bootstrap_binary(yy, pp, cluster=cl, n_boot=300, seed=0)
    est_i = M.bootstrap_binary(yy, pp, n_boot=300, seed=0)
    width = lambda e: e["auroc"].high - e["auroc"].low
    assert width(est_c) > 1.2 * width(est_i)


def test_platt_recalibration_repairs_miscalibration(sample):
    y, p, _ = sample
    bad = 1 / (1 + np.exp(-(0.5 * M.logit(p) + 1.0)))
    assert M.ece(y, bad) > 0.05
    recal = M.PlattRecalibration().fit(y, bad)
    fixed = recal(bad)
    assert M.ece(y, fixed) < 0.03
    # the map is the unpenalised logistic regression of y on logit p; bad = sigmoid(0.5 logit p + 1) is undone
    # by about slope 2, intercept -2
    lr = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-12, max_iter=1000).fit(M.logit(bad)[:, None], y)
    assert recal.slope == pytest.approx(lr.coef_[0, 0], rel=1e-7)
    assert recal.intercept == pytest.approx(lr.intercept_[0], rel=1e-7)
    np.testing.assert_allclose(fixed, 1 / (1 + np.exp(-(lr.intercept_[0] + lr.coef_[0, 0] * M.logit(bad)))), rtol=1e-7)


def test_bad_input_named():
    with pytest.raises(ValueError, match="0/1"):
        M.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="one shape"):
        M.brier([0, 1], [0.1])


def test_bootstrap_replicate_equals_weighted_metrics(sample):
    y, _, pr = sample
    w = np.random.default_rng(5).integers(0, 3, y.size).astype(float)
    fast = M._SortedSample(y, pr)
    got = fast.metrics(w[fast.order])
    want = M.binary_metrics(y, pr, w)
    for k in M.BINARY_METRICS:
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), k


def test_logistic_fit_of_separated_classes_is_undefined_not_a_number_picked_by_the_iteration_cap():
    # x separates y completely: the likelihood rises without bound as the slope grows, so no maximum exists
    x = np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert np.isnan(M.fit_logistic(x, y)).all()
    # overlapping classes have a maximum: the score equations hold there
    y2 = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    a, b = M.fit_logistic(x, y2)
    mu = 1 / (1 + np.exp(-(a + b * x)))
    np.testing.assert_allclose([np.sum(y2 - mu), np.sum(x * (y2 - mu))], 0.0, atol=1e-9)


def test_platt_keeps_the_identity_when_the_tuning_rows_are_separated():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    with pytest.warns(RuntimeWarning, match="separates the classes"):
        recal = M.PlattRecalibration().fit(y, p)
    assert recal.separated
    np.testing.assert_allclose(recal(p), p, rtol=1e-12)
