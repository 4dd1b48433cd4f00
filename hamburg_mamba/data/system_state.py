"""System state: a hospital status feed attached to every event as numeric features.

Glossary: N events (flat), R status rows, C status columns, H hospitals.

A hospital knows its own state in real time (the ED information system's census, boarders and waits, bed
occupancy, NEDOCS, arrivals, and whether it is registered as closed to ambulances in IVENA). A patient's own
events say almost nothing about it, yet it is what drives closures and staff strain. The connector therefore
takes an hourly status table (the synthetic Hamburg writes `system/hospital_hourly.parquet`; any table with
`hospital`, `time` and numeric columns works) and gives each event, as numeric features:

    status:<column>  the latest value of the event's hospital that was available at the event's time
    trend:<column>   that value minus the hospital's trailing exponentially weighted mean of the column
                     (time constant TREND_TIME_CONSTANT_H, four weeks): crowding against the hospital's normal

Causality: a status row stamped `time` describes the hour starting then and is available `lag_h` later (default
one hour, the end of the hour it summarises); an event at time t sees the latest row with time + lag_h <= t,
and none older than `max_age_h` (a silent feed is missing, not its last value forever). The trend at a row uses
that row and earlier ones only. Events without a hospital (an ambulance before its destination is known),
static facts, and hospitals the feed does not cover get the "missing" flag, never a made-up 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hamburg_mamba.data.validate import Accounting, DataValidationError, parse_times, require_time_convention

# Observable hourly columns of the synthetic Hamburg's status table (meds_io: system/hospital_hourly.parquet).
DEFAULT_STATUS_COLUMNS = (
    "ed_census",
    "ed_boarders",
    "longest_boarder_h",
    "icu_census",
    "ward_census",
    "nedocs",
    "ems_arrivals",
    "walk_in_arrivals",
    "ems_diverted_away",
    "closed_to_ems",
)
# Columns of that table no hospital can observe: the generator's hidden closure hazard (ground truth).
UNOBSERVABLE_COLUMNS = ("closure_hazard",)
TREND_TIME_CONSTANT_H = 28 * 24.0
DEFAULT_LAG_H = 1.0
DEFAULT_MAX_AGE_H = 6.0
US_PER_HOUR = 3.6e9
STATUS_PREFIX, TREND_PREFIX = "status:", "trend:"


def feature_names(columns: Sequence[str]) -> tuple[str, ...]:
    """The numeric feature names the status columns add, in the order `status_features` returns them."""
    return tuple(STATUS_PREFIX + c for c in columns) + tuple(TREND_PREFIX + c for c in columns)


def resolve_columns(status: pd.DataFrame, columns: Sequence[str] | None) -> tuple[str, ...]:
    """The status columns to use: `columns` as given (checked), or DEFAULT_STATUS_COLUMNS found in the table."""
    if columns is None:
        found = tuple(c for c in DEFAULT_STATUS_COLUMNS if c in status.columns)
        if not found:
            raise DataValidationError(
                "hospital_status",
                f"none of the default status columns "
                f"{list(DEFAULT_STATUS_COLUMNS)} is present (columns: {list(status.columns)}); "
                f"pass status_columns=[...] naming the numeric columns to use",
            )
        return found
    columns = tuple(columns)
    hidden = [c for c in columns if c in UNOBSERVABLE_COLUMNS]
    if hidden:
        raise DataValidationError(
            hidden[0],
            "is the generator's hidden ground truth, not observable at prediction time; it cannot be a model input",
        )
    if len(set(columns)) != len(columns):
        raise ValueError(f"status_columns: expected distinct names, got {list(columns)}")
    return columns


def check_status_table(
    status: pd.DataFrame, columns: Sequence[str], acc: Accounting, time_unit: str | None = None
) -> pd.DataFrame:
    """hospital (str), time (datetime64[us]), then the columns as float64 (NaN = missing); sorted by
    (hospital, time). Rows without hospital or time are dropped and counted; duplicates and infinite values
    fail (as an infinite numeric_value does: one inf would make the column's mean and std undefined).
    `time` follows the event table's rules (`validate.parse_times`; time_unit for numeric times) and is
    time-zone-aware exactly when the events' time is (`validate.require_time_convention`)."""
    if not isinstance(status, pd.DataFrame):
        raise TypeError(f"hospital_status: expected a pandas DataFrame, got {type(status).__name__}")
    for col in ("hospital", "time", *columns):
        if col not in status.columns:
            raise DataValidationError(col, f"missing from hospital_status (columns: {list(status.columns)})")
    time, _, aware = parse_times(status["time"], "time", time_unit, status)
    if time.notna().any():
        require_time_convention(aware, acc.time_zone_aware, "time", "hospital_status", status.head())
    out = pd.DataFrame({"hospital": status["hospital"].astype("object"), "time": time})
    for col in columns:
        s = status[col]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            raise DataValidationError(
                col,
                f"hospital_status columns must be numeric or boolean, got dtype {s.dtype}",
                status[["hospital", "time", col]],
            )
        out[col] = (
            s.astype("float64")
            if not pd.api.types.is_extension_array_dtype(s)
            else s.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        )
        inf = np.isinf(out[col].to_numpy())
        if inf.any():
            raise DataValidationError(
                col, "hospital_status: infinite values", status[["hospital", "time", col]][inf], int(inf.sum())
            )
    bad = out["hospital"].isna() | out["time"].isna()
    if bad.any():
        acc.notes.append(f"hospital_status: {int(bad.sum())} rows without hospital or time ignored")
        out = out[~bad]
    out["hospital"] = out["hospital"].astype(str)
    out["time"] = out["time"].astype("datetime64[us]")
    dup = out.duplicated(["hospital", "time"], keep=False)
    if dup.any():
        raise DataValidationError(
            "time",
            "hospital_status has several rows for the same (hospital, time)",
            out[dup].sort_values(["hospital", "time"]),
            int(dup.sum()),
        )
    return out.sort_values(["hospital", "time"], kind="stable").reset_index(drop=True)


def trailing_trend(
    table: pd.DataFrame, columns: Sequence[str], time_constant_h: float = TREND_TIME_CONSTANT_H
) -> np.ndarray:
    """(R, C) value minus the hospital's exponentially weighted mean of the rows up to and including this one
    (weights exp(-age / time_constant_h), ages from the rows' times; NaN values are skipped)."""
    halflife = pd.Timedelta(hours=time_constant_h * np.log(2.0))
    out = np.full((len(table), len(columns)), np.nan)
    for _, rows in table.groupby("hospital", sort=False).indices.items():
        sub = table.iloc[rows]
        mean = sub[list(columns)].ewm(halflife=halflife, times=sub["time"], ignore_na=False).mean()
        out[rows] = sub[list(columns)].to_numpy() - mean.to_numpy()
    return out


def status_features(
    table: pd.DataFrame,
    columns: Sequence[str],
    event_hospital: np.ndarray,
    event_time_us: np.ndarray,
    timed: np.ndarray,
    acc: Accounting,
    lag_h: float = DEFAULT_LAG_H,
    max_age_h: float = DEFAULT_MAX_AGE_H,
) -> np.ndarray:
    """(N, 2C) float64: status and trend features per event (see module docstring); NaN where missing.

    table: from `check_status_table`. event_hospital: (N,) hospital name per event (None/NaN where unknown).
    event_time_us: (N,) int64 microseconds since 1970. timed: (N,) False for static facts.
    """
    if not (lag_h >= 0 and max_age_h > 0):
        raise ValueError(f"status lag_h >= 0 and max_age_h > 0 expected, got lag_h={lag_h}, max_age_h={max_age_h}")
    C = len(columns)
    values = np.concatenate([table[list(columns)].to_numpy(dtype=float), trailing_trend(table, columns)], axis=1)
    avail = table["time"].to_numpy().astype("datetime64[us]").astype(np.int64) + int(round(lag_h * US_PER_HOUR))
    out = np.full((event_time_us.size, 2 * C), np.nan)
    hosp_codes, hosp_names = pd.factorize(pd.Series(event_hospital, dtype="object"))
    table_rows = table.groupby("hospital", sort=False).indices
    uncovered = stale = 0
    for k, name in enumerate(hosp_names):
        ev = np.nonzero((hosp_codes == k) & timed)[0]
        rows = table_rows.get(str(name))
        if rows is None:
            uncovered += ev.size
            continue
        t = event_time_us[ev]
        i = np.searchsorted(avail[rows], t, side="right") - 1  # latest row available at t
        ok = i >= 0
        ok[ok] = (t[ok] - avail[rows][i[ok]]) <= max_age_h * US_PER_HOUR
        out[ev[ok]] = values[rows[i[ok]]]
        stale += int((~ok).sum())
    unknown_hospital = int((timed & (hosp_codes < 0)).sum())
    attached = int(timed.sum()) - unknown_hospital - uncovered - stale
    acc.notes.append(
        f"hospital status ({C} columns, lag {lag_h:g} h, max age {max_age_h:g} h): attached to "
        f"{attached} of {int(timed.sum())} timed events; missing for {unknown_hospital} "
        f"events without a hospital, {uncovered} of hospitals the feed does not cover, {stale} with no row "
        f"in the last {max_age_h:g} h"
    )
    unused = sorted(set(table_rows) - {str(n) for n in hosp_names})
    if unused:
        acc.notes.append(f"hospital_status rows of hospitals absent from the events, unused: {unused}")
    return out
