"""Metric inputs that gave a number with no meaning: each refused naming the argument.

A NaN regression prediction made MAE, RMSE and R2 all NaN; yhat of shape (n, 1) broadcast against y (n,)
into an (n, n) residual; a logit or a score passed as p gave a Brier score above 1 and a calibration fit on
clipped logits; a negative or NaN weight made AUROC NaN.
"""

import numpy as np
import pytest

from hamburg_mamba.eval import metrics as M

Y = np.array([0.0, 1.0, 0.0, 1.0])
P = np.array([0.1, 0.7, 0.4, 0.9])


def test_regression_metrics_by_hand():
    got = M.regression_metrics([1.0, 2.0, 4.0], [1.5, 2.0, 3.0])
    # residuals -0.5, 0, 1: MAE 0.5, RMSE sqrt(1.25 / 3), R2 1 - 1.25 / (sum of (y - 7/3)^2 = 42/9)
    assert got == pytest.approx({"mae": 0.5, "rmse": np.sqrt(1.25 / 3), "r2": 1 - 1.25 / (42 / 9), "n": 3.0})


@pytest.mark.parametrize("y, yhat, name", [([1.0, np.nan], [1.0, 2.0], "y"), ([1.0, 2.0], [np.inf, 2.0], "yhat")])
def test_regression_metrics_refuse_non_finite(y, yhat, name):
    with pytest.raises(ValueError, match=f"regression_metrics: {name} has 1 NaN or inf"):
        M.regression_metrics(y, yhat)


def test_regression_metrics_refuse_a_column_against_a_vector():
    with pytest.raises(ValueError, match=r"need one shape \(n,\), got \(3,\) and \(3, 1\)"):
        M.regression_metrics([1.0, 2.0, 4.0], [[1.0], [2.0], [4.0]])


@pytest.mark.parametrize("metric", [M.brier, M.ece, M.calibration_slope_intercept, M.binary_metrics])
def test_probability_metrics_refuse_scores(metric):
    with pytest.raises(ValueError, match=r"p must be probabilities in \[0, 1\]"):
        metric(Y, np.array([-2.0, 1.5, 0.0, 3.0]))


def test_bootstrap_refuses_scores_unless_only_rank_metrics():
    score = np.array([-2.0, 1.5, 0.0, 3.0])
    with pytest.raises(ValueError, match="p must be probabilities"):
        M.bootstrap_binary(Y, score, n_boot=10)
    ranked = M.bootstrap_binary(Y, score, n_boot=10, metrics=("auroc",))
    assert ranked["auroc"].value == 1.0  # both positives score above both negatives


@pytest.mark.parametrize("weight", [[1.0, -1.0, 1.0, 1.0], [1.0, np.nan, 1.0, 1.0], [1.0, np.inf, 1.0, 1.0]])
def test_weights_must_be_finite_and_non_negative(weight):
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        M.auroc(Y, P, weight)
