"""Validation of a MEDS-style event table, with explicit policies and an account of every dropped event.

Each check either raises `DataValidationError` (naming the column and showing the first offending rows) or,
where the policy allows, repairs and records the count in `Accounting`. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

SHOW_ROWS = 5

Policy = Literal["fail", "drop", "clip", "sort", "unknown"]


class DataValidationError(ValueError):
    """Bad input: `column` names where, `rows` holds the first offending rows."""

    def __init__(self, column: str, problem: str, rows: pd.DataFrame | None = None, count: int | None = None):
        self.column, self.problem, self.rows, self.count = column, problem, rows, count
        shown = "" if rows is None else "\nfirst offending rows:\n" + rows.head(SHOW_ROWS).to_string()
        n = "" if count is None else f" ({count} rows)"
        super().__init__(f"column {column!r}: {problem}{n}{shown}")


@dataclass
class ValidationPolicy:
    """What to do with each kind of problem. 'fail' raises; the others repair and count.

    duplicates: 'fail' | 'drop' (identical rows after the first)
    unsorted: 'fail' | 'sort' (sort by subject, then time with null times first)
    bad_time: 'fail' | 'drop' (time not parseable; a *null* time is a static fact and always allowed)
    out_of_range: 'fail' | 'drop' | 'clip' (numeric_value outside `ranges` for its code)
    unknown_code: 'unknown' (map to <unk>, counted) | 'drop' | 'fail' (codes absent from a fitted schema)
    missing_required: 'fail' | 'drop' (null subject_id or code)
    """

    duplicates: Literal["fail", "drop"] = "drop"
    unsorted: Literal["fail", "sort"] = "sort"
    bad_time: Literal["fail", "drop"] = "fail"
    out_of_range: Literal["fail", "drop", "clip"] = "fail"
    unknown_code: Literal["unknown", "drop", "fail"] = "unknown"
    missing_required: Literal["fail", "drop"] = "fail"
    ranges: dict[str, tuple[float, float]] | None = None  # code -> (low, high); default: vitals ranges


@dataclass
class Accounting:
    """events_in = events_used + sum(dropped.values()); repaired counts rows changed but kept."""

    events_in: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    label_rows: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def events_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    @property
    def events_used(self) -> int:
        return self.events_in - self.events_dropped

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def repair(self, reason: str, n: int) -> None:
        if n:
            self.repaired[reason] = self.repaired.get(reason, 0) + int(n)

    def report(self) -> str:
        lines = [f"events in: {self.events_in}", f"events used: {self.events_used}",
                 f"events dropped: {self.events_dropped}"]
        lines += [f"  dropped, {k}: {v}" for k, v in sorted(self.dropped.items())]
        lines += [f"  repaired (kept), {k}: {v}" for k, v in sorted(self.repaired.items())]
        for task, c in sorted(self.label_rows.items()):
            lines.append(f"  labels {task}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


REQUIRED = {"subject_id": "integer", "time": "datetime (null for static facts)", "code": "string"}


def validate_events(df: pd.DataFrame, policy: ValidationPolicy, acc: Accounting) -> pd.DataFrame:
    """Return a cleaned copy of a MEDS event table (subject_id int64, time datetime64[us], code str, ...)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"events: expected a pandas DataFrame, got {type(df).__name__}")
    acc.events_in += len(df)
    for col, what in REQUIRED.items():
        if col not in df.columns:
            raise DataValidationError(col, f"missing; a MEDS event table needs {list(REQUIRED)} "
                                           f"(got columns {list(df.columns)})")
    df = df.copy()

    # subject_id: integer, not null
    sid = df["subject_id"]
    if not (pd.api.types.is_integer_dtype(sid) or pd.api.types.is_float_dtype(sid)):
        num = pd.to_numeric(sid, errors="coerce")
        bad = num.isna() & sid.notna()
        if bad.any():
            raise DataValidationError("subject_id", f"expected {REQUIRED['subject_id']}, got dtype {sid.dtype}",
                                      df[bad], int(bad.sum()))
        sid = num
    if pd.api.types.is_float_dtype(sid):
        frac = sid.notna() & (sid != np.floor(sid))
        if frac.any():
            raise DataValidationError("subject_id", "expected integer ids, got fractional values", df[frac],
                                      int(frac.sum()))
    df["subject_id"] = sid
    df = _required_not_null(df, "subject_id", policy, acc)
    df = _required_not_null(df, "code", policy, acc)
    df["subject_id"] = df["subject_id"].astype(np.int64)
    if not (pd.api.types.is_string_dtype(df["code"]) or pd.api.types.is_object_dtype(df["code"])):
        raise DataValidationError("code", f"expected string codes, got dtype {df['code'].dtype}", df.head())
    df["code"] = df["code"].astype(str)

    # time: datetime; null allowed (static); unparseable is an error or a counted drop
    t = df["time"]
    if not pd.api.types.is_datetime64_any_dtype(t):
        parsed = pd.to_datetime(t, errors="coerce", format="mixed")
        bad = parsed.isna() & t.notna() & (t.astype(str).str.strip() != "")
        if bad.any():
            if policy.bad_time == "fail":
                raise DataValidationError("time", "unparseable times", df[bad], int(bad.sum()))
            acc.drop("time unparseable", int(bad.sum()))
            df, parsed = df[~bad], parsed[~bad]
        t = parsed
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
        acc.notes.append("time: timezone-aware input converted to naive UTC")
    df["time"] = t.astype("datetime64[us]")

    if "numeric_value" in df.columns:
        nv = df["numeric_value"]
        if not pd.api.types.is_numeric_dtype(nv):
            num = pd.to_numeric(nv, errors="coerce")
            bad = num.isna() & nv.notna()
            if bad.any():
                raise DataValidationError("numeric_value", f"expected numbers, got dtype {nv.dtype}", df[bad],
                                          int(bad.sum()))
            nv = num
        df["numeric_value"] = nv.astype("Float64").astype("float64")
        inf = np.isinf(df["numeric_value"].to_numpy(dtype=float, na_value=np.nan))
        if inf.any():
            raise DataValidationError("numeric_value", "infinite values", df[inf], int(inf.sum()))
        df = _ranges(df, policy, acc)

    # duplicates: identical rows (all columns)
    dup = _duplicated(df, keep="first")
    if dup.any():
        if policy.duplicates == "fail":
            raise DataValidationError("(all columns)", "duplicate events", df[_duplicated(df, keep=False)],
                                      int(dup.sum()))
        acc.drop("duplicate event", int(dup.sum()))
        df = df[~dup]

    # order: by subject, null times first, then time (MEDS: a subject's events contiguous and time-sorted)
    s = df["subject_id"].to_numpy()
    tt = df["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    tt = np.where(df["time"].isna().to_numpy(), np.iinfo(np.int64).min, tt)
    # a subject's rows must be contiguous (MEDS); subjects themselves may come in any order (shards)
    bad = np.zeros(len(df), bool)
    if len(df) > 1:
        same = s[1:] == s[:-1]
        bad[1:] = same & (tt[1:] < tt[:-1])
        run_start = np.concatenate([[True], ~same])
        _, runs = np.unique(s[run_start], return_counts=True)
        if (runs > 1).any():
            bad |= np.isin(s, np.unique(s[run_start])[runs > 1]) & run_start
    if bad.any():
        if policy.unsorted == "fail":
            first = np.nonzero(bad)[0][:SHOW_ROWS]
            ctx = np.unique(np.concatenate([first - 1, first]))
            raise DataValidationError("time", "events not sorted by time within a subject (null times first), "
                                      "or a subject's events not contiguous",
                                      df.iloc[ctx], int(bad.sum()))
        order = np.lexsort((tt, s))
        df = df.iloc[order]
        acc.repair("events re-sorted by subject_id, time", int(bad.sum()))
    return df.reset_index(drop=True)


def _duplicated(df: pd.DataFrame, keep: Literal["first", False]) -> np.ndarray:
    """`df.duplicated(keep)` over all columns, with pandas comparing only the candidate rows.

    Identical rows share (subject_id, time, code), so rows whose hash of that key is unique cannot be
    duplicates; a hash collision only adds candidates. The candidates keep their order, so keep="first"
    marks exactly the rows the full-table check marks (measured: the all-column check on 10 M rows took
    most of validation).
    """
    code_idx = pd.factorize(df["code"])[0].astype(np.uint64)
    subject = df["subject_id"].to_numpy(np.int64).view(np.uint64)
    time = df["time"].to_numpy().view(np.int64).view(np.uint64)  # NaT is one fixed value
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps: a hash, not a key
        h = (subject * np.uint64(0x9E3779B97F4A7C15) + time) * np.uint64(0xBF58476D1CE4E5B9) + code_idx
    ordered = np.sort(h)  # measured: a sort beats a pandas hash table here (1.3 s against 2.7 s at 10 M rows)
    cand = np.nonzero(np.isin(h, ordered[1:][ordered[1:] == ordered[:-1]]))[0]
    out = np.zeros(len(df), dtype=bool)
    if cand.size:
        out[cand] = df.iloc[cand].duplicated(keep=keep).to_numpy()
    return out


def _required_not_null(df, col, policy, acc):
    bad = df[col].isna()
    if bad.any():
        if policy.missing_required == "fail":
            raise DataValidationError(col, "null values (MEDS requires it non-null)", df[bad], int(bad.sum()))
        acc.drop(f"{col} null", int(bad.sum()))
        return df[~bad]
    return df


def _ranges(df, policy, acc):
    from hamburg_mamba.data.synthetic import VITAL_RANGES

    ranges = VITAL_RANGES if policy.ranges is None else policy.ranges
    if not ranges:
        return df
    # per distinct code, not per row: a dictionary lookup per event dominated the connector at 10 M events
    code_idx, uniq = pd.factorize(df["code"])
    lo = np.array([ranges.get(c, (np.nan, np.nan))[0] for c in uniq], dtype=float)[code_idx]
    hi = np.array([ranges.get(c, (np.nan, np.nan))[1] for c in uniq], dtype=float)[code_idx]
    v = df["numeric_value"].to_numpy(dtype=float, na_value=np.nan)
    bad = (v < lo) | (v > hi)  # NaN (no value, no range) compares False
    if not bad.any():
        return df
    if policy.out_of_range == "fail":
        rows = df[bad].assign(allowed_low=lo[bad], allowed_high=hi[bad])
        raise DataValidationError("numeric_value", "values outside physiological ranges", rows, int(bad.sum()))
    if policy.out_of_range == "clip":
        df.loc[bad, "numeric_value"] = np.clip(v[bad], lo[bad], hi[bad])
        acc.repair("numeric_value clipped to physiological range", int(bad.sum()))
        return df
    acc.drop("numeric_value outside physiological range", int(bad.sum()))
    return df[~bad]
