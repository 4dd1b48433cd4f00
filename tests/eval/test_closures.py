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
    series = C.hospital_risk_series(t, np.array([2, 2, 2, 2]), np.array([0, 0, 1, 1]),
                                    np.array([0.2, 0.6, 0.4, 0.4]), pd.date_range(H0, periods=5, freq="h"))
    # hour 0: nobody yet -> filled 0; hour 1: p0 0.2, p1 0.4 -> 0.3; hour 2: 0.2, 0.4 -> 0.3;
    # hour 3: p0 left after 2.5 h, p1 0.4 -> 0.4; hour 4: nobody -> carried forward 0.4
    np.testing.assert_allclose(series[2].to_numpy(), [0.0, 0.3, 0.3, 0.4, 0.4])


def test_lead_time_and_false_alarms():
    hours = pd.date_range(H0, periods=48, freq="h")
    risk = np.zeros(48)
    risk[10:20] = 0.5  # alarm from hour 10; closure at hour 18 -> lead 8 h
    risk[21:23] = 0.5  # alarm at 21 with no closure start in [21, 45] -> a false alarm
    # the second closure (47 h) has no alarm in [23, 47): missed, lead 0
    closures = pd.DatetimeIndex([H0 + pd.Timedelta(hours=18), H0 + pd.Timedelta(hours=47)])
    st = C.warning_stats(pd.Series(risk, index=hours), closures, threshold=0.4)
    assert st["lead_h"] == [8.0, 0.0]
    assert st["false_alarms"] == 1 and st["alarms"] == 2
    summary = C.summarize(pd.DataFrame({2: risk}, index=hours), {2: closures}, 0.4)
    assert summary["median_lead_h"] == 4.0 and summary["warned_6h_share"] == 0.5
    assert summary["false_alarms_per_week"] == 1 / (48 / 168)
    # a standing alarm re-fires every 24 h: on for all 48 h = 2 firings; the first (0 h) has the closure at 18 h
    # within a day, the second (24 h) has the one at 47 h: no false alarm, closures warned 18 / 24 h ahead
    always = C.warning_stats(pd.Series(np.ones(48), index=hours), closures, threshold=0.4)
    assert always["alarms"] == 2 and always["false_alarms"] == 0 and always["lead_h"] == [18.0, 24.0]
    no_closures = C.warning_stats(pd.Series(np.ones(48), index=hours), pd.DatetimeIndex([]), threshold=0.4)
    assert no_closures["false_alarms"] == 2
    # a threshold above every risk raises no alarm: nothing warned, no false alarms
    assert C.choose_threshold(pd.DataFrame({2: risk}, index=hours), {2: closures}, 0.0) == 0.52
