"""Hospital-level closure warnings: hourly risk per hospital, lead time before each closure, false alarms.

A hospital's risk at hour h is the mean, over the pathways present at the hospital at h, of each pathway's
latest closure prediction at or before h (what `PathwayMonitor.system_breakdown` reports live). An alarm is on
while that risk is at or above a threshold chosen on the tuning period (the lowest threshold that still warns
at most `max_false_alarms_per_week` times a week there, see `choose_threshold`).

Lead time of a closure starting at T: hours between the first alarm hour in [T - LOOKBACK_H, T) and T
(0 when no alarm in that window). An alarm fires when the risk crosses the threshold and fires again every
LOOKBACK_H hours while it stays on (a standing alarm is re-paged daily; without this a threshold low enough to
keep the alarm on for weeks would count as one alarm and "warn" every closure a day ahead). A false alarm is
a firing with no closure start in the following LOOKBACK_H hours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.schema import UNKNOWN_INDEX

LOOKBACK_H = 24  # a warning counts for a closure up to a day ahead (the longest task horizon)
DEFAULT_MAX_FALSE_ALARMS_PER_WEEK = 2.0  # alarm budget per hospital-week used to pick the threshold on tuning
HOURS_PER_WEEK = 168.0
US_PER_HOUR = 3.6e9


def hospital_risk_series(time_us: np.ndarray, hospital: np.ndarray, pathway: np.ndarray, risk: np.ndarray,
                         hours: pd.DatetimeIndex) -> pd.DataFrame:
    """DataFrame (index hour, one column per hospital id) of mean latest risk over present pathways.

    time_us, hospital, pathway, risk: (R,) prediction rows. A pathway is present from its first row to its last.
    """
    h0 = hours[0].to_datetime64().astype("datetime64[us]").astype(np.int64)
    grid_h = (time_us - h0) / US_PER_HOUR  # row time in hours since the first grid hour
    H = len(hours)
    out = {}
    for hid in np.unique(hospital[hospital != UNKNOWN_INDEX]):  # rows before the destination is known: no hospital's
        sel = hospital == hid
        t, p, r = grid_h[sel], pathway[sel], risk[sel]
        order = np.lexsort((t, p))
        t, p, r = t[order], p[order], r[order]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        ends = np.r_[starts[1:], p.size]
        total = np.zeros(H)
        count = np.zeros(H)
        for a, b in zip(starts, ends):
            first_h = int(np.ceil(t[a]))
            last_h = int(np.floor(t[b - 1]))
            if last_h < first_h or last_h < 0 or first_h >= H:
                continue
            grid = np.arange(max(first_h, 0), min(last_h, H - 1) + 1)
            k = np.searchsorted(t[a:b], grid, "right") - 1  # latest row at or before each hour
            total[grid] += r[a:b][k]
            count[grid] += 1
        out[int(hid)] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    frame = pd.DataFrame(out, index=hours)
    return frame.ffill().fillna(0.0)


def alarm_episodes(on: np.ndarray) -> list[tuple[int, int]]:
    """(start, end exclusive) index pairs of runs of True."""
    d = np.diff(np.r_[0, on.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def warning_stats(risk: pd.Series, closure_starts: pd.DatetimeIndex, threshold: float) -> dict:
    """Lead times and false alarms of one hospital's hourly risk series at one threshold."""
    hours = risk.index
    on = risk.to_numpy() >= threshold
    h0 = hours[0]
    lead = []
    for T in closure_starts:
        k = int((T - h0) / pd.Timedelta(hours=1))
        window = on[max(k - LOOKBACK_H, 0):max(k, 0)]
        if window.any():
            first = int(np.argmax(window))
            lead.append(float(window.size - first))
        else:
            lead.append(0.0)
    starts_h = np.array([(T - h0) / pd.Timedelta(hours=1) for T in closure_starts])
    false_alarms = 0
    onsets = [f for a, b in alarm_episodes(on) for f in range(a, b, LOOKBACK_H)]  # re-fire every LOOKBACK_H
    for a in onsets:
        if not np.any((starts_h >= a) & (starts_h <= a + LOOKBACK_H)):
            false_alarms += 1
    return {"lead_h": lead, "false_alarms": false_alarms, "alarms": len(onsets), "hours": len(hours)}


def summarize(series: pd.DataFrame, closures: dict[int, pd.DatetimeIndex], threshold: float) -> dict:
    """Pooled over hospitals: median lead time (missed closures count 0 h), share warned >= 6 h, false alarms
    per hospital-week."""
    lead, fa, alarms, hours = [], 0, 0, 0
    for hid in series.columns:
        st = warning_stats(series[hid], closures.get(hid, pd.DatetimeIndex([])), threshold)
        lead += st["lead_h"]
        fa += st["false_alarms"]
        alarms += st["alarms"]
        hours += st["hours"]
    lead_arr = np.array(lead)
    return {"threshold": threshold, "closures": int(lead_arr.size),
            "median_lead_h": float(np.median(lead_arr)) if lead_arr.size else float("nan"),
            "warned_6h_share": float(np.mean(lead_arr >= 6)) if lead_arr.size else float("nan"),
            "warned_share": float(np.mean(lead_arr > 0)) if lead_arr.size else float("nan"),
            "false_alarms_per_week": fa / max(hours / HOURS_PER_WEEK, 1e-9), "alarms": alarms,
            "hospital_weeks": hours / HOURS_PER_WEEK}


CANDIDATE_THRESHOLDS = np.round(np.arange(0.02, 0.96, 0.02), 2)


def choose_threshold(series: pd.DataFrame, closures: dict[int, pd.DatetimeIndex],
                     max_false_alarms_per_week: float = DEFAULT_MAX_FALSE_ALARMS_PER_WEEK) -> float:
    """Lowest threshold whose false alarms per hospital-week on this (tuning) period are within the limit;
    lower thresholds warn earlier, so this is the earliest warning the alarm budget allows."""
    for t in CANDIDATE_THRESHOLDS:
        if summarize(series, closures, float(t))["false_alarms_per_week"] <= max_false_alarms_per_week:
            return float(t)
    return float(CANDIDATE_THRESHOLDS[-1])


def closure_starts_from_system(root, hospital_lookup: dict[str, int]) -> dict[int, pd.DatetimeIndex] | None:
    """Closure start hours per hospital id from system/hospital_hourly.parquet; None when the data has none."""
    from pathlib import Path

    path = Path(root) / "system" / "hospital_hourly.parquet"
    if not path.exists():
        return None
    hh = pd.read_parquet(path, columns=["hospital", "time", "closure_start"])
    hh = hh[hh["closure_start"]]
    out = {}
    for name, g in hh.groupby("hospital", observed=True):
        if str(name) in hospital_lookup:
            out[hospital_lookup[str(name)]] = pd.DatetimeIndex(g["time"].sort_values())
    return out
