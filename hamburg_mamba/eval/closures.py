"""Closure warnings evaluated where the decision is made: one row per hospital and hour.

Glossary: R prediction rows, H hours of a grid, T hospital-hour rows, K horizons.

Unit. Closing to ambulances is a hospital's decision, so the unit is the hospital-hour: hospital j at h:00,
with everything known by then. A row exists only while j is open at h:00 (no closure running: the generator's
`closed_at_hour_start`); an hour inside a running closure is no warning of a new one. Its label for horizon k
is "a new closure of j starts within k h": one of the hourly `closure_start` flags h .. h+k-1 is set (a start
flagged at h happens during [h, h+1), after the decision at h:00). Rows whose window runs past the table are
unlabelled.

By design. The generator's closure hazard is 0 from 21:00 to 06:00 and in its first day (synthetic/constants.py:
CLOSURE_ALLOWED_FROM_H, CLOSURE_ALLOWED_UNTIL_H, CLOSURE_MIN_HISTORY_H); there is no refractory period beyond
the running closure. A row whose whole window lies in such hours has label 0 by construction, whatever anyone
predicts; those rows are counted apart ("by design", per horizon) and not scored. For 6 h these are the rows
at 21:00-00:00; a 12 or 24 h window always reaches a daytime hour.

Score. `hospital_risk_series` is the one rule that pools patient-level predictions into a hospital's score:
at h, every pathway that has a prediction made at or before h and has not left (its last event at or after h)
contributes its latest prediction made at or before h, counted at the hospital that prediction's event knew
(`event_hospital_name`: a hospital outside the training vocabulary is itself, rows before the destination is
known count nowhere). The score is the mean over those pathways (what the live monitor reports,
nn.model.summarize_breakdown); an hour with none keeps the previous hour's score (0 before the first).

Alarm. On while the score is at or above a threshold chosen on the tuning period (`choose_threshold`: the
lowest threshold whose false alarms there stay within a budget per hospital-week). An alarm fires at its onset
and again every REFIRE_H hours while it stands (a standing alarm is re-paged daily); a firing is false when no
closure starts in the following REFIRE_H hours.

Lead time, without a cap. The hours the alarm had been on, without a break, when a closure started: s - a for
a closure flagged at s whose hospital's alarm was on at every open hour a .. s (0 h when it came on at s
itself); a closure with the alarm off at s is missed. A standing alarm earns long leads, so the share of
hospital-hours under alarm and the alarm precision (share of alarm hours followed by a start within the
horizon) are reported beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.data.synthetic import CLOSURE_ALLOWED_FROM_H, CLOSURE_ALLOWED_UNTIL_H, CLOSURE_MIN_HISTORY_H

HORIZONS_H = (6, 12, 24)  # the closure tasks' horizons (schema TASKS closure_6h/12h/24h)
ALARM_HORIZON_H = 6  # the alarm reads closure_6h, the monitor's default (the shortest horizon)
REFIRE_H = 24  # a standing alarm is re-paged daily; a firing is false without a start in this many hours
DEFAULT_MAX_FALSE_ALARMS_PER_WEEK = 2.0  # alarm budget per hospital-week used to pick the threshold on tuning
HOURS_PER_WEEK = 168.0
US_PER_HOUR = 3.6e9
CANDIDATE_THRESHOLDS = np.round(np.arange(0.02, 0.96, 0.02), 2)
HOURLY_COLUMNS = ("hospital", "time", "closure_start", "closed_at_hour_start", "closure_hazard")


# ----------------------------------------------------------------------------------------------------------
# The unit: open hospital-hours and their labels


def read_hourly(root) -> pd.DataFrame | None:
    """The generator's hourly table (system/hospital_hourly.parquet) with the columns the unit needs; None
    when the folder has no such table (data without closures)."""
    path = Path(root) / "system" / "hospital_hourly.parquet"
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    have = pq.read_schema(path).names
    missing = [c for c in HOURLY_COLUMNS if c not in have]
    if missing:
        raise ValueError(
            f"{path}: columns {missing} missing (the hospital-hour unit needs {list(HOURLY_COLUMNS)}; "
            f"data generated before `closed_at_hour_start` was written: regenerate it)"
        )
    return pd.read_parquet(path, columns=list(HOURLY_COLUMNS))


def hospital_hours(hourly: pd.DataFrame, horizons=HORIZONS_H) -> pd.DataFrame:
    """(T rows) one per open hospital-hour, sorted by hospital and time: hospital (str), time, start (a closure
    starts in this hour), and per horizon k: y_<k>h (a start within k h), labelled_<k>h (the window lies in the
    table), by_design_<k>h (no closure can start in the window by design) and clairvoyant_<k>h (probability of
    a start in the window given the realised hourly hazard: the generator's own, unreachable)."""
    for col in HOURLY_COLUMNS:
        if col not in hourly.columns:
            raise ValueError(f"hourly: column {col!r} missing (expected {list(HOURLY_COLUMNS)})")
    table_start = pd.Timestamp(hourly["time"].min())
    parts = []
    for name, g in hourly.groupby(hourly["hospital"].astype(str), sort=True):
        g = g.sort_values("time")
        time = pd.DatetimeIndex(g["time"])
        if (np.diff(time.as_unit("us").asi8) != int(US_PER_HOUR)).any():
            raise ValueError(f"hourly: hospital {name!r} rows are not one per consecutive hour")
        parts.append(_one_hospital(str(name), time, g, table_start, horizons))
    return pd.concat(parts, ignore_index=True)


def _one_hospital(name, time, g, table_start, horizons) -> pd.DataFrame:
    H = len(time)
    i = np.arange(H)
    start = g["closure_start"].to_numpy(bool)
    hod = time.hour.to_numpy()
    since_start_h = ((time - table_start) / pd.Timedelta(hours=1)).to_numpy()
    possible = (
        (hod >= CLOSURE_ALLOWED_FROM_H) & (hod < CLOSURE_ALLOWED_UNTIL_H) & (since_start_h >= CLOSURE_MIN_HISTORY_H)
    )
    starts = np.r_[0, np.cumsum(start)]  # (H+1,) starts before each hour
    possibles = np.r_[0, np.cumsum(possible)]
    logsurv = np.r_[0.0, np.cumsum(np.log1p(-g["closure_hazard"].to_numpy(np.float64)))]
    out = {"hospital": np.full(H, name, dtype=object), "time": time, "start": start}
    for k in horizons:
        end = np.minimum(i + k, H)
        out[f"y_{k}h"] = starts[end] - starts[i] > 0
        out[f"labelled_{k}h"] = i + k <= H
        out[f"by_design_{k}h"] = possibles[end] - possibles[i] == 0
        out[f"clairvoyant_{k}h"] = 1.0 - np.exp(logsurv[end] - logsurv[i])
    frame = pd.DataFrame(out)
    return frame[~g["closed_at_hour_start"].to_numpy(bool)].reset_index(drop=True)


def scored(table: pd.DataFrame, k: int) -> np.ndarray:
    """(T,) rows scored at horizon k: labelled, and a closure can start in the window."""
    return table[f"labelled_{k}h"].to_numpy() & ~table[f"by_design_{k}h"].to_numpy()


def in_period(table: pd.DataFrame, lo, hi, k: int) -> np.ndarray:
    """(T,) rows whose decision hour and whole label window lie in [lo, hi): a period's rows never see the
    next period's closures."""
    t = table["time"]
    return ((t >= pd.Timestamp(lo)) & (t + pd.Timedelta(hours=k) <= pd.Timestamp(hi))).to_numpy()


def hospital_day(table: pd.DataFrame) -> np.ndarray:
    """(T,) bootstrap cluster of each row: its hospital and calendar day (closures of one hospital on one day
    share their hours' labels)."""
    return (table["hospital"].astype(str) + "|" + table["time"].dt.strftime("%Y-%m-%d")).to_numpy()


# ----------------------------------------------------------------------------------------------------------
# The score: patient-level predictions pooled per hospital and hour


def hospital_risk_series(
    time_us: np.ndarray,
    hospital: np.ndarray,
    pathway: np.ndarray,
    risk: np.ndarray,
    hours: pd.DatetimeIndex,
    end_us: np.ndarray | None = None,
) -> pd.DataFrame:
    """DataFrame (index hours, one column per hospital) of each hospital's score (module docstring, "Score").

    time_us, hospital, pathway, risk: (R,) prediction rows; hospital as known at the row (None or NaN: not
    known yet). end_us: (R,) time of the row's pathway's last event (None: its last row).
    """
    time_us = np.asarray(time_us, dtype=np.int64)
    h0 = pd.Timestamp(hours[0]).to_datetime64().astype("datetime64[us]").astype(np.int64)
    grid_h = (time_us - h0) / US_PER_HOUR  # row time in hours since the first grid hour
    end_h = grid_h if end_us is None else (np.asarray(end_us, dtype=np.int64) - h0) / US_PER_HOUR
    hosp = pd.Series(np.asarray(hospital, dtype=object))
    known = ~hosp.isna().to_numpy()
    codes, names = pd.factorize(hosp.where(known, None), sort=True)
    H, J = len(hours), len(names)
    total, count = np.zeros((J, H)), np.zeros((J, H))
    order = np.lexsort((grid_h, pathway))
    t, p, r, c, e = (
        grid_h[order],
        np.asarray(pathway)[order],
        np.asarray(risk, np.float64)[order],
        codes[order],
        end_h[order],
    )
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], p.size], strict=True):
        first_h = max(int(np.ceil(t[a])), 0)
        last_h = min(int(np.floor(e[a:b].max())), H - 1)
        if last_h < first_h:
            continue
        grid = np.arange(first_h, last_h + 1)
        k = a + np.searchsorted(t[a:b], grid, "right") - 1  # latest row at or before each hour
        at = c[k] >= 0
        np.add.at(total, (c[k][at], grid[at]), r[k][at])
        np.add.at(count, (c[k][at], grid[at]), 1)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    frame = pd.DataFrame(mean.T, index=hours, columns=list(names))
    return frame.ffill().fillna(0.0)


def score_rows(table: pd.DataFrame, series: pd.DataFrame) -> np.ndarray:
    """(T,) the series' value at each hospital-hour row; NaN where the series has no such hospital or hour."""
    out = np.full(len(table), np.nan)
    pos = series.index.get_indexer(pd.DatetimeIndex(table["time"]))
    for name, rows in table.groupby("hospital", sort=False).indices.items():
        if name in series.columns:
            p = pos[rows]
            ok = p >= 0
            out[rows[ok]] = series[name].to_numpy()[p[ok]]
    return out


# ----------------------------------------------------------------------------------------------------------
# Alarms: threshold, firings, lead times


def _runs(table: pd.DataFrame, on: np.ndarray) -> np.ndarray:
    """(T,) index of the first row of each row's unbroken alarm run (same hospital, consecutive hours, alarm
    on throughout); -1 where the alarm is off. Rows must be sorted by hospital and time."""
    hosp = table["hospital"].to_numpy()
    t = table["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    cont = np.r_[False, (hosp[1:] == hosp[:-1]) & (np.diff(t) == int(US_PER_HOUR)) & on[1:] & on[:-1]]
    idx = np.arange(on.size)
    run_start = np.maximum.accumulate(np.where(cont, 0, idx))
    return np.where(on, run_start, -1)


def firings(table: pd.DataFrame, on: np.ndarray) -> tuple[int, int]:
    """(firings, false firings): an alarm fires at its run's first hour and every REFIRE_H hours into the run;
    false when its hospital has no closure start in the REFIRE_H hours from the firing."""
    run = _runs(table, on)
    idx = np.arange(on.size)
    fire = on & ((idx - run) % REFIRE_H == 0)
    t_h = table["time"].to_numpy().astype("datetime64[us]").astype(np.int64) / US_PER_HOUR
    false = 0
    for rows in table.groupby("hospital", sort=False).indices.values():
        s = t_h[rows][table["start"].to_numpy()[rows]]
        for f in t_h[rows][fire[rows]]:
            false += not np.any((s >= f) & (s < f + REFIRE_H))
    return int(fire.sum()), false


def lead_times(table: pd.DataFrame, on: np.ndarray) -> np.ndarray:
    """(closures,) hours the alarm had stood when each closure of the table started; NaN when missed."""
    run = _runs(table, on)
    s = np.flatnonzero(table["start"].to_numpy())
    t_h = table["time"].to_numpy().astype("datetime64[us]").astype(np.int64) / US_PER_HOUR
    return np.where(run[s] >= 0, t_h[s] - t_h[np.maximum(run[s], 0)], np.nan)


def warning_summary(table: pd.DataFrame, score: np.ndarray, threshold: float, horizon: int = ALARM_HORIZON_H) -> dict:
    """The alarm at `threshold` on these hospital-hours: closures warned and their lead times, alarm share and
    precision at `horizon` on the scored rows, firings, and the alarm share in the by-design rows."""
    on = np.asarray(score) >= threshold
    lead = lead_times(table, on)
    fires, false = firings(table, on)
    m = scored(table, horizon)
    design = table[f"by_design_{horizon}h"].to_numpy() & table[f"labelled_{horizon}h"].to_numpy()
    y = table[f"y_{horizon}h"].to_numpy()
    warned = np.isfinite(lead)
    hospital_weeks = len(table) / HOURS_PER_WEEK
    return {
        "threshold": float(threshold),
        "horizon_h": horizon,
        "closures": int(lead.size),
        "warned_share": float(warned.mean()) if lead.size else float("nan"),
        "warned_6h_share": float(np.mean(warned & (np.nan_to_num(lead, nan=-1) >= 6))) if lead.size else float("nan"),
        "median_lead_h": float(np.median(np.nan_to_num(lead, nan=0.0))) if lead.size else float("nan"),
        "median_lead_warned_h": float(np.median(lead[warned])) if warned.any() else float("nan"),
        "max_lead_h": float(lead[warned].max()) if warned.any() else float("nan"),
        "alarm_share": float(on[m].mean()) if m.any() else float("nan"),
        "alarm_precision": float(y[m & on].mean()) if (m & on).any() else float("nan"),
        "prevalence": float(y[m].mean()) if m.any() else float("nan"),
        "scored_hours": int(m.sum()),
        "by_design_hours": int(design.sum()),
        "alarm_share_by_design": float(on[design].mean()) if design.any() else float("nan"),
        "firings": fires,
        "false_alarms": false,
        "false_alarms_per_week": false / max(hospital_weeks, 1e-9),
        "hospital_weeks": hospital_weeks,
    }


def choose_threshold(
    table: pd.DataFrame, score: np.ndarray, max_false_alarms_per_week: float = DEFAULT_MAX_FALSE_ALARMS_PER_WEEK
) -> float:
    """Lowest candidate threshold whose false firings per hospital-week on these (tuning) hospital-hours stay
    within the budget; lower thresholds warn earlier, so this is the earliest warning the budget allows. The
    highest candidate when none does."""
    weeks = max(len(table) / HOURS_PER_WEEK, 1e-9)
    score = np.asarray(score)
    for t in CANDIDATE_THRESHOLDS:
        if firings(table, score >= t)[1] / weeks <= max_false_alarms_per_week:
            return float(t)
    return float(CANDIDATE_THRESHOLDS[-1])


# ----------------------------------------------------------------------------------------------------------
# Simple comparators, fitted on the training period


def hour_of_day_rate(table: pd.DataFrame, fit_rows: np.ndarray, k: int) -> np.ndarray:
    """(24,) share of the fitting rows at each hour of the day with a start within k h (0 where none)."""
    hod = table["time"].dt.hour.to_numpy()[fit_rows]
    y = table[f"y_{k}h"].to_numpy()[fit_rows].astype(np.float64)
    n = np.bincount(hod, minlength=24)
    return np.bincount(hod, weights=y, minlength=24) / np.maximum(n, 1)
