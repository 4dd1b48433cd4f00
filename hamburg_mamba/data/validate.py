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
    bad_time: 'fail' | 'drop' (time not parseable, or null on a row that is not a static fact: see
        `_untimed_rows`)
    out_of_range: 'fail' | 'drop' | 'clip' (numeric_value outside `ranges` for its code)
    unknown_code: 'unknown' (map to <unk>, counted) | 'drop' | 'fail' (codes absent from a fitted schema)
    missing_required: 'fail' | 'drop' (null subject_id, null or blank code)
    before_birth: 'fail' | 'drop' (timed events before their subject's MEDS_BIRTH: a negative age)
    """

    duplicates: Literal["fail", "drop"] = "drop"
    unsorted: Literal["fail", "sort"] = "sort"
    bad_time: Literal["fail", "drop"] = "fail"
    out_of_range: Literal["fail", "drop", "clip"] = "fail"
    unknown_code: Literal["unknown", "drop", "fail"] = "unknown"
    missing_required: Literal["fail", "drop"] = "fail"
    before_birth: Literal["fail", "drop"] = "fail"
    ranges: dict[str, tuple[float, float]] | None = None  # code -> (low, high); default: vitals ranges


@dataclass
class Accounting:
    """events_in = events_used + sum(dropped.values()); repaired counts rows changed but kept."""

    events_in: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    label_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    # whether the events' times were time-zone-aware (converted to naive UTC): the other tables must agree
    time_zone_aware: bool = False

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
        lines = [
            f"events in: {self.events_in}",
            f"events used: {self.events_used}",
            f"events dropped: {self.events_dropped}",
        ]
        lines += [f"  dropped, {k}: {v}" for k, v in sorted(self.dropped.items())]
        lines += [f"  repaired (kept), {k}: {v}" for k, v in sorted(self.repaired.items())]
        for task, c in sorted(self.label_rows.items()):
            lines.append(f"  labels {task}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


REQUIRED = {"subject_id": "integer", "time": "datetime (null for static facts)", "code": "string"}
BIRTH_CODE = "MEDS_BIRTH"
# Units a numeric time column may be read in (time since 1970-01-01 UTC), when the caller names one.
TIME_UNITS = ("s", "ms", "us", "ns")
INT64_MAX = np.iinfo(np.int64).max


def validate_events(
    df: pd.DataFrame, policy: ValidationPolicy, acc: Accounting, time_unit: str | None = None
) -> pd.DataFrame:
    """Return a cleaned copy of a MEDS event table (subject_id int64, time datetime64[us], code str, ...).

    time_unit: how to read a numeric `time` column (see `parse_times`); None refuses one.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"events: expected a pandas DataFrame, got {type(df).__name__}")
    acc.events_in += len(df)
    for col in REQUIRED:
        if col not in df.columns:
            raise DataValidationError(
                col, f"missing; a MEDS event table needs {list(REQUIRED)} (got columns {list(df.columns)})"
            )
    df = df.copy()
    df["subject_id"] = integer_ids(df["subject_id"], "subject_id", df)
    df = _required_not_null(df, "subject_id", policy, acc)
    df["subject_id"] = df["subject_id"].astype(np.int64)
    df = _codes(df, policy, acc)

    # time: datetime; null only on static facts; unparseable is an error or a counted drop
    parsed, bad, converted = parse_times(df["time"], "time", time_unit, df)
    acc.time_zone_aware = converted
    if converted:
        acc.notes.append("time: timezone-aware input converted to naive UTC")
    if bad.any():
        if policy.bad_time == "fail":
            raise DataValidationError("time", "unparseable times", df[bad], int(bad.sum()))
        acc.drop("time unparseable", int(bad.sum()))
        df, parsed = df[~bad], parsed[~bad]
    df["time"] = parsed
    df = _untimed_rows(df, policy, acc)

    if "numeric_value" in df.columns:
        nv = df["numeric_value"]
        if not pd.api.types.is_numeric_dtype(nv):
            num = pd.to_numeric(nv, errors="coerce")
            bad = num.isna() & nv.notna()
            if bad.any():
                raise DataValidationError(
                    "numeric_value", f"expected numbers, got dtype {nv.dtype}", df[bad], int(bad.sum())
                )
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
            raise DataValidationError(
                "(all columns)", "duplicate events", df[_duplicated(df, keep=False)], int(dup.sum())
            )
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
            raise DataValidationError(
                "time",
                "events not sorted by time within a subject (null times first), or a subject's events not contiguous",
                df.iloc[ctx],
                int(bad.sum()),
            )
        order = np.lexsort((tt, s))
        df = df.iloc[order]
        acc.repair("events re-sorted by subject_id, time", int(bad.sum()))
    df = _before_birth(df.reset_index(drop=True), policy, acc)
    return df.reset_index(drop=True)


def integer_ids(ids: pd.Series, column: str, frame: pd.DataFrame) -> pd.Series:
    """`ids` as nullable Int64, one to one with the input values, or DataValidationError naming `column`.

    Accepted: integer dtypes within int64, integral finite floats, object columns of integers. Refused, since
    each would merge or wrap ids silently: strings ("1" and "001" would be one subject), fractional floats
    (1.2 and 1.7 would be one id), booleans, and integers outside the int64 range (uint64 above 2**63 - 1).
    `frame` supplies the offending rows shown in the error.
    """

    def refuse(problem, bad):
        bad = np.asarray(bad, dtype=bool)
        raise DataValidationError(column, problem, frame[bad], int(bad.sum()))

    kind = pd.api.types.infer_dtype(ids, skipna=True)
    if pd.api.types.is_bool_dtype(ids) or kind == "boolean":
        refuse(f"expected integer ids, got booleans (dtype {ids.dtype})", ids.notna())
    if kind in ("floating", "mixed-integer-float") or pd.api.types.is_float_dtype(ids):
        f = pd.to_numeric(ids, errors="coerce").astype("float64")
        bad = f.notna() & ~(np.isfinite(f) & (f == np.floor(f)))
        if bad.any():
            refuse("expected integer ids, got fractional or infinite values", bad)
        big = (f >= 2.0**63) | (f < -(2.0**63))
        if big.any():
            refuse("ids outside the int64 range", big)
        return f.astype("Int64")
    if pd.api.types.is_unsigned_integer_dtype(ids):
        big = ids.notna().to_numpy(bool) & (ids.fillna(0).to_numpy(np.uint64) > np.uint64(INT64_MAX))
        if big.any():
            refuse("ids above the int64 range (they would wrap to negative ids)", big)
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype("Int64")
    is_int = (
        ids.map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)), na_action="ignore")
        .fillna(True)
        .astype(bool)
    )
    if not is_int.all():
        refuse(
            f"expected integer ids (MEDS int64), got {kind} values (dtype {ids.dtype}); map them to integers "
            f"one to one before connecting (strings such as '1' and '001' are not read as numbers)",
            ~is_int,
        )
    big = ids.map(lambda v: not -INT64_MAX - 1 <= v <= INT64_MAX, na_action="ignore").fillna(False).astype(bool)
    if big.any():
        refuse("ids outside the int64 range", big)
    return ids.astype("Int64")


def parse_times(
    t: pd.Series, column: str, time_unit: str | None, frame: pd.DataFrame
) -> tuple[pd.Series, np.ndarray, bool]:
    """`t` as naive datetime64[us]; (times, unparseable mask, whether time-zone-aware input was converted).

    Accepted: datetime64 columns, strings and datetime objects pandas parses. Time-zone-aware times are
    converted to UTC and made naive (so differences between events are real elapsed time; hour_of_day and
    day_of_week are then UTC ones). Refused with DataValidationError naming `column`: numbers unless
    `time_unit` says what they count since 1970-01-01 UTC (an integer column read as nanoseconds turned hours
    into 1e-9 h), booleans, durations, and times with mixed UTC offsets or a mix of naive and aware times (no
    single rule makes those comparable; convert them to UTC first). Null stays null (NaT).
    """
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit: expected one of {TIME_UNITS} or None, got {time_unit!r}")
    kind = pd.api.types.infer_dtype(t, skipna=True)
    if pd.api.types.is_datetime64_any_dtype(t):
        parsed = t
    elif (
        pd.api.types.is_bool_dtype(t)
        or kind in ("boolean", "timedelta", "timedelta64")
        or pd.api.types.is_timedelta64_dtype(t)
    ):
        raise DataValidationError(
            column,
            f"expected datetime64 (or date strings), got {kind} values (dtype {t.dtype})",
            frame[t.notna().to_numpy(bool)],
            int(t.notna().sum()),
        )
    elif kind in ("integer", "floating", "mixed-integer-float", "decimal") or pd.api.types.is_numeric_dtype(t):
        if time_unit is None:
            raise DataValidationError(
                column,
                f"expected datetime64, got numbers (dtype {t.dtype}); pass "
                f"time_unit= one of {TIME_UNITS} to read them as time since 1970-01-01 UTC",
                frame[t.notna().to_numpy(bool)],
                int(t.notna().sum()),
            )
        num = pd.to_numeric(t, errors="coerce")
        parsed = pd.to_datetime(
            num if pd.api.types.is_integer_dtype(num) else num.astype("float64"), unit=time_unit, errors="coerce"
        )
    elif kind == "empty":
        parsed = pd.Series(pd.NaT, index=t.index, dtype="datetime64[us]")
    else:
        parsed = _parse_time_strings(t, column, kind, frame)
    converted = getattr(parsed.dt, "tz", None) is not None
    if converted:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    bad = parsed.isna() & t.notna()
    if t.dtype == object or pd.api.types.is_string_dtype(t):  # blank strings are null, not unparseable
        bad &= t.astype(str).str.strip() != ""
    bad = bad.to_numpy(bool)
    return parsed, bad, converted


def require_time_convention(aware: bool, events_aware: bool, column: str, table: str, rows: pd.DataFrame) -> None:
    """Times of another table (labels, the status feed) must be time-zone-aware exactly when the events' are.

    Aware times are converted to UTC, naive ones kept as they are, so naive local times beside aware events (or
    the reverse) would be shifted by the zone's offset: labels matching no event, status rows read hours too
    early or, worse, hours after the event they describe.
    """
    if aware != events_aware:
        kind = {True: "time-zone-aware", False: "naive"}
        raise DataValidationError(
            column,
            f"{table}: times are {kind[aware]} but the events' time is {kind[events_aware]}; give every "
            f"table's times in one convention (e.g. all converted to UTC)",
            rows,
        )


def _parse_time_strings(t: pd.Series, column: str, kind: str, frame: pd.DataFrame) -> pd.Series:
    """Strings and datetime objects (object or string dtype) -> datetimes, refusing mixed time zones."""
    values = t[t.notna()]
    if t.dtype == object:
        numeric = values.map(lambda v: isinstance(v, (int, float, np.number, bool)))
        if numeric.any():
            raise DataValidationError(
                column,
                "expected datetimes or date strings, got numbers mixed in; pass a datetime64 column",
                frame.loc[numeric[numeric].index],
                int(numeric.sum()),
            )
        zones = values[values.map(lambda v: hasattr(v, "tzinfo"))].map(lambda v: str(v.tzinfo))
        if zones.nunique() > 1:
            first = zones.iloc[0]
            mixed = zones != first
            raise DataValidationError(
                column,
                f"mixed time zones or UTC offsets ({sorted(zones.unique())}); convert the times to UTC first",
                frame.loc[mixed[mixed].index],
                int(mixed.sum()),
            )
    try:
        return pd.to_datetime(t, errors="coerce", format="mixed")
    except ValueError as e:  # pandas refuses strings with several UTC offsets even under errors="coerce"
        raise DataValidationError(
            column,
            f"mixed UTC offsets or naive and offset times together ({e}); convert the times to UTC first",
            frame.head(),
        ) from None


def _codes(df: pd.DataFrame, policy: ValidationPolicy, acc: Accounting) -> pd.DataFrame:
    """code: strings, not null and not blank (a blank code names nothing). A categorical column of strings (what
    pandas reads from a dictionary-encoded parquet column) is its strings."""
    code = df["code"]
    if isinstance(code.dtype, pd.CategoricalDtype):
        code = df["code"] = code.astype(object)
    kind = pd.api.types.infer_dtype(code, skipna=True)
    if not (pd.api.types.is_string_dtype(code) or pd.api.types.is_object_dtype(code)) or kind not in (
        "string",
        "empty",
    ):
        not_str = code.notna() & ~code.map(lambda v: isinstance(v, str), na_action="ignore").fillna(False).astype(bool)
        raise DataValidationError(
            "code",
            f"expected string codes, got {kind} values (dtype {code.dtype})",
            df[not_str.to_numpy(bool)],
            int(not_str.sum()),
        )
    blank = (code.str.strip() == "").fillna(False).astype(bool)
    if blank.any():
        df["code"] = code.where(~blank, None)
    df = _required_not_null(df, "code", policy, acc, "null or blank" if blank.any() else "null")
    df["code"] = df["code"].astype(str)
    return df


def _untimed_rows(df: pd.DataFrame, policy: ValidationPolicy, acc: Accounting) -> pd.DataFrame:
    """A null time is allowed only on a static fact: a row whose code never occurs with a time in this data
    and whose stage (where the column exists) is empty or "static". A vital sign without its time would
    otherwise become a fact about the subject, placed at the head of every pathway."""
    untimed = df["time"].isna().to_numpy()
    if not untimed.any():
        return df
    code_idx, _ = pd.factorize(df["code"])
    timed_code = np.zeros(code_idx.max() + 1, dtype=bool)
    timed_code[code_idx[~untimed]] = True
    bad = untimed & timed_code[code_idx]
    if "stage" in df.columns:
        stage = df["stage"]
        bad |= untimed & (stage.notna() & (stage.astype(str) != "static")).to_numpy(bool)
    bad &= (df["code"] != BIRTH_CODE).to_numpy()
    if not bad.any():
        return df
    if policy.bad_time == "fail":
        raise DataValidationError(
            "time",
            "null time on an event that is not a static fact (its code occurs with "
            "a time elsewhere, or its stage is not 'static'); only static facts may be "
            "untimed",
            df[bad],
            int(bad.sum()),
        )
    acc.drop("null time on a timed event", int(bad.sum()))
    return df[~bad]


def _before_birth(df: pd.DataFrame, policy: ValidationPolicy, acc: Accounting) -> pd.DataFrame:
    """Timed events before the subject's MEDS_BIRTH (a negative age) fail or are dropped and counted; several
    different birth times for one subject fail."""
    birth = (df["code"] == BIRTH_CODE).to_numpy() & df["time"].notna().to_numpy()
    if not birth.any():
        return df
    births = df.loc[birth, ["subject_id", "time"]].drop_duplicates().sort_values("subject_id", kind="stable")
    twice = births["subject_id"].duplicated(keep=False)
    if twice.any():
        rows = df[birth & df["subject_id"].isin(births.loc[twice, "subject_id"]).to_numpy()]
        raise DataValidationError("time", "several different MEDS_BIRTH times for one subject", rows, len(rows))
    b_subject = births["subject_id"].to_numpy(np.int64)
    b_time = births["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    subject = df["subject_id"].to_numpy(np.int64)
    at = np.minimum(np.searchsorted(b_subject, subject), b_subject.size - 1)
    time = df["time"].to_numpy().astype("datetime64[us]")
    timed = ~np.isnat(time)
    bad = timed & (b_subject[at] == subject) & (time.astype(np.int64) < b_time[at])
    if not bad.any():
        return df
    if policy.before_birth == "fail":
        raise DataValidationError(
            "time",
            "events before the subject's MEDS_BIRTH (negative age)",
            df[bad].assign(birth=b_time[at][bad].astype("datetime64[us]")),
            int(bad.sum()),
        )
    acc.drop("event before the subject's MEDS_BIRTH", int(bad.sum()))
    return df[~bad]


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


def _required_not_null(df, col, policy, acc, what="null"):
    bad = df[col].isna()
    if bad.any():
        if policy.missing_required == "fail":
            raise DataValidationError(col, f"{what} values (MEDS requires it non-null)", df[bad], int(bad.sum()))
        acc.drop(f"{col} {what}", int(bad.sum()))
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
