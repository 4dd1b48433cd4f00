"""Decision-curve net benefit and the threshold at a sensitivity on hand-computed cases (mutation testing found
them checked only loosely: docs/testing.md "Mutation testing")."""

from fractions import Fraction

import numpy as np
import pytest

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
