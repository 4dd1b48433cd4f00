"""The status trend by hand: tests that kill mutants of data/system_state.py (docs/testing.md, "Mutation testing")."""

import math

import numpy as np
import pandas as pd

from hamburg_mamba.data.system_state import check_status_table, trailing_trend
from hamburg_mamba.data.validate import Accounting

T0 = pd.Timestamp("2024-03-01 00:00")


def test_trailing_trend_is_float64_value_minus_the_exponentially_weighted_mean():
    # Hospital B is listed first and its rows interleave with A's; A's second value is missing.
    feed = pd.DataFrame(
        {
            "hospital": ["B", "A", "B", "A"],
            "time": [T0, T0, T0 + pd.Timedelta(hours=2), T0 + pd.Timedelta(hours=1)],
            "x": [4.0, 1.0, 6.0, np.nan],
        }
    )
    table = check_status_table(feed, ["x"], Accounting())  # sorted: A t0, A t0+1h, B t0, B t0+2h
    got = trailing_trend(table, ["x"], time_constant_h=2.0)
    # B at t0+2h: weights exp(-2/2) and 1 on 4 and 6, so 6 - (4/e + 6) / (1/e + 1) = 2 / (e + 1)
    want = np.array([[0.0], [np.nan], [0.0], [2.0 / (math.e + 1.0)]])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)  # pandas ewm sums in a different order
