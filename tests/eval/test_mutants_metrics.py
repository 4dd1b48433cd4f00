"""Decision-curve net benefit and the threshold at a sensitivity on hand-computed cases (mutation testing found
them checked only loosely: docs/testing.md "Mutation testing")."""

from fractions import Fraction

import numpy as np
import pytest

from hamburg_mamba.eval import metrics as M
from hamburg_mamba.eval.metrics import net_benefit, threshold_at_sensitivity

Y = [1, 0, 1, 0, 0]
P = [0.9, 0.3, 0.3, 0.1, 0.6]


def test_net_benefit_by_hand():
    """Vickers and Elkin 2006: NB(t) = TP/n - FP/n * t / (1 - t), treating rows with p >= t; a row exactly at
    the threshold is treated. Prevalence 2/5."""
    got = net_benefit(Y, P, thresholds=[0.3, 0.6])
    assert set(got) == {"threshold", "model", "treat_all", "treat_none"}
    # t = 0.3: rows 0, 1, 2, 4 treated (1 and 2 exactly at t): TP 2, FP 2, odds 3/7
    # t = 0.6: rows 0, 4 treated (4 exactly at t): TP 1, FP 1, odds 3/2
    model = [Fraction(2, 5) - Fraction(2, 5) * Fraction(3, 7), Fraction(1, 5) - Fraction(1, 5) * Fraction(3, 2)]
    treat_all = [Fraction(2, 5) - Fraction(3, 5) * Fraction(3, 7), Fraction(2, 5) - Fraction(3, 5) * Fraction(3, 2)]
    np.testing.assert_allclose(got["model"], [float(v) for v in model], rtol=1e-12)
    np.testing.assert_allclose(got["treat_all"], [float(v) for v in treat_all], rtol=1e-12)
    np.testing.assert_array_equal(got["threshold"], [0.3, 0.6])
    assert got["treat_none"].shape == (2,) and not got["treat_none"].any()


def _plain_threshold(y, p, sensitivity):
    """Highest candidate threshold whose sensitivity (share of positives with p >= t) reaches the target."""
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi == 1]
    ok = [t for t in pos if sum(pi >= t for pi in pos) / len(pos) >= sensitivity]
    return max(ok)


@pytest.mark.parametrize("sensitivity", [0.1, 0.25, 0.5, 0.75, 0.8, 1.0])
def test_threshold_at_sensitivity_equals_a_plain_search(sensitivity):
    y = [1, 1, 1, 1, 0, 0]
    p = [0.8, 0.2, 0.6, 0.4, 0.9, 0.1]
    assert threshold_at_sensitivity(y, p, sensitivity) == _plain_threshold(y, p, sensitivity)


def test_threshold_at_sensitivity_with_one_and_with_no_positive():
    assert threshold_at_sensitivity([1, 0], [0.3, 0.7], 0.8) == 0.3
    assert np.isnan(threshold_at_sensitivity([0, 0], [0.3, 0.7], 0.8))


def test_float32_predictions_give_the_float64_metrics():
    rng = np.random.default_rng(5)
    p32 = rng.uniform(0.02, 0.98, 300).astype(np.float32)
    y = (rng.uniform(size=300) < p32).astype(float)
    assert M.binary_metrics(y, p32) == M.binary_metrics(y, p32.astype(np.float64))


def test_bootstrap_gives_n_prevalence_and_a_slope_asked_for_alone():
    rng = np.random.default_rng(6)
    p = rng.uniform(0.05, 0.95, 200)
    y = (rng.uniform(size=200) < p).astype(float)
    out = M.bootstrap_binary(y, p, n_boot=20, metrics=("calibration_slope",))
    assert set(out) == {"calibration_slope", "prevalence", "n"}
    assert out["n"].value == 200.0 and out["prevalence"].value == y.sum() / 200
    assert np.isfinite(out["calibration_slope"].value) and out["calibration_slope"].low < out["calibration_slope"].high


def test_regression_metrics_by_hand():
    # residuals 0, -1, 3; mean of y 7/3, total sum of squares 14/3
    got = M.regression_metrics([1.0, 2.0, 4.0], [1.0, 3.0, 1.0])
    assert got == pytest.approx({"mae": 4 / 3, "rmse": (10 / 3) ** 0.5, "r2": 1 - 10 / (14 / 3), "n": 3.0}, rel=1e-12)


def test_platt_on_one_class_keeps_the_identity_and_says_so():
    p = np.array([0.2, 0.7, 0.9])
    with pytest.warns(RuntimeWarning, match="hold one class; the identity is kept"):
        platt = M.PlattRecalibration().fit(np.ones(3), p)
    assert platt.one_class
    np.testing.assert_allclose(platt(p), p, rtol=1e-12)
