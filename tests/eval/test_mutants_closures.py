"""The hospital risk series at the edges of the hourly grid, against a plain loop (mutation testing found these
edges untested: docs/testing.md "Mutation testing").

A pathway is present at hour h when its first row is at or before h and its last row at or after h; it then
contributes its latest row at or before h; a hospital's value is the mean over present pathways, carried
forward over hours with none, 0 before the first.
"""

import math

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.eval import closures as C

H0 = pd.Timestamp("2023-11-01 00:00")
HOURS = 6
# (hospital, pathway, hours since H0, risk). Pathway 10 ends before the grid and comes first in pathway order;
# 12 ends exactly on hour 0 with a row exactly on it; 13 covers one hour only; 14 runs past the grid's end.
ROWS = [
    (2, 10, -3.5, 0.9),
    (2, 10, -1.2, 0.8),
    (2, 12, -0.5, 0.7),
    (2, 12, 0.0, 0.3),
    (2, 13, 1.5, 0.2),
    (2, 13, 2.5, 0.8),
    (2, 14, 3.2, 0.6),
    (2, 14, 4.0, 0.1),
    (2, 14, 5.0, 0.35),
    (2, 14, 8.0, 0.4),
    (3, 20, 0.5, 0.5),
    (3, 20, 4.0, 0.25),
]


def _plain_series(rows, hours):
    out = {}
    for hospital in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == hospital]
        values, last = [], 0.0
        for h in range(hours):
            latest = []
            for pathway in sorted({r[1] for r in mine}):
                times = [(t, risk) for _, p, t, risk in mine if p == pathway]
                if min(t for t, _ in times) <= h <= max(t for t, _ in times):
                    latest.append(max((t, risk) for t, risk in times if t <= h)[1])
            if latest:
                last = sum(latest) / len(latest)
            values.append(last)  # carried forward (0 before the first present pathway)
        out[hospital] = values
    return out


@pytest.mark.parametrize("unit", ["us", "ns", "s"])
def test_risk_series_edges_equal_a_plain_loop(unit):
    """The grid may come in any datetime unit (pandas makes ns, s or us indexes): the hours are the same."""
    hospital, pathway, hours, risk = (np.array(c) for c in zip(*ROWS, strict=True))
    time_us = (H0.to_datetime64().astype("datetime64[us]").astype(np.int64) + hours * 3.6e9).astype(np.int64)
    grid = pd.date_range(H0, periods=HOURS, freq="h").as_unit(unit)
    got = C.hospital_risk_series(time_us, hospital, pathway, risk, grid)
    want = _plain_series(ROWS, HOURS)
    assert sorted(got.columns) == sorted(want)
    for h, values in want.items():
        np.testing.assert_allclose(got[h].to_numpy(), values, rtol=0, atol=1e-15)
    # by hand for hospital 2: hour 0 pathway 12 (0.3, its row on the hour); 1 none (carried); 2 pathway 13 (0.2);
    # 3 none (14 starts at 3.2; carried); 4 and 5 pathway 14 (its rows at 4.0 and 5.0, the grid's last hour)
    assert got[2].tolist() == [0.3, 0.3, 0.2, 0.2, 0.1, 0.35]
    assert math.isclose(got[3].iloc[0], 0.0) and got[3].iloc[1] == 0.5


def test_in_period_holds_the_decision_hour_and_the_whole_window_by_hand():
    lo, hi, k = pd.Timestamp("2024-03-01 00:00"), pd.Timestamp("2024-03-02 00:00"), 6
    hours = [-1, 0, 1, 17, 18, 19]  # hours after lo; 18 + 6 ends exactly at hi
    table = pd.DataFrame({"time": [lo + pd.Timedelta(hours=h) for h in hours]})
    assert C.in_period(table, lo, hi, k).tolist() == [False, True, True, True, True, False]


def test_score_rows_reads_the_hour_and_leaves_unknown_hours_and_hospitals_nan():
    t0 = pd.Timestamp("2024-03-01 00:00")
    series = pd.DataFrame(
        {"A": [0.1, 0.2, 0.3], "B": [0.7, 0.8, 0.9]},
        index=pd.DatetimeIndex([t0 + pd.Timedelta(hours=h) for h in range(3)]),
    )
    table = pd.DataFrame(
        {
            "hospital": ["B", "A", "A", "C", "B"],
            "time": [t0 + pd.Timedelta(hours=h) for h in (2, 0, 5, 1, 1)],  # A at hour 5: not in the series
        }
    )
    np.testing.assert_array_equal(C.score_rows(table, series), [0.9, 0.1, np.nan, np.nan, 0.8])


def _hourly_table(hours, starts):
    """Open hospital-hours of one hospital (none closed), closure starts at the given hour indexes."""
    hourly = pd.DataFrame(
        {
            "hospital": "A",
            "time": pd.date_range("2023-11-01 00:00", periods=hours, freq="h"),
            "closure_start": np.isin(np.arange(hours), starts),
            "closed_at_hour_start": False,
            "closure_hazard": np.float32(0.01),
        }
    )
    return C.hospital_hours(hourly, horizons=(6,))


def test_warning_summary_every_field_by_hand():
    # the first day's hours are by design (no closure can be seen starting in them), so the alarms come later
    table = _hourly_table(72, [40, 71])
    risk = np.zeros(72)
    risk[27] = 0.4  # exactly at the threshold: on
    risk[34:42] = 0.5  # the closure at 40 is warned 6 h ahead, exactly
    risk[43:45] = 0.5  # fires at 43 with no start in 43..66: false
    on = risk >= 0.4
    scored = table["labelled_6h"].to_numpy() & ~table["by_design_6h"].to_numpy()
    design = table["by_design_6h"].to_numpy() & table["labelled_6h"].to_numpy()
    y = table["y_6h"].to_numpy()
    rows = [i for i in range(72) if scored[i]]
    alarmed = [i for i in rows if on[i]]
    want = {
        "threshold": 0.4,
        "horizon_h": 6,
        "closures": 2,
        "warned_share": 0.5,
        "warned_6h_share": 0.5,
        "median_lead_h": 3.0,  # leads 6 and (missed) 0
        "median_lead_warned_h": 6.0,
        "max_lead_h": 6.0,
        "alarm_share": len(alarmed) / len(rows),
        "alarm_precision": sum(y[i] for i in alarmed) / len(alarmed),
        "prevalence": sum(y[i] for i in rows) / len(rows),
        "scored_hours": len(rows),
        "by_design_hours": int(design.sum()),
        "alarm_share_by_design": on[design].mean() if design.any() else np.nan,
        "firings": 3,  # at 27, 34 and 43
        "false_alarms": 1,
        "false_alarms_per_week": 1 / (72 / 168),
        "hospital_weeks": 72 / 168,
    }
    got = C.warning_summary(table, risk, 0.4)
    assert got.keys() == want.keys()
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, err_msg=k)
    assert 0 < len(alarmed) < len(rows) and sum(y[i] for i in alarmed) > 0


def test_warning_summary_without_scored_rows_closures_or_warnings_is_nan():
    table = _hourly_table(30, []).assign(labelled_6h=False)
    got = C.warning_summary(table, np.zeros(30), 0.4)
    assert got["closures"] == 0 and got["scored_hours"] == 0 and got["firings"] == 0
    for k in ("warned_share", "warned_6h_share", "median_lead_h", "median_lead_warned_h", "max_lead_h"):
        assert math.isnan(got[k]), k
    for k in ("alarm_share", "alarm_precision", "prevalence", "alarm_share_by_design"):
        assert math.isnan(got[k]), k


def test_choose_threshold_falls_back_to_the_highest_candidate_when_none_meets_the_budget():
    table = _hourly_table(72, [])  # no closure: every firing is false
    highest = float(C.CANDIDATE_THRESHOLDS[-1])
    assert C.choose_threshold(table, np.full(72, 1.0), max_false_alarms_per_week=0.0) == highest
    assert highest == max(C.CANDIDATE_THRESHOLDS) <= 1.0
