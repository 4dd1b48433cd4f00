"""Malformed MEDS folders: every one either connects with every event accounted for, or fails naming a column
or an argument.

`malformed_folder` copies a small valid MEDS folder (40 subjects of the three-week synthetic city, several
shards per split, labels and the hospital status feed) and breaks it in one named way: wrong column types,
nulls in required columns, duplicate and unsorted rows, empty shards, stray files in data/, missing columns,
bad codes, bad labels and bad times. Row choices come from a generator seeded per case, so a failure
reproduces.
"""

import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hamburg_mamba.data import connect_hamburg_data
from hamburg_mamba.data.meds_io import write_meds

N_SUBJECTS = 40
SUBJECTS_PER_SHARD = 8
EVENT_COLUMNS = (
    "subject_id",
    "time",
    "code",
    "numeric_value",
    "text_value",
    "pathway_id",
    "hospital",
    "stage",
    "unit",
    "triage_group",
    "arrival_mode",
)
ARGUMENTS = ("source", "labels", "hospital_status", "time_unit", "prediction_time", "boolean_value", "float_value")


@pytest.fixture(scope="module")
def valid_root(small, tmp_path_factory) -> Path:
    ev = small.events
    keep = np.sort(ev["subject_id"].unique())[:N_SUBJECTS]
    events = ev[ev["subject_id"].isin(keep)].reset_index(drop=True)
    labels = {t: f[f["subject_id"].isin(keep)].reset_index(drop=True) for t, f in small.labels.items()}
    return write_meds(
        tmp_path_factory.mktemp("malformed") / "valid",
        events,
        labels=labels,
        subjects_per_shard=SUBJECTS_PER_SHARD,
        system_tables={"hospital_hourly": small.hospital_hourly},
    )


# --- the malformations: each takes the copied root and a seeded generator and breaks the copy -------------


def _shards(root: Path) -> list[Path]:
    return sorted((root / "data").rglob("*.parquet"))


def _rewrite(path: Path, change, retyped=()) -> None:
    """Read one shard into pandas, apply `change`, write it back (no MEDS check): the `retyped` columns with
    the types pyarrow infers, the others with their original types."""
    original = pq.read_table(path)
    df = change(original.to_pandas())
    table = pa.Table.from_pandas(df, preserve_index=False)
    types = {f.name: f.type for f in original.schema}
    for i, name in enumerate(table.column_names):
        if name in types and name not in retyped:
            table = table.set_column(i, name, table.column(i).cast(types[name]))
    pq.write_table(table, path)


def _rows(rng, df, k=3):
    return rng.choice(len(df), size=min(k, len(df)), replace=False)


def _set(col, value, k=3, retype=False):
    """`value` in `col` of k rows of the first shard; retype: the whole column becomes strings first."""

    def change(root, rng):
        def f(df):
            if retype:
                df[col] = df[col].astype(str)
            df.loc[_rows(rng, df, k), col] = value
            return df

        _rewrite(_shards(root)[0], f, retyped=(col,) if retype else ())

    return change


def _cast(col, convert):
    def change(root, rng):
        _rewrite(_shards(root)[1], lambda df: df.assign(**{col: convert(df[col])}), retyped=(col,))

    return change


def _drop_column(col):
    def change(root, rng):
        _rewrite(_shards(root)[0], lambda df: df.drop(columns=[col]))

    return change


def _duplicate_rows(root, rng):
    _rewrite(
        _shards(root)[0],
        lambda df: pd.concat([df, df.iloc[_rows(rng, df, 5)]]).sort_values(
            ["subject_id", "time"], na_position="first", kind="stable"
        ),
    )


def _shuffle_rows(root, rng):
    _rewrite(_shards(root)[0], lambda df: df.iloc[rng.permutation(len(df))])


def _empty_shard(root, rng):
    first = _shards(root)[0]
    pq.write_table(pq.read_table(first).slice(0, 0), first.parent / "99.parquet")


def _stray_text_file(root, rng):
    (root / "data" / "train" / "README.txt").write_text("not events")


def _not_parquet(root, rng):
    (root / "data" / "train" / "7.parquet").write_bytes(b"this is not parquet")


def _tz_aware_shard(root, rng):
    path = _shards(root)[0]
    t = pq.read_table(path)
    i = t.schema.get_field_index("time")
    pq.write_table(t.set_column(i, "time", t.column("time").cast(pa.timestamp("us", tz="UTC"))), path)


def _subject_split_across_shards(root, rng):
    a, b = _shards(root)[:2]
    da = pq.read_table(a).to_pandas()
    rows = da.index[da["subject_id"] == da["subject_id"].iloc[0]]
    moved = da.loc[rows[len(rows) // 2 :]]  # the later half of one subject's events
    _rewrite(a, lambda df: df.drop(moved.index))
    _rewrite(b, lambda df: pd.concat([df, moved]))


def _vital_without_time(root, rng):
    def f(df):
        vitals = np.nonzero(df["code"].str.startswith("VITAL//").to_numpy())[0]
        df.loc[rng.choice(vitals, 2, replace=False), "time"] = pd.NaT
        return df.sort_values(["subject_id", "time"], na_position="first", kind="stable")

    _rewrite(_shards(root)[0], f)


def _birth_after_events(root, rng):
    def f(df):
        birth = np.nonzero((df["code"] == "MEDS_BIRTH").to_numpy())[0][0]
        df.loc[birth, "time"] = df.loc[df["subject_id"] == df.loc[birth, "subject_id"], "time"].max()
        return df

    _rewrite(_shards(root)[0], f)


def _label(task, column, value):
    def change(root, rng):
        def f(df):
            if value is not None:
                df = df.astype({column: str if isinstance(value, str) else float})
            df.loc[_rows(rng, df, 2), column] = value
            return df

        _rewrite(root / "labels" / task / "labels.parquet", f, retyped=(column,) if value is not None else ())

    return change


def _status_inf(root, rng):
    path = root / "system" / "hospital_hourly.parquet"
    df = pq.read_table(path).to_pandas().astype({"ed_census": float})
    df.loc[_rows(rng, df, 1), "ed_census"] = np.inf
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)


MALFORMATIONS = {
    "subject_id as strings": _cast("subject_id", lambda s: s.astype(str).str.zfill(4)),
    "subject_id as floats": _cast("subject_id", lambda s: s.astype(float)),
    "time as epoch seconds": _cast("time", lambda s: (s - pd.Timestamp(0)) // pd.Timedelta(seconds=1)),
    "time as strings": _cast("time", lambda s: s.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")),
    "numeric_value as strings": _cast("numeric_value", lambda s: s.astype(str)),
    "code as integers": _cast("code", lambda s: pd.factorize(s)[0]),
    "pathway_id as strings": _cast("pathway_id", lambda s: s.astype("Int64").astype(str)),
    "pathway_id fractional": _cast("pathway_id", lambda s: s.astype(float) + 0.5),
    "null subject_id": _set("subject_id", None),
    "null code": _set("code", None),
    "null time": _set("time", None),
    "blank code": _set("code", ""),
    "unparseable time": _set("time", "soon", retype=True),
    "infinite numeric_value": _set("numeric_value", np.inf, k=1),
    "duplicate rows": _duplicate_rows,
    "unsorted rows": _shuffle_rows,
    "empty shard": _empty_shard,
    "text file in data/": _stray_text_file,
    "non-parquet .parquet file": _not_parquet,
    "missing code column": _drop_column("code"),
    "missing numeric_value column": _drop_column("numeric_value"),
    "missing pathway_id column": _drop_column("pathway_id"),
    "tz-aware shard": _tz_aware_shard,
    "subject in two shards": _subject_split_across_shards,
    "vital sign without time": _vital_without_time,
    "birth after the subject's events": _birth_after_events,
    "binary label 7": _label("adverse_event", "boolean_value", 7),
    "string regression label": _label("unit_workload", "float_value", "many"),
    "label prediction_time null": _label("closure_6h", "prediction_time", None),
    "inf in the status feed": _status_inf,
}


def malformed_folder(valid: Path, dest: Path, name: str) -> Path:
    """A copy of the MEDS folder `valid` at `dest`, broken in the way MALFORMATIONS[name] describes."""
    shutil.copytree(valid, dest)
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # a fixed seed per case, stable across runs
    MALFORMATIONS[name](dest, rng)
    return dest


def _rows_in_shards(root: Path) -> int:
    total = 0
    for path in _shards(root):
        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except pa.ArrowInvalid:
            pass  # not a parquet file: no events in it
    return total


@pytest.mark.parametrize("name", list(MALFORMATIONS))
def test_malformed_folder_is_accounted_for_or_named(valid_root, tmp_path, name):
    root = malformed_folder(valid_root, tmp_path / "broken", name)
    try:
        data = connect_hamburg_data(root, split="subject")
    except ValueError as e:
        named = [c for c in (*EVENT_COLUMNS, *ARGUMENTS, "ed_census") if re.search(rf"\b{c}\b", str(e))]
        assert named, f"{name}: the error names no column or argument: {e}"
        return
    acc = data.accounting
    assert acc.events_in == _rows_in_shards(root), name
    assert acc.events_in == acc.events_used + acc.events_dropped, name
    assert int(data.encoded.lengths.sum()) >= acc.events_used, name  # static heads repeat, events never vanish


def test_the_valid_folder_connects_cleanly(valid_root):
    data = connect_hamburg_data(valid_root)
    acc = data.accounting
    assert acc.events_in == _rows_in_shards(valid_root) == acc.events_used and not acc.dropped
    assert data.pathways["subject_id"].nunique() == N_SUBJECTS
    assert len(_shards(valid_root)) >= 3  # several shards, so a case can break one and leave the others
