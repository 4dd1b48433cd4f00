"""NEWS2 inputs as they come from a table: missing values as None in an object column, one parameter of the
wrong length (mutation testing found both unchecked: docs/testing.md "Mutation testing")."""

import numpy as np
import pytest

from hamburg_mamba.eval.news2 import PARAMETERS, consciousness_points, news2_score, oxygen_points


def test_flags_with_none_for_missing_score_as_not_measured():
    """A None (pandas object column) is a missing measurement: 0 points, like NaN (RCP 2017 scores only what
    was measured): oxygen 1 -> 2 points, ACVPU anything but alert -> 3."""
    assert oxygen_points(np.array([1, None, 0], dtype=object)).tolist() == [2, 0, 0]
    assert consciousness_points(np.array([0, None, 2], dtype=object)).tolist() == [0, 0, 3]


def test_missing_counts_read_none_as_missing():
    vitals = {p: np.array([np.nan, np.nan]) for p in PARAMETERS}
    vitals["on_oxygen"] = np.array([1, None], dtype=object)
    total, missing = news2_score(vitals)
    assert total.tolist() == [2, 0] and missing["on_oxygen"] == 1 and missing["pulse"] == 2


def test_parameters_of_different_lengths_are_refused_not_broadcast():
    vitals = {p: np.full(3, np.nan) for p in PARAMETERS}
    vitals["pulse"] = np.array([140.0])  # would broadcast to three rows of 3 points
    with pytest.raises(ValueError, match="same shape"):
        news2_score(vitals)
