"""`connect_hamburg_data`: any MEDS dataset (folder or pandas) -> validated, split, encoded pathways.

Flow: read -> validate (validate.py, explicit policies, every drop counted) -> pathways (pathway_id column,
else one pathway per subject) with the subject's static facts at the head of each -> splits (by subject,
temporal, or crisis hold-out; a subject is never in two splits) -> fit `DatasetSchema` on the training split
-> encode all events as flat numpy arrays -> labels joined by (subject_id, prediction_time) ->
typed batches for torch (`HamburgData.batch`, `HamburgData.dataloader`; torch is imported only there).

Dimension letters: N events (flat, pathway after pathway), P pathways, C categorical fields, F numeric features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hamburg_mamba.data import hospitals, system_state
from hamburg_mamba.data.schema import (
    CATEGORICAL_FIELDS,
    NUMERIC_FEATURES,
    RESERVED_TOKENS,
    TASKS,
    UNKNOWN_INDEX,
    BoundedRank,
    DatasetSchema,
    NumericStats,
    TaskSpec,
)
from hamburg_mamba.data.validate import (
    Accounting,
    DataValidationError,
    ValidationPolicy,
    integer_ids,
    parse_times,
    require_time_convention,
    validate_events,
)

SPLITS = ("train", "tuning", "held_out")
BIRTH_CODE = "MEDS_BIRTH"
US_PER_HOUR = 3.6e9
DAYS_PER_YEAR = 365.25
# EncodedPathways.event_site_id (and PathwayBatch.event_site_id) where no hospital is known yet
NO_SITE = -1


@dataclass
class EncodedPathways:
    """Flat per-event arrays in pathway order; pathway p owns rows offsets[p]:offsets[p+1]."""

    offsets: np.ndarray  # (P+1,) int64
    categorical: np.ndarray  # (N, C) int32, columns in schema.categorical_vocab order
    numeric: np.ndarray  # (N, F) float32, 0 where missing
    numeric_missing: np.ndarray  # (N, F) bool
    time_since_prev_h: np.ndarray  # (N,) float32
    time_since_start_h: np.ndarray  # (N,) float32
    # (N,) int64 exact time of each event in microseconds since 1970 (static rows: their pathway's start). The
    # float32 offsets above are model inputs; anything that compares an event with a cut-off or an hour uses this.
    time_us: np.ndarray
    hour_of_day: np.ndarray  # (N,) float32
    day_of_week: np.ndarray  # (N,) int8
    event_labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # task -> (N,) value, mask, oracle
    pathway_labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # task -> (P,) value, mask, oracle
    # (N,) int64 vocabulary index of the hospital the event's record holds at its time: its own `hospital`, else
    # the latest earlier one of its pathway; UNKNOWN_INDEX before the first (an ambulance before the departure)
    # and on static facts. There is no pathway-level hospital: the destination is known only from the departure
    # on, so one per pathway would hand every earlier event its future.
    event_hospital_id: np.ndarray
    # (N,) object: that hospital's name as recorded, None where unknown; a hospital outside the training
    # vocabulary (UNKNOWN_INDEX above) keeps its name, so hospital-level evaluation can score it as itself
    event_hospital_name: np.ndarray
    # (N,) int64 row of `sites` of that hospital, NO_SITE where none is known. Not a model input: it tells apart
    # the hospitals that event_hospital_id merges into UNKNOWN_INDEX (all of a city the model never saw)
    event_site_id: np.ndarray
    # the data set's hospitals, one row per site id in order of their first event: hospital (the name as a
    # string), vocab_id (index in the training vocabulary, UNKNOWN_INDEX outside it), in_training_vocab (bool)
    sites: pd.DataFrame
    subject_id: np.ndarray  # (P,) int64
    pathway_id: np.ndarray  # (P,) int64
    split: np.ndarray  # (P,) object

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class HamburgData:
    """The connector's result: schema, encoded pathways, splits and the accounting of every event."""

    schema: DatasetSchema
    encoded: EncodedPathways
    splits: pd.DataFrame  # subject_id, split
    accounting: Accounting
    pathways: pd.DataFrame  # one row per pathway: ids, split, start, end, n_events
    # status feature or hospital descriptor x split -> share of the split's events with that feature present whose
    # raw value lies outside the training range (the schema's `BoundedRank`), NaN where the split has none present
    status_out_of_range: pd.DataFrame = field(default_factory=pd.DataFrame)
    extra: dict = field(default_factory=dict)

    def report(self) -> str:
        lines = [self.accounting.report()]
        if not self.status_out_of_range.empty:
            lines.append(
                "status features and hospital descriptors outside the training range (share of events with "
                "the feature present):"
            )
            lines += [
                "  " + line for line in self.status_out_of_range.to_string(float_format="{:.4f}".format).splitlines()
            ]
        return "\n".join(lines)

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        return np.nonzero(self.encoded.split == split)[0]

    def batch(self, indices, device=None):
        """PathwayBatch of the given pathway indices (torch tensors; right padding to the longest)."""
        from hamburg_mamba.data.batch import collate

        b = collate(self.encoded, np.asarray(indices, dtype=np.int64), self.schema)
        return b if device is None else b.to(device)

    def dataloader(
        self,
        split: str,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        bucket_by_length: bool = False,
        num_workers: int = 0,
        drop_last: bool = False,
    ):
        """torch DataLoader of PathwayBatch; deterministic for a given seed (and epoch via sampler.set_epoch)."""
        from hamburg_mamba.data.batch import make_dataloader

        return make_dataloader(
            self, self.indices(split), batch_size, shuffle, seed, bucket_by_length, num_workers, drop_last
        )


def connect_hamburg_data(
    source: str | Path | pd.DataFrame,
    *,
    labels: dict[str, pd.DataFrame] | None = None,
    oracle: dict[str, pd.DataFrame] | None = None,
    split: Literal["auto", "file", "subject", "temporal", "crisis"] = "auto",
    splits: pd.DataFrame | None = None,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    temporal_cutoffs: tuple[str, str] | None = None,
    holdout_window: tuple[str, str] | None = None,
    seed: int = 0,
    policy: ValidationPolicy | None = None,
    schema: DatasetSchema | None = None,
    max_len: int | None = None,
    truncation: Literal["fail", "keep_last"] = "fail",
    tasks: dict[str, TaskSpec] | None = None,
    hospital_status: pd.DataFrame | None = None,
    status_columns: Sequence[str] | None = None,
    status_lag_h: float = system_state.DEFAULT_LAG_H,
    status_max_age_h: float = system_state.DEFAULT_MAX_AGE_H,
    hospital_table: pd.DataFrame | None = None,
    hospital_columns: Sequence[str] | None = None,
    time_unit: Literal["s", "ms", "us", "ns"] | None = None,
) -> HamburgData:
    """Connect a MEDS dataset folder or a pandas event table.

    source: MEDS root folder (data/<split>/*.parquet, optional labels/<task>/*.parquet, oracle/, metadata/) or a
        DataFrame with subject_id, time, code [, numeric_value, text_value, pathway_id, hospital, stage, unit,
        triage_group, arrival_mode].
    labels / oracle: task -> MEDS label table (override or supply what the folder lacks).
    split: "file" uses metadata/subject_splits.parquet or `splits`; "subject" random by subject (seed,
        split_fractions); "temporal" by each subject's first pathway start against `temporal_cutoffs`
        (train < c0 <= tuning < c1 <= held_out); "crisis" puts every subject with a pathway starting inside
        `holdout_window` (e.g. the whole heat wave) in held_out; "auto" = "file" when a split table exists,
        else "subject".
    schema: a DatasetSchema fitted before (inference): vocabularies and normalisation are reused, not refitted;
        unknown codes follow policy.unknown_code.
    max_len: longest pathway kept; longer ones fail (truncation="fail") or keep the static head and the last
        events (truncation="keep_last"), the cut events counted as dropped.
    hospital_status: hourly status per hospital (columns hospital, time and numeric status columns; a MEDS
        folder's system/hospital_hourly.parquet when None), attached to every event as system-state features
        (`hamburg_mamba.data.system_state`): status_columns picks the columns (None: the synthetic Hamburg's
        observable ones; () switches the feed off), available status_lag_h after their `time`, unused when
        older than status_max_age_h. With a fitted `schema`, its columns, lag and age are used.
    hospital_table: one row per hospital (column hospital and numeric descriptor columns; a MEDS folder's
        metadata/hospitals.parquet when None), attached to every event as the descriptors of the hospital known
        at it (`hamburg_mamba.data.hospitals`): hospital_columns picks the columns (None: ed_visits_per_year,
        beds, care_level where present; () switches them off). With a fitted `schema`, its columns are used and
        the table may hold other hospitals: an unseen hospital gets its own descriptors.
    time_unit: what numeric time columns (events' `time`, labels' `prediction_time`, the status feed's `time`)
        count since 1970-01-01 UTC; None (default) refuses numeric times, which would otherwise be read as
        nanoseconds. Time-zone-aware times are converted to naive UTC; mixed UTC offsets are refused.
    """
    _check_arguments(split_fractions, temporal_cutoffs, holdout_window, max_len, truncation)
    policy = policy or ValidationPolicy()
    tasks = dict(TASKS if tasks is None else tasks)
    acc = Accounting()
    file_splits = None
    if isinstance(source, pd.DataFrame):
        events = source
    else:
        from hamburg_mamba.data.meds_io import read_meds

        blob = read_meds(source)
        events = blob["events"].drop(columns=["shard"])
        file_splits = blob["splits"]
        labels = {**blob["labels"], **(labels or {})}
        oracle = {**blob["oracle"], **(oracle or {})}
        if hospital_status is None:
            hospital_status = blob["system"].get("hospital_hourly")
        if hospital_table is None:
            hospital_table = blob["hospitals"]
    if splits is not None:
        file_splits = splits

    ev = validate_events(events, policy, acc, time_unit)
    labels = _label_tables(labels or {}, "labels", time_unit, acc.time_zone_aware)
    oracle = _label_tables(oracle or {}, "oracle", time_unit, acc.time_zone_aware)
    ev, pathway_keys = _assign_pathways(ev, acc)
    if schema is not None:
        ev = _unknown_codes(ev, schema, policy, acc)

    pw = _pathway_table(ev)
    if pw.empty:
        # Nothing to lay out: a schema fitted on no events and zero pathways would pass as a valid, empty data set.
        raise DataValidationError(
            "time",
            f"no timed events to connect ({len(events)} rows in, {len(ev)} after validation; "
            f"dropped: {dict(acc.dropped)})",
        )
    if pathway_keys is not None:
        pw["pathway_key"] = pathway_keys[pw["pathway_id"].to_numpy()]
    split_table = _make_splits(pw, split, file_splits, split_fractions, temporal_cutoffs, holdout_window, seed, acc)
    pw = pw.merge(split_table, on="subject_id", how="left", validate="many_to_one")
    if pw["split"].isna().any():
        raise DataValidationError(
            "subject_id", "subjects missing from the split table", pw[pw["split"].isna()], int(pw["split"].isna().sum())
        )

    rows, owner = _layout(ev, pw)  # event row order and pathway of each laid-out row
    rows, owner = _truncate(rows, owner, ev, pw, max_len, truncation, acc)
    present = {t: s for t, s in tasks.items() if t in labels and len(labels[t])}
    missing = tuple(t for t in tasks if t not in present)
    if missing:
        acc.notes.append(f"tasks without labels in this data (reported, not invented): {list(missing)}")
    cols = _EventColumns.of(ev)
    if schema is None:
        columns = (
            ()
            if hospital_status is None or (status_columns is not None and not len(status_columns))
            else system_state.resolve_columns(hospital_status, status_columns)
        )
        status = _status_features(hospital_status, columns, cols, rows, status_lag_h, status_max_age_h, acc, time_unit)
        schema = _fit_schema(ev, cols, pw, rows, owner, present, missing, acc)
        schema.max_len = max_len
        _fit_status(schema, columns, status, pw, owner, status_lag_h, status_max_age_h, acc)
        described = (
            ()
            if hospital_table is None or (hospital_columns is not None and not len(hospital_columns))
            else hospitals.resolve_columns(hospital_table, hospital_columns)
        )
        descriptors = _hospital_descriptors(hospital_table, described, cols, rows, acc)
        _fit_hospitals(schema, described, descriptors, pw, owner, acc)
    else:
        if schema.status_columns and hospital_status is None:
            acc.notes.append(
                f"the schema expects hospital status columns {list(schema.status_columns)} but the "
                f"data has no status table: every system-state feature is missing"
            )
        if schema.hospital_columns and hospital_table is None:
            acc.notes.append(
                f"the schema expects hospital descriptors {list(schema.hospital_columns)} but the "
                f"data has no hospital table: every descriptor is missing"
            )
        status = _status_features(
            hospital_status,
            schema.status_columns,
            cols,
            rows,
            schema.status_lag_h,
            schema.status_max_age_h,
            acc,
            time_unit,
        )
        descriptors = _hospital_descriptors(hospital_table, schema.hospital_columns, cols, rows, acc)
    context = np.concatenate([status, descriptors], axis=1)  # (N, F - 2) raw inputs after NUMERIC_FEATURES
    encoded = _encode(ev, cols, pw, rows, owner, schema, labels, oracle, acc, context)
    out_of_range = _status_out_of_range(schema, context, pw["split"].to_numpy()[owner])
    # Static facts of subjects without any timed event reach no pathway: counted, not silently lost.
    laid = np.zeros(ev.shape[0], bool)
    laid[rows] = True
    acc.drop("static fact of a subject without timed events", int((ev["_static"].to_numpy() & ~laid).sum()))
    acc.notes.append(
        f"static facts are repeated at the head of every pathway of their subject "
        f"({rows.size - int(laid.sum())} repeated copies, not counted as events in)"
    )
    if int(laid.sum()) != acc.events_used:
        raise AssertionError(f"accounting: {int(laid.sum())} events laid out but {acc.events_used} counted as used")
    return HamburgData(
        schema=schema,
        encoded=encoded,
        splits=split_table,
        accounting=acc,
        pathways=pw,
        status_out_of_range=out_of_range,
    )


# ----------------------------------------------------------------------------------------------------------


def _assign_pathways(ev: pd.DataFrame, acc: Accounting) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Pathway of each event (`_pathway`, -1 on static rows) and, for non-integer pathway ids, the original id
    of each integer code (None for integer ids, which are kept as they are)."""
    static = ev["time"].isna() | (ev["code"] == BIRTH_CODE)
    if "stage" in ev.columns:
        static |= (ev["stage"] == "static").fillna(False).to_numpy(bool)
    ev["_static"] = np.asarray(static, dtype=bool)
    keys = None
    if "pathway_id" in ev.columns:
        pid, keys = _pathway_ids(ev, acc)
        lost = (~ev["_static"]) & pid.isna()
        if lost.any():
            acc.drop("timed event without pathway_id", int(lost.sum()))
            ev = ev[~lost.to_numpy()].reset_index(drop=True)
            pid = pid[~lost.to_numpy()].reset_index(drop=True)
        ev["_pathway"] = pid.fillna(-1).astype(np.int64).to_numpy()
    else:
        ev["_pathway"] = np.where(ev["_static"], -1, ev["subject_id"].to_numpy())
        acc.notes.append("no pathway_id column: each subject's timed events form one pathway")
    g = ev.loc[~ev["_static"], ["_pathway", "subject_id"]].groupby("_pathway")["subject_id"]
    shared = g.min() != g.max()  # several subjects in one pathway (min/max: far cheaper than nunique)
    if shared.any():
        bad = ev[ev["_pathway"].isin(shared[shared].index) & ~ev["_static"]]
        raise DataValidationError("pathway_id", "one pathway_id used by several subjects", bad, len(bad))
    return ev, keys


def _pathway_ids(ev: pd.DataFrame, acc: Accounting) -> tuple[pd.Series, np.ndarray | None]:
    """pathway_id as nullable integers, one to one with the input ids.

    Integer ids are kept (fractional, boolean and out-of-range ids are refused by `integer_ids`); string ids
    (encounter numbers such as "V0012") are factorised, so "1" and "001" stay two pathways.
    """
    raw = ev["pathway_id"]
    kind = pd.api.types.infer_dtype(raw, skipna=True)
    if not (pd.api.types.is_string_dtype(raw) or kind in ("string", "mixed", "mixed-integer")):
        return integer_ids(raw, "pathway_id", ev), None
    codes, keys = pd.factorize(raw)
    acc.notes.append(
        f"pathway_id: {len(keys)} non-integer ids numbered 0..{len(keys) - 1} in order of first "
        f"appearance (pathways.pathway_key holds the original ids)"
    )
    return pd.Series(codes, index=raw.index, dtype="Int64").where(codes >= 0), np.asarray(keys, dtype=object)


def _unknown_codes(ev, schema, policy, acc):
    known = schema.lookup["code"]
    unk = ~ev["code"].isin(list(known.keys())).to_numpy()
    if unk.any():
        if policy.unknown_code == "fail":
            raise DataValidationError("code", "codes unknown to the fitted schema", ev[unk], int(unk.sum()))
        if policy.unknown_code == "drop":
            acc.drop("code unknown to the fitted schema", int(unk.sum()))
            return ev[~unk].reset_index(drop=True)
        acc.repair("code unknown to the fitted schema, encoded as <unk>", int(unk.sum()))
    return ev


def _pathway_table(ev: pd.DataFrame) -> pd.DataFrame:
    timed_mask = ~ev["_static"].to_numpy()
    timed = ev[["_pathway", "subject_id", "time"]][timed_mask]  # numeric columns only: no string copies
    g = timed.groupby("_pathway", sort=True)
    pw = pd.DataFrame(
        {
            "subject_id": g["subject_id"].first(),
            "start": g["time"].min(),
            "end": g["time"].max(),
            "n_timed": g.size(),
        }
    )
    pw = pw.reset_index().rename(columns={"_pathway": "pathway_id"})
    return pw.sort_values(["subject_id", "start", "pathway_id"], kind="stable").reset_index(drop=True)


def _check_arguments(fractions, cutoffs, window, max_len, truncation) -> None:
    """Arguments that otherwise gave a silently wrong split or layout: fractions summing to 1.5 (a held-out
    split of one subject), reversed cut-offs or window (no tuning or no held-out split), an unknown truncation
    (read as keep_last) or a max_len < 1 (every event dropped)."""
    if truncation not in ("fail", "keep_last"):
        raise ValueError(f"truncation: expected 'fail' or 'keep_last', got {truncation!r}")
    if max_len is not None and not (isinstance(max_len, (int, np.integer)) and max_len >= 1):
        raise ValueError(f"max_len: expected None or an integer >= 1, got {max_len!r}")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or not (np.isfinite(f).all() and (f >= 0).all() and abs(f.sum() - 1.0) < 1e-9):
        raise ValueError(
            f"split_fractions: expected 3 fractions >= 0 summing to 1 (train, tuning, held_out), got {fractions!r}"
        )
    for name, pair in (("temporal_cutoffs", cutoffs), ("holdout_window", window)):
        if pair is None:
            continue
        try:
            lo, hi = (pd.Timestamp(t) for t in pair)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: expected two dates, got {pair!r} ({e})") from None
        if not lo <= hi:
            raise ValueError(f"{name}: expected ({lo}, {hi}) in time order, got the second before the first")


def _make_splits(pw, split, file_splits, fractions, cutoffs, window, seed, acc) -> pd.DataFrame:
    first = pw.groupby("subject_id", sort=True)["start"].min()
    subjects = first.index.to_numpy()
    if split == "auto":
        split = "file" if file_splits is not None else "subject"
    if split == "file":
        if file_splits is None:
            raise ValueError("split='file' needs metadata/subject_splits.parquet or the `splits` argument")
        out = file_splits[["subject_id", "split"]].copy()
        out["subject_id"] = integer_ids(out["subject_id"], "subject_id", out)
        if out["subject_id"].isna().any():
            raise DataValidationError(
                "subject_id",
                "split table: null subject ids",
                out[out["subject_id"].isna()],
                int(out["subject_id"].isna().sum()),
            )
        out["subject_id"] = out["subject_id"].astype(np.int64)
        dup = out["subject_id"].duplicated(keep=False)
        if dup.any():
            raise DataValidationError("subject_id", "subject in more than one split", out[dup], int(dup.sum()))
        unknown = ~out["split"].isin(SPLITS)
        if unknown.any():
            acc.notes.append(
                f"split names other than {SPLITS} ignored for batching: {sorted(out.loc[unknown, 'split'].unique())}"
            )
        return out[out["subject_id"].isin(subjects)].reset_index(drop=True)
    if split == "subject":
        from hamburg_mamba.data.meds_io import assign_splits

        return assign_splits(subjects, seed, fractions)
    if split == "temporal":
        if cutoffs is None:
            raise ValueError("split='temporal' needs temporal_cutoffs=(tuning_from, held_out_from)")
        c0, c1 = pd.Timestamp(cutoffs[0]), pd.Timestamp(cutoffs[1])
        lab = np.where(first < c0, "train", np.where(first < c1, "tuning", "held_out"))
        acc.notes.append("temporal split by each subject's first pathway start (a subject never spans splits)")
        return pd.DataFrame({"subject_id": subjects, "split": lab})
    if split == "crisis":
        if window is None:
            raise ValueError("split='crisis' needs holdout_window=(start, end), e.g. the heat wave")
        w0, w1 = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        inside = (pw["start"] >= w0) & (pw["start"] < w1)
        held = np.isin(subjects, pw.loc[inside, "subject_id"].unique())
        rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
        tune = (~held) & (rng.random(subjects.size) < fractions[1] / max(fractions[0] + fractions[1], 1e-9))
        lab = np.where(held, "held_out", np.where(tune, "tuning", "train"))
        acc.notes.append(f"crisis hold-out: {int(held.sum())} subjects with a pathway starting in [{w0}, {w1})")
        return pd.DataFrame({"subject_id": subjects, "split": lab})
    raise ValueError(f"split: expected auto, file, subject, temporal or crisis, got {split!r}")


def _layout(ev: pd.DataFrame, pw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order of the laid-out events: for each pathway, its subject's static rows, then its timed rows."""
    P = len(pw)
    prank = pd.Series(np.arange(P), index=pw["pathway_id"].to_numpy())
    static = ev["_static"].to_numpy()
    timed_rows = np.nonzero(~static)[0]
    t_owner = prank.reindex(ev["_pathway"].to_numpy()[timed_rows]).to_numpy()
    # static rows of each subject, repeated for each of its pathways
    s_rows = np.nonzero(static)[0]
    s_subj = ev["subject_id"].to_numpy()[s_rows]
    p_subj = pw["subject_id"].to_numpy()
    order = np.argsort(s_subj, kind="stable")
    s_rows, s_subj = s_rows[order], s_subj[order]
    lo = np.searchsorted(s_subj, p_subj, "left")
    hi = np.searchsorted(s_subj, p_subj, "right")
    cnt = hi - lo
    s_owner = np.repeat(np.arange(P), cnt)
    k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    s_take = s_rows[np.repeat(lo, cnt) + k]
    rows = np.concatenate([s_take, timed_rows])
    owner = np.concatenate([s_owner, t_owner])
    head = np.concatenate([np.zeros(s_take.size, np.int8), np.ones(timed_rows.size, np.int8)])
    o = np.lexsort((rows, head, owner))  # input order is already time-sorted within a subject
    return rows[o], owner[o]


def _trunc_reason(max_len):
    return f"truncated (max_len={max_len}, keep_last)"


def _truncate(rows, owner, ev, pw, max_len, truncation, acc):
    if max_len is None:
        return rows, owner
    lengths = np.bincount(owner, minlength=len(pw))
    long = lengths > max_len
    if not long.any():
        return rows, owner
    if truncation == "fail":
        raise DataValidationError(
            "pathway_id",
            f"{int(long.sum())} pathways longer than max_len={max_len}; "
            "pass truncation='keep_last' to cut them (counted)",
            pw.assign(n_events=lengths)[long],
            int(long.sum()),
        )
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(rows.size) - start[owner]
    static = ev["_static"].to_numpy()[rows]
    n_static = np.bincount(owner, weights=static, minlength=len(pw)).astype(np.int64)
    keep_from = lengths - (max_len - np.minimum(n_static, max_len))
    keep = static & (pos < max_len) | (~static & (pos >= keep_from[owner]))
    acc.drop(_trunc_reason(max_len), int((~keep & ~static).sum()))
    return rows[keep], owner[keep]


@dataclass
class _EventColumns:
    """The validated event table as integer arrays, built once: every later step indexes these.

    Categorical fields are factorized (codes -1 where null, `tokens[c]` the value as a string, as the
    vocabulary stores it); (subject_id, time) of timed events becomes one dense key for the label joins.
    Per-row string work on 10 M events (lookups, pandas takes of the whole table, MultiIndex joins) was
    most of the connector's time before (docs/data.md, Performance).
    """

    fields: dict[str, tuple[np.ndarray, np.ndarray] | None]  # field -> ((N,) codes, (K,) tokens) or absent
    known_hospital: np.ndarray  # (N,) code in fields["hospital"] the record holds at the row's time; -1 unknown
    static: np.ndarray  # (N,) bool
    time_us: np.ndarray  # (N,) int64 microseconds since 1970; 0 for static rows
    numeric_value: np.ndarray | None  # (N,) float64, NaN where missing
    subjects: pd.Index  # distinct subject_id
    times: pd.Index  # distinct times (us) of timed events
    keys: pd.Index  # distinct (subject, time) keys of timed events, as subject code * len(times) + time code
    key_code: np.ndarray  # (N,) int64 position in `keys`; -1 for static rows

    @classmethod
    def of(cls, ev: pd.DataFrame) -> _EventColumns:
        static = ev["_static"].to_numpy()
        fields = {}
        for f in CATEGORICAL_FIELDS:
            if f == "stage" and "stage" not in ev.columns:
                fields[f] = (np.where(static, 0, -1), np.array(["static"], dtype=object))
            elif f not in ev.columns:
                fields[f] = None
            else:
                codes, uniq = pd.factorize(ev[f])
                tokens = pd.Series(np.asarray(uniq, dtype=object), dtype="object").astype(str).to_numpy(object)
                fields[f] = (codes.astype(np.int64), tokens)
        t = ev["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
        time_us = np.where(static, 0, t)
        nv = ev["numeric_value"].to_numpy(dtype=float, na_value=np.nan) if "numeric_value" in ev.columns else None
        # Validation left each subject's rows contiguous and its timed rows time-sorted, so equal subjects and
        # equal (subject, time) pairs are neighbours: runs give their codes without hashing 10 M rows.
        subject = ev["subject_id"].to_numpy(np.int64)
        s_code, s_uniq = _runs(subject)
        timed = np.nonzero(~static)[0]
        t_code, t_uniq = pd.factorize(time_us[timed])
        if len(s_uniq) and len(t_uniq) and len(s_uniq) > np.iinfo(np.int64).max // len(t_uniq):
            raise ValueError(f"label join: {len(s_uniq)} subjects x {len(t_uniq)} distinct times overflow int64 keys")
        k_code, k_uniq = _runs(s_code[timed] * len(t_uniq) + t_code)
        key_code = np.full(len(ev), -1, dtype=np.int64)
        key_code[timed] = k_code
        hospital = fields["hospital"]
        known = (
            np.full(len(ev), -1, dtype=np.int64)
            if hospital is None
            else _forward_fill(np.where(static, -1, hospital[0]), ev["_pathway"].to_numpy())
        )
        return cls(
            fields=fields,
            known_hospital=known,
            static=static,
            time_us=time_us,
            numeric_value=nv,
            subjects=pd.Index(s_uniq),
            times=pd.Index(t_uniq),
            keys=pd.Index(k_uniq),
            key_code=key_code,
        )

    def key_of(self, subject: np.ndarray, time_us: np.ndarray) -> np.ndarray:
        """Position in `keys` of each (subject_id, time) pair; -1 where no timed event has that pair."""
        si = self.subjects.get_indexer(subject)
        ti = self.times.get_indexer(time_us)
        ok = (si >= 0) & (ti >= 0)
        out = np.full(si.size, -1, dtype=np.int64)
        out[ok] = self.keys.get_indexer(si[ok].astype(np.int64) * len(self.times) + ti[ok])
        return out


def _forward_fill(codes: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(N,) each row's code, or where it is -1 the code of the latest earlier row (in row order) of its group
    with one; -1 before a group's first code. Rows of a group need not be contiguous (a subject's pathways may
    overlap in time); validation left each subject's rows in time order, so row order is time order."""
    order = np.lexsort((np.arange(codes.size), group))  # grouped, row order within a group
    c, g = codes[order], group[order]
    pos = np.arange(c.size)
    group_start = np.maximum.accumulate(np.where(np.r_[True, g[1:] != g[:-1]], pos, 0))
    last = np.maximum.accumulate(np.where(c >= 0, pos, -1))  # latest row with a code, up to each row
    filled = np.where(last >= group_start, c[np.maximum(last, 0)], -1)
    out = np.empty_like(codes)
    out[order] = filled
    return out


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of the runs of equal neighbours in x; the values are distinct when equal elements are
    contiguous (pd.Index.get_indexer on them raises if that invariant were ever broken)."""
    start = np.ones(x.size, dtype=bool)
    start[1:] = x[1:] != x[:-1]
    return np.cumsum(start) - 1, x[start]


def _fit_schema(ev, cols, pw, rows, owner, present, missing, acc) -> DatasetSchema:
    train_rows = rows[pw["split"].to_numpy()[owner] == "train"]
    vocab = {}
    for f in CATEGORICAL_FIELDS:
        col = cols.fields[f]
        toks = []
        if col is None:
            acc.notes.append(f"field {f!r} absent from the data: encoded as <unk>")
        else:
            codes, tokens = col
            seen = np.zeros(tokens.size + 1, dtype=bool)
            seen[codes[train_rows] + 1] = True  # slot 0 collects nulls
            toks = sorted(set(tokens[seen[1:]].tolist()))
        vocab[f] = list(RESERVED_TOKENS) + toks
    stats = {}
    if cols.numeric_value is not None:
        v = cols.numeric_value[train_rows]
        has = ~np.isnan(v)
        codes, tokens = cols.fields["code"]
        # pandas groupby in row order, as before: the same sums, so the same means and stds to the bit
        agg = pd.Series(v[has]).groupby(codes[train_rows][has]).agg(["mean", "std", "count"])
        by_token = {tokens[c]: r for c, r in zip(agg.index, agg.itertuples(index=False), strict=True)}
        stats = {c: NumericStats(float(r.mean), float(r.std), int(r.count)) for c, r in sorted(by_token.items())}
    ages = _pathway_age(ev, pw)
    tr_age = ages[(pw["split"] == "train").to_numpy() & ~np.isnan(ages)]
    age = NumericStats(
        float(tr_age.mean()) if tr_age.size else 0.0, float(tr_age.std()) if tr_age.size > 1 else 1.0, int(tr_age.size)
    )
    return DatasetSchema(categorical_vocab=vocab, code_stats=stats, age_stats=age, tasks=present, missing_tasks=missing)


def _status_features(table, columns, cols, rows, lag_h, max_age_h, acc, time_unit) -> np.ndarray:
    """(N, 2C) raw system-state features of the laid-out rows (NaN = missing); (N, 0) without a feed."""
    if not columns:
        return np.zeros((rows.size, 0))
    if table is None:
        return np.full((rows.size, 2 * len(columns)), np.nan)
    table = system_state.check_status_table(table, columns, acc, time_unit)
    names = _event_hospital_name(cols, rows)  # the hospital as known at the event: none before the departure
    return system_state.status_features(
        table, columns, names, cols.time_us[rows], ~cols.static[rows], acc, lag_h=lag_h, max_age_h=max_age_h
    )


def _hospital_descriptors(table, columns, cols, rows, acc) -> np.ndarray:
    """(N, K) raw descriptors of the hospital known at each laid-out row (NaN = missing); (N, 0) without any;
    all NaN when the schema names columns but the data has no hospital table."""
    if not columns:
        return np.zeros((rows.size, 0))
    if table is None:
        return np.full((rows.size, len(columns)), np.nan)
    table = hospitals.check_hospital_table(table, columns, acc)
    return hospitals.descriptor_features(table, _event_hospital_name(cols, rows), ~cols.static[rows], acc)


def _fit_hospitals(schema, columns, descriptors, pw, owner, acc) -> None:
    """Descriptor columns and the training split's bounded rank transform of each (`BoundedRank`, as for the
    status feed: monotone, and bounded for hospitals beyond the training range), into the schema."""
    names = hospitals.feature_names(columns)
    train = descriptors[pw["split"].to_numpy()[owner] == "train"]
    transforms = {name: BoundedRank.fit(train[:, j]) for j, name in enumerate(names)}
    unfitted = [name for name, t in transforms.items() if not t.count]
    if unfitted:
        acc.notes.append(f"hospital descriptors without any training value, missing everywhere: {unfitted}")
    schema.hospital_columns, schema.hospital_transforms = tuple(columns), transforms
    schema.numeric_features = schema.numeric_features + names


def _fit_status(schema, columns, status, pw, owner, lag_h, max_age_h, acc) -> None:
    """Status columns, the training split's bounded rank transform of each feature (`BoundedRank`), and the
    feed's timing, into the schema."""
    names = system_state.feature_names(columns)
    train = status[pw["split"].to_numpy()[owner] == "train"]
    transforms = {name: BoundedRank.fit(train[:, j]) for j, name in enumerate(names)}
    unfitted = [name for name, t in transforms.items() if not t.count]
    if unfitted:
        acc.notes.append(f"status features without any training value, missing everywhere: {unfitted}")
    schema.status_columns, schema.status_transforms = tuple(columns), transforms
    schema.status_lag_h, schema.status_max_age_h = float(lag_h), float(max_age_h)
    schema.numeric_features = NUMERIC_FEATURES + names


def _pathway_age(ev, pw) -> np.ndarray:
    births = ev.loc[ev["code"] == BIRTH_CODE, ["subject_id", "time"]].dropna().drop_duplicates("subject_id")
    b = pw[["subject_id"]].merge(births, on="subject_id", how="left")["time"]
    return ((pw["start"].to_numpy() - b.to_numpy()) / np.timedelta64(1, "D") / DAYS_PER_YEAR).astype(float)


def _encode(ev, cols, pw, rows, owner, schema, labels, oracle, acc, context) -> EncodedPathways:
    """context: (N, F - len(NUMERIC_FEATURES)) raw status features and hospital descriptors, NaN = missing."""
    N, P = rows.size, len(pw)
    per_event = np.empty((cols.static.size, len(schema.categorical_vocab)), dtype=np.int32)  # (N_ev, C)
    for j, (f, toks) in enumerate(schema.categorical_vocab.items()):
        col = cols.fields.get(f)
        if col is None:
            per_event[:, j] = UNKNOWN_INDEX
            continue
        codes, tokens = col
        lut = np.concatenate([[UNKNOWN_INDEX], _lookup(tokens, toks)]).astype(np.int32)  # lut[0]: null
        per_event[:, j] = lut[codes + 1]
    cat = per_event[rows]  # (N, C)
    del per_event
    # numeric: value z-scored per code with training stats; age at pathway start; system state
    F = schema.num_numeric
    num = np.zeros((N, F), dtype=np.float32)
    miss = np.ones((N, F), dtype=bool)
    if cols.numeric_value is not None:
        v = cols.numeric_value[rows]
        codes, tokens = cols.fields["code"]
        # NaN, not a NumericStats: its constructor turns an undefined mean and std into 0 and 1, which would
        # pass the raw value through as if it were z-scored
        stats = [schema.code_stats.get(c) for c in tokens]
        mean = np.array([np.nan if st is None else st.mean for st in stats], dtype=float)[codes[rows]]
        std = np.array([np.nan if st is None else st.std for st in stats], dtype=float)[codes[rows]]
        ok = ~np.isnan(v) & ~np.isnan(mean)
        no_stats = ~np.isnan(v) & np.isnan(mean)
        if no_stats.any():
            acc.repair("numeric_value of a code without training statistics, marked missing", int(no_stats.sum()))
        num[ok, 0] = ((v[ok] - mean[ok]) / std[ok]).astype(np.float32)
        miss[:, 0] = ~ok
    age = _pathway_age(ev, pw)[owner]
    ok = ~np.isnan(age)
    num[ok, 1] = ((age[ok] - schema.age_stats.mean) / schema.age_stats.std).astype(np.float32)
    miss[:, 1] = ~ok
    for j, transform in enumerate(schema.context_transforms.values()):
        x = transform(context[:, j])
        ok = ~np.isnan(x)
        num[ok, len(NUMERIC_FEATURES) + j] = x[ok].astype(np.float32)
        miss[:, len(NUMERIC_FEATURES) + j] = ~ok
    # time features (static rows: 0)
    static = cols.static[rows]
    tus = cols.time_us[rows]
    lengths = np.bincount(owner, minlength=P)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    start_us = pw["start"].to_numpy().astype("datetime64[us]").astype(np.int64)[owner]
    tss = np.where(static, 0.0, (tus - start_us) / US_PER_HOUR).astype(np.float32)
    prev = np.concatenate([[0], tus[:-1]])
    first_timed = np.ones(N, bool)
    first_timed[1:] = (owner[1:] != owner[:-1]) | static[:-1]
    tsp = np.where(static | first_timed, 0.0, (tus - prev) / US_PER_HOUR).astype(np.float32)
    hod_us = np.mod(tus, int(24 * US_PER_HOUR))
    hod = np.where(static, 0.0, hod_us / US_PER_HOUR).astype(np.float32)
    days = np.floor_divide(tus, int(24 * US_PER_HOUR))
    dow = np.where(static, 0, (days + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday (Monday = 0)

    # labels: each label row -> its (subject, prediction_time) key among the timed events -> events / pathways.
    # Lookup tables end in a sentinel slot, so key -1 (static row, no event) reads "no label row" and row -1
    # reads value 0 without a mask pass per task.
    ev_labels, pw_labels = {}, {}
    ev_key = cols.key_code[rows]  # (N,) -1 on static rows
    laid_key = np.zeros(len(cols.keys) + 1, dtype=bool)  # keys of laid-out (not truncated) timed events
    laid_key[ev_key] = True
    laid_key[-1] = False
    end_us = pw["end"].to_numpy().astype("datetime64[us]").astype(np.int64)
    pw_key = cols.key_of(pw["subject_id"].to_numpy(np.int64), end_us)  # (P,)
    for task, spec in schema.tasks.items():
        frame = labels.get(task)
        if frame is None:
            continue
        y, key_sub, key_t = _label_values(task, frame, spec)
        row_of_key = _label_rows_by_key(f"labels of {task!r}", frame, key_sub, key_t, cols)  # (K+1,) row or -1
        has_key = row_of_key >= 0
        y_key = np.append(y, 0.0).astype(np.float32)[row_of_key]  # (K+1,) 0 where no label
        o_key = None
        orc = oracle.get(task)
        if orc is not None:
            o_val, o_sub, o_t = _label_values(
                task, orc, TaskSpec(task, "regression", spec.level, spec.horizon_h, spec.group, spec.description)
            )
            o_row = row_of_key
            if not (np.array_equal(o_sub, key_sub) and np.array_equal(o_t, key_t)):  # usually the same rows
                o_row = _label_rows_by_key(f"oracle of {task!r}", orc, o_sub, o_t, cols)
            o_key = np.append(o_val, 0.0).astype(np.float32)[o_row]
        key = ev_key if spec.level == "event" else pw_key
        out = (y_key[key], has_key[key], None if o_key is None else o_key[key])
        if spec.level == "event":
            matched = int((has_key & laid_key).sum())  # label rows and keys are one to one
            ev_labels[task] = out
        else:
            matched = int(out[1].sum())
            pw_labels[task] = out
        acc.label_rows[task] = {
            "rows in": len(frame),
            "matched": int(matched),
            "unmatched (no event at prediction_time)": len(frame) - int(matched),
        }
    time_us = np.where(static, start_us, tus).astype(np.int64)
    hospital_id, hospital_name = _event_hospital(cols, rows, schema), _event_hospital_name(cols, rows)
    site_id, sites = _event_sites(hospital_name, hospital_id, time_us)
    return EncodedPathways(
        offsets=offsets.astype(np.int64),
        categorical=cat,
        numeric=num,
        numeric_missing=miss,
        time_since_prev_h=tsp,
        time_since_start_h=tss,
        time_us=time_us,
        hour_of_day=hod,
        day_of_week=dow,
        event_labels=ev_labels,
        pathway_labels=pw_labels,
        event_hospital_id=hospital_id,
        event_hospital_name=hospital_name,
        event_site_id=site_id,
        sites=sites,
        subject_id=pw["subject_id"].to_numpy(np.int64),
        pathway_id=pw["pathway_id"].to_numpy(np.int64),
        split=pw["split"].to_numpy(object),
    )


def _event_hospital(cols: _EventColumns, rows: np.ndarray, schema: DatasetSchema) -> np.ndarray:
    """(N,) int64 vocabulary index of each laid-out event's known hospital (`EncodedPathways.event_hospital_id`)."""
    hosp = cols.fields.get("hospital")
    if hosp is None:
        return np.full(rows.size, UNKNOWN_INDEX, dtype=np.int64)
    lut = np.concatenate([[UNKNOWN_INDEX], _lookup(hosp[1], schema.categorical_vocab["hospital"])])  # lut[0]: none
    return lut[cols.known_hospital[rows] + 1].astype(np.int64)


def _event_hospital_name(cols: _EventColumns, rows: np.ndarray) -> np.ndarray:
    """(N,) object name of each laid-out event's known hospital (`EncodedPathways.event_hospital_name`)."""
    hosp = cols.fields.get("hospital")
    if hosp is None:
        return np.full(rows.size, None, dtype=object)
    c = cols.known_hospital[rows]
    return np.where(c >= 0, hosp[1][np.maximum(c, 0)], None).astype(object)


def _event_sites(name: np.ndarray, vocab_id: np.ndarray, time_us: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """(N,) site id of each event and the site table (`EncodedPathways.event_site_id`, `EncodedPathways.sites`)
    from its hospital's name (None where unknown), training vocabulary index and time.

    Sites are numbered in order of their first event (ties by name): the data up to any time t numbers its
    hospitals as the whole data set does, so a site id never depends on events after t.
    """
    known = pd.notna(name)
    names = pd.Series(name[known].astype(str))  # compared as strings, as the vocabulary compares them
    by_name = pd.DataFrame({"first_us": time_us[known], "vocab_id": vocab_id[known]}).groupby(names.to_numpy())
    # one name has one vocabulary index, so any of its events gives it
    table = by_name.agg(first_us=("first_us", "min"), vocab_id=("vocab_id", "first"))
    table = table.rename_axis("hospital").reset_index().sort_values(["first_us", "hospital"], ignore_index=True)
    site_id = np.full(name.size, NO_SITE, dtype=np.int64)
    site_id[known] = pd.Index(table["hospital"]).get_indexer(names)
    vocab = table["vocab_id"].to_numpy(np.int64)
    sites = pd.DataFrame(
        {"hospital": table["hospital"].tolist(), "vocab_id": vocab, "in_training_vocab": vocab != UNKNOWN_INDEX}
    )
    return site_id, sites


def _status_out_of_range(schema: DatasetSchema, context: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """Feature x split: share of events with the feature present whose raw value is outside the training range
    (status features and hospital descriptors)."""
    transforms = schema.context_transforms
    out = pd.DataFrame(np.nan, index=pd.Index(list(transforms), name="feature"), columns=list(SPLITS))
    for j, (name, transform) in enumerate(transforms.items()):
        present = ~np.isnan(context[:, j])
        outside = transform.outside(context[:, j])
        for s in SPLITS:
            n = int((present & (split == s)).sum())
            if n:
                out.loc[name, s] = (outside & (split == s)).sum() / n
    return out


def _label_rows_by_key(what, frame, subject, time_us, cols: _EventColumns) -> np.ndarray:
    """(len(cols.keys) + 1,) row of `frame` for each event key, -1 where none and in the last (sentinel) slot.

    Duplicate (subject_id, prediction_time) rows are an error naming them.
    """
    key = cols.key_of(subject, time_us)  # (R,) -1 where the label matches no timed event
    hit = key >= 0
    dup = np.zeros(key.size, dtype=bool)
    dup[hit] = np.bincount(key[hit], minlength=len(cols.keys))[key[hit]] > 1
    if (~hit).any():  # rows that match no event can still repeat each other
        miss = np.nonzero(~hit)[0]
        dup[miss] = pd.DataFrame({"s": subject[miss], "t": time_us[miss]}).duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataValidationError(
            "prediction_time", f"{what}: duplicate (subject_id, prediction_time)", frame[dup], int(dup.sum())
        )
    out = np.full(len(cols.keys) + 1, -1, dtype=np.int64)
    out[key[hit]] = np.nonzero(hit)[0]
    return out


def _lookup(vals: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Vocabulary index of each value (strings compared; null and unseen -> UNKNOWN_INDEX)."""
    s = pd.Series(vals, dtype="object")
    null = s.isna().to_numpy()
    idx = pd.Index(tokens[2:]).get_indexer(s.where(~null, "").astype(str))
    return np.where((idx >= 0) & ~null, idx + 2, UNKNOWN_INDEX).astype(np.int64)


def _label_tables(sets: dict[str, pd.DataFrame], what: str, time_unit, events_aware: bool) -> dict[str, pd.DataFrame]:
    """Each label table with subject_id as int64 and prediction_time as naive datetime64[us] (the rules of
    the event table: `integer_ids`, `parse_times`); missing, null or unparseable keys name the task, and so
    do times time-zone-aware where the events' are naive or the reverse (`require_time_convention`)."""
    out = {}
    for task, frame in sets.items():
        for col in ("subject_id", "prediction_time"):
            if col not in frame.columns:
                raise DataValidationError(col, f"{what} of {task!r}: missing (MEDS label schema)", frame.head())
        sid = integer_ids(frame["subject_id"], "subject_id", frame)
        t, bad, aware = parse_times(frame["prediction_time"], "prediction_time", time_unit, frame)
        if t.notna().any():
            require_time_convention(aware, events_aware, "prediction_time", f"{what} of {task!r}", frame.head())
        for col, null in (("subject_id", sid.isna().to_numpy()), ("prediction_time", t.isna().to_numpy())):
            if null.any():
                raise DataValidationError(
                    col, f"{what} of {task!r}: missing or unparseable", frame[null], int(null.sum())
                )
        out[task] = frame.assign(subject_id=sid.astype(np.int64), prediction_time=t)
    return out


# Label value kinds pandas infers that are numbers (object columns of Python numbers included).
NUMERIC_KINDS = ("boolean", "integer", "floating", "mixed-integer-float", "decimal", "empty")


def _label_values(task, frame, spec):
    """(values float64, subject_id int64, prediction_time us) of a label table from `_label_tables`.

    Binary labels must be 0 or 1 (False or True); every label must be a finite number. A value 7 in a binary
    task, or a string, would otherwise become a training target.
    """
    col = "boolean_value" if spec.kind == "binary" else "float_value"
    if col not in frame.columns:
        alt = [c for c in ("boolean_value", "integer_value", "float_value") if c in frame.columns]
        if not alt:
            raise DataValidationError(col, f"labels of {task!r}: no value column for a {spec.kind} task", frame.head())
        col = alt[0]
    vals = frame[col]
    if vals.isna().any():
        raise DataValidationError(
            col, f"labels of {task!r}: null label values", frame[vals.isna()], int(vals.isna().sum())
        )
    kind = pd.api.types.infer_dtype(vals, skipna=True)
    if kind not in NUMERIC_KINDS or not (pd.api.types.is_numeric_dtype(vals) or vals.dtype == object):
        not_num = ~vals.map(lambda v: isinstance(v, (bool, int, float, np.number))).astype(bool).to_numpy()
        raise DataValidationError(
            col,
            f"labels of {task!r}: expected numbers, got {kind} values (dtype {vals.dtype})",
            frame[not_num],
            int(not_num.sum()),
        )
    y = vals.to_numpy(dtype=float)
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataValidationError(col, f"labels of {task!r}: non-finite label values", frame[bad], int(bad.sum()))
    if spec.kind == "binary":
        bad = (y != 0.0) & (y != 1.0)
        if bad.any():
            raise DataValidationError(
                col, f"labels of {task!r}: a binary task needs values 0 or 1", frame[bad], int(bad.sum())
            )
    return (
        y,
        frame["subject_id"].to_numpy(np.int64),
        frame["prediction_time"].to_numpy().astype("datetime64[us]").astype(np.int64),
    )
