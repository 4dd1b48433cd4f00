"""MEDS files: write and read with the official `meds` schemas (meds==0.4.1).

Layout under a dataset root (MEDS names where MEDS has one):
    data/<split>/<n>.parquet          events (DataSchema + typed extra columns), each subject in one shard,
                                      sorted by subject then time with null (static) times first
    labels/<task>/labels.parquet      MEDS LabelSchema, one set per task
    oracle/<task>/labels.parquet      LabelSchema, float_value = the generator's clairvoyant reference
    bound/<task>/labels.parquet       LabelSchema, float_value = the fair bound; bound_se/: its standard error
    metadata/codes.parquet            CodeMetadataSchema
    metadata/dataset.json             DatasetMetadataSchema
    metadata/subject_splits.parquet   SubjectSplitSchema
    metadata/hospitals.parquet        one row per hospital: name and what a model may know of it (size, level of
                                      care; hamburg_mamba.data.hospitals); not a MEDS file, MEDS has none
    system/hospital_hourly.parquet    per-hospital hourly status; system/staff_shifts.parquet; system/pathways.parquet
"""

from __future__ import annotations

import json
from pathlib import Path

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from flexible_schema.exceptions import SchemaValidationError, TableValidationError

# Typed extra columns of the Hamburg event table (beyond MEDS core), with their Arrow types.
EXTRA_COLUMNS = {
    "pathway_id": pa.int64(),
    "hospital": pa.string(),
    "stage": pa.string(),
    "unit": pa.string(),
    "triage_group": pa.int8(),
    "arrival_mode": pa.string(),
}
CODE_DESCRIPTIONS = {
    "MEDS_BIRTH": "birth",
    "MEDS_DEATH": "death",
    "ED//TRIAGE": "Manchester triage group (1-5)",
    "ED//PHYSICIAN": "first physician contact; value = wait in minutes",
    "EMS//ON_SCENE": "value = response minutes",
    "EMS//TRANSPORT": "departure to the destination hospital (text 'diverted' when the nearest was closed)",
    "ED//ARRIVAL": "value = ambulance transport minutes",
    "ADT//ADMIT": "admission to a bed; value = ED boarding hours",
    "ADVERSE_EVENT": "cardiac arrest or rapid-response call",
    "VITAL//O2": "supplemental oxygen (0 air, 1 oxygen)",
    "VITAL//ACVPU": "consciousness 0 alert .. 4 unresponsive",
}
HOSPITALS_FILE = Path("metadata") / "hospitals.parquet"
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True)
# What the meds schemas raise for a table that breaks them (flexible_schema's errors are no ValueError).
SCHEMA_ERRORS = (SchemaValidationError, TableValidationError)


class MedsFormatError(ValueError):
    """A file under a MEDS root that cannot be read or breaks its meds schema; the message names the file
    (relative to the root, the `source` argument) and what the schema check said about its columns."""

    def __init__(self, root: Path, path: Path, problem: str):
        self.path = path
        super().__init__(f"source: {path.relative_to(root).as_posix()} under {root}: {problem}")


def events_to_arrow(events: pd.DataFrame) -> pa.Table:
    """pandas events -> Arrow table aligned to meds.DataSchema (extra columns typed per EXTRA_COLUMNS)."""
    fields = [
        ("subject_id", pa.int64()),
        ("time", pa.timestamp("us")),
        ("code", pa.string()),
        ("numeric_value", pa.float32()),
        ("text_value", pa.large_string()),
    ]
    fields += [(c, t) for c, t in EXTRA_COLUMNS.items() if c in events.columns]
    fields += [(c, None) for c in events.columns if c not in dict(fields)]
    arrays, names = [], []
    for name, typ in fields:
        if name not in events.columns:
            continue
        col = events[name]
        arrays.append(pa.array(col, type=typ, from_pandas=True) if typ is not None else pa.array(col, from_pandas=True))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    return meds.DataSchema.align(table)


def labels_to_arrow(labels: pd.DataFrame) -> pa.Table:
    cols = {
        "subject_id": pa.int64(),
        "prediction_time": pa.timestamp("us"),
        "boolean_value": pa.bool_(),
        "integer_value": pa.int64(),
        "float_value": pa.float32(),
        "categorical_value": pa.string(),
    }
    arrays = [pa.array(labels[c], type=t, from_pandas=True) for c, t in cols.items() if c in labels.columns]
    table = pa.Table.from_arrays(arrays, names=[c for c in cols if c in labels.columns])
    return meds.LabelSchema.align(table)


def assign_splits(subjects: np.ndarray, seed: int, fractions=(0.8, 0.1, 0.1)) -> pd.DataFrame:
    """Random split by subject: train / tuning / held_out (MEDS sentinel names)."""
    subjects = np.unique(subjects)
    perm = np.random.default_rng(np.random.SeedSequence([seed, 11])).permutation(subjects.size)
    n_train = int(round(fractions[0] * subjects.size))
    n_tune = int(round(fractions[1] * subjects.size))
    split = np.empty(subjects.size, dtype=object)
    split[perm[:n_train]] = meds.train_split
    split[perm[n_train : n_train + n_tune]] = meds.tuning_split
    split[perm[n_train + n_tune :]] = meds.held_out_split
    return pd.DataFrame({"subject_id": subjects, "split": split})


def write_meds(
    root: str | Path,
    events: pd.DataFrame,
    *,
    labels: dict[str, pd.DataFrame] | None = None,
    oracle: dict[str, pd.DataFrame] | None = None,
    splits: pd.DataFrame | None = None,
    subjects_per_shard: int = 50_000,
    dataset_name: str = "hamburg-synthetic",
    dataset_version: str = "0",
    system_tables: dict[str, pd.DataFrame] | None = None,
    seed: int = 0,
    label_sets: dict[str, dict[str, pd.DataFrame]] | None = None,
    hospitals: pd.DataFrame | None = None,
) -> Path:
    """Write a MEDS dataset; every table is validated against its `meds` schema before it is written.

    Deterministic: same inputs give the same bytes (no creation time is stamped into dataset.json).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    table = events_to_arrow(events)
    meds.DataSchema.validate(table)
    if splits is None:
        splits = assign_splits(events["subject_id"].to_numpy(), seed)
    split_table = meds.SubjectSplitSchema.align(
        pa.Table.from_pandas(splits[["subject_id", "split"]], preserve_index=False)
    )
    (root / "metadata").mkdir(exist_ok=True)
    pq.write_table(split_table, root / meds.subject_splits_filepath, **PARQUET_OPTIONS)

    subj = table.column("subject_id").to_numpy()
    split_of = pd.Series(splits["split"].to_numpy(), index=splits["subject_id"].to_numpy())
    missing = ~np.isin(np.unique(subj), splits["subject_id"].to_numpy())
    if missing.any():
        raise ValueError(f"write_meds: splits lacks subject_id {np.unique(subj)[missing][:5].tolist()}")
    row_split = split_of.reindex(subj).to_numpy()
    for split in sorted(split_of.unique()):
        rows = np.nonzero(row_split == split)[0]
        part = table.take(pa.array(rows))
        psubj = part.column("subject_id").to_numpy()
        uniq = np.unique(psubj)
        # shard boundaries fall between subjects, so each subject lives in one shard (MEDS rule)
        bounds = np.searchsorted(psubj, uniq[::subjects_per_shard]).tolist() + [psubj.size]
        out = root / meds.data_subdirectory / split
        out.mkdir(parents=True, exist_ok=True)
        for k in range(len(bounds) - 1):
            pq.write_table(part.slice(bounds[k], bounds[k + 1] - bounds[k]), out / f"{k}.parquet", **PARQUET_OPTIONS)

    codes = np.unique(table.column("code").to_numpy(zero_copy_only=False).astype(str))
    code_table = meds.CodeMetadataSchema.align(
        pa.table(
            {
                "code": pa.array(codes, pa.string()),
                "description": pa.array([CODE_DESCRIPTIONS.get(c, c.replace("//", " ")) for c in codes], pa.string()),
                "parent_codes": pa.array(
                    [[c.split("//")[0]] if "//" in c else None for c in codes], pa.list_(pa.string())
                ),
            }
        )
    )
    pq.write_table(code_table, root / meds.code_metadata_filepath, **PARQUET_OPTIONS)
    meta = {
        "dataset_name": dataset_name,
        "dataset_version": dataset_version,
        "etl_name": "hamburg_mamba.data",
        "etl_version": "0.1.0",
        "meds_version": meds.__version__,
        "site_id_columns": ["hospital"],
        "other_extension_columns": [c for c in EXTRA_COLUMNS if c in events],
    }
    meds.DatasetMetadataSchema.validate(meta)
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(meta, indent=1, sort_keys=True))
    if hospitals is not None:
        pq.write_table(pa.Table.from_pandas(hospitals, preserve_index=False), root / HOSPITALS_FILE, **PARQUET_OPTIONS)

    for folder, sets in (("labels", labels or {}), ("oracle", oracle or {}), *(label_sets or {}).items()):
        for task, frame in sets.items():
            lt = labels_to_arrow(frame)
            meds.LabelSchema.validate(lt)
            (root / folder / task).mkdir(parents=True, exist_ok=True)
            pq.write_table(lt, root / folder / task / "labels.parquet", **PARQUET_OPTIONS)
    for name, frame in (system_tables or {}).items():
        (root / "system").mkdir(exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), root / "system" / f"{name}.parquet", **PARQUET_OPTIONS
        )
    return root


def write_synthetic(root: str | Path, data, subjects_per_shard: int = 50_000) -> Path:
    """Write a `SyntheticData` as a MEDS dataset with labels, oracles and system tables."""
    from hamburg_mamba.data.fair_bound import bound_label_sets  # imports the generator: not at the top

    return write_meds(
        root,
        data.events,
        labels=data.labels,
        oracle=data.oracle,
        seed=data.config.seed,
        subjects_per_shard=subjects_per_shard,
        label_sets=bound_label_sets(data.bound or {}),
        system_tables={
            "hospital_hourly": data.hospital_hourly,
            "staff_shifts": data.staff_shifts,
            "pathways": data.pathways,
            "drivers": data.drivers,
        },
        hospitals=data.hospitals,
    )


def read_meds(root: str | Path) -> dict:
    """Read a MEDS dataset folder: events (with a `split` column from the folder), labels, oracle, metadata,
    the hospital table (None without metadata/hospitals.parquet).

    Validates every shard against meds.DataSchema; shards are read in split then numeric shard order.
    """
    root = Path(root)
    data_dir = root / meds.data_subdirectory
    if not data_dir.is_dir():
        raise FileNotFoundError(f"read_meds: {data_dir} does not exist (a MEDS root has data/<split>/*.parquet)")
    shards = sorted(
        data_dir.rglob("*.parquet"),
        key=lambda p: (p.parent.relative_to(data_dir).as_posix(), int(p.stem) if p.stem.isdigit() else 0, p.stem),
    )
    if not shards:
        raise FileNotFoundError(f"read_meds: no parquet shards under {data_dir}")
    tables = [_read_checked(root, path, meds.DataSchema) for path in shards]
    # one conversion of the concatenated table (columns absent from some shards become nulls); the shard name is
    # a dictionary column, not 10 M repeated strings
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        types = {
            str(p.relative_to(data_dir)): {f.name: str(f.type) for f in t.schema}
            for p, t in zip(shards, tables, strict=True)
        }
        raise MedsFormatError(
            root, data_dir, f"shards disagree on column types ({e}); types per shard: {types}"
        ) from None
    shard_of_row = np.repeat(np.arange(len(shards), dtype=np.int32), [t.num_rows for t in tables])
    names = pa.array([p.relative_to(data_dir).as_posix() for p in shards], pa.string())
    table = table.append_column("shard", pa.DictionaryArray.from_arrays(pa.array(shard_of_row), names))
    events = table.to_pandas(types_mapper=_types_mapper)

    def read_sets(folder):
        out = {}
        for p in sorted((root / folder).glob("*/*.parquet")) if (root / folder).is_dir() else []:
            t = _read_checked(root, p, meds.LabelSchema)
            out.setdefault(p.parent.name, []).append(t.to_pandas(types_mapper=_types_mapper))
        return {k: pd.concat(v, ignore_index=True) for k, v in out.items()}

    splits = None
    if (root / meds.subject_splits_filepath).exists():
        t = pq.read_table(root / meds.subject_splits_filepath)
        meds.SubjectSplitSchema.validate(t)
        splits = t.to_pandas()
    meta = {}
    if (root / meds.dataset_metadata_filepath).exists():
        meta = json.loads((root / meds.dataset_metadata_filepath).read_text())
        meds.DatasetMetadataSchema.validate(meta)
    codes = None
    if (root / meds.code_metadata_filepath).exists():
        t = pq.read_table(root / meds.code_metadata_filepath)
        meds.CodeMetadataSchema.validate(t)
        codes = t.to_pandas()
    system = (
        {p.stem: pq.read_table(p).to_pandas() for p in sorted((root / "system").glob("*.parquet"))}
        if (root / "system").is_dir()
        else {}
    )
    hospitals = None
    if (root / HOSPITALS_FILE).exists():
        try:
            hospitals = pq.read_table(root / HOSPITALS_FILE).to_pandas()
        except (pa.ArrowInvalid, OSError) as e:
            raise MedsFormatError(root, root / HOSPITALS_FILE, f"not a readable parquet file ({e})") from None
    return {
        "events": events,
        "labels": read_sets("labels"),
        "oracle": read_sets("oracle"),
        "splits": splits,
        "metadata": meta,
        "codes": codes,
        "system": system,
        "hospitals": hospitals,
    }


def _read_checked(root: Path, path: Path, schema) -> pa.Table:
    """One parquet file, validated against a meds schema; MedsFormatError naming the file otherwise."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise MedsFormatError(root, path, f"not a readable parquet file ({e})") from None
    try:
        schema.validate(table)
    except SCHEMA_ERRORS as e:
        raise MedsFormatError(root, path, f"breaks meds.{schema.__name__}: {e}") from None
    return table


def _types_mapper(t: pa.DataType):
    """Nullable pandas dtypes that round-trip exactly (float32 stays float32, strings stay strings)."""
    if pa.types.is_float32(t):
        return pd.Float32Dtype()
    if pa.types.is_int8(t):
        return pd.Int8Dtype()
    if pa.types.is_int64(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype("pyarrow", na_value=np.nan)
    return None
