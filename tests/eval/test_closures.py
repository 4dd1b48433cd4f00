"""Hospital risk series, lead times and false alarms on hand-built cases."""

import numpy as np
import pandas as pd

from hamburg_mamba.eval import closures as C

H0 = pd.Timestamp("2023-11-01 00:00")
US = 3.6e9


def _us(hours):
    return (H0.to_datetime64().astype("datetime64[us]").astype(np.int64) + np.asarray(hours) * US).astype(np.int64)


def test_hospital_risk_is_the_mean_latest_prediction_of_present_pathways():
    # hospital 2: pathway 0 rows at 0.5 h (0.2) and 2.5 h (0.6); pathway 1 rows at 1.0 h (0.4) and 3.0 h (0.4)
    t = _us([0.5, 2.5, 1.0, 3.0])
    series = C.hospital_risk_series(
        t,
        np.array([2, 2, 2, 2]),
        np.array([0, 0, 1, 1]),
        np.array([0.2, 0.6, 0.4, 0.4]),
        pd.date_range(H0, periods=5, freq="h"),
    )
    # hour 0: nobody yet -> filled 0; hour 1: p0 0.2, p1 0.4 -> 0.3; hour 2: 0.2, 0.4 -> 0.3;
    # hour 3: p0 left after 2.5 h, p1 0.4 -> 0.4; hour 4: nobody -> carried forward 0.4
    np.testing.assert_allclose(series[2].to_numpy(), [0.0, 0.3, 0.3, 0.4, 0.4])


def _table(hours, starts):
    """Open hospital-hours of one hospital (none closed), closure starts at the given hour indexes."""
    hourly = pd.DataFrame(
        {
            "hospital": "A",
            "time": pd.date_range(H0, periods=hours, freq="h"),
            "closure_start": np.isin(np.arange(hours), starts),
            "closed_at_hour_start": False,
            "closure_hazard": np.float32(0.01),
        }
    )
    return C.hospital_hours(hourly, horizons=(6,))


def test_standing_alarm_refires_daily_and_false_firings():
    # a standing alarm re-fires every 24 h: on for all 48 h = 2 firings; the first (0 h) has the closure at 18 h
    # within a day, the second (24 h) has the one at 47 h: no false firing; leads 18 and 47 h (no cap)
    table = _table(48, [18, 47])
    always = C.warning_summary(table, np.ones(48), 0.4)
    assert always["firings"] == 2 and always["false_alarms"] == 0 and always["max_lead_h"] == 47.0
    assert always["median_lead_h"] == (18 + 47) / 2
    no_closures = C.warning_summary(_table(48, []), np.ones(48), 0.4)
    assert no_closures["false_alarms"] == 2 and no_closures["closures"] == 0
    # alarm 10..19 and 21..22; closure at 18 (lead 8 h) and at 47 (missed: alarm off at 47)
    risk = np.zeros(48)
    risk[10:20] = 0.5
    risk[21:23] = 0.5
    st = C.warning_summary(table, risk, 0.4)
    assert st["warned_share"] == 0.5 and st["median_lead_h"] == 4.0 and st["median_lead_warned_h"] == 8.0
    assert st["firings"] == 2 and st["false_alarms"] == 1  # the firing at 21 has no start in 21..44
    # a threshold above every risk raises no alarm; with no false firing allowed the lowest such is 0.52
    assert C.choose_threshold(table, risk, 0.0) == 0.52
