"""MEDS files: the official meds schemas accept what we write, and reading gives back identical tables."""

import json

import meds
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flexible_schema.exceptions import SchemaValidationError

from hamburg_mamba.data.meds_io import events_to_arrow, labels_to_arrow, read_meds


def test_layout_and_official_schemas(small_root, small):
    for path in (small_root / "data").rglob("*.parquet"):
        meds.DataSchema.validate(pq.read_table(path))
    meds.SubjectSplitSchema.validate(pq.read_table(small_root / meds.subject_splits_filepath))
    meds.CodeMetadataSchema.validate(pq.read_table(small_root / meds.code_metadata_filepath))
    meds.DatasetMetadataSchema.validate(json.loads((small_root / meds.dataset_metadata_filepath).read_text()))
    for task in small.labels:
        meds.LabelSchema.validate(pq.read_table(small_root / "labels" / task / "labels.parquet"))
    splits = {p.parent.name for p in (small_root / "data").rglob("*.parquet")}
    assert splits == {meds.train_split, meds.tuning_split, meds.held_out_split}
    assert len(list((small_root / "data" / "train").glob("*.parquet"))) > 1  # several shards per split
    assert (small_root / "system" / "hospital_hourly.parquet").exists()


def test_each_subject_in_one_shard_and_codes_documented(small_root):
    seen = {}
    for path in (small_root / "data").rglob("*.parquet"):
        for s in np.unique(pq.read_table(path, columns=["subject_id"]).column(0).to_numpy()):
            assert s not in seen, f"subject {s} in {seen.get(s)} and {path}"
            seen[s] = path
    codes = set(pq.read_table(small_root / meds.code_metadata_filepath).column("code").to_pylist())
    data_codes = set()
    for path in (small_root / "data").rglob("*.parquet"):
        data_codes |= set(pq.read_table(path, columns=["code"]).column(0).to_pylist())
    assert data_codes == codes


def test_round_trip_identical(small_root, small):
    back = read_meds(small_root)
    got = events_to_arrow(
        back["events"].drop(columns=["shard"]).sort_values(["subject_id"], kind="stable").reset_index(drop=True)
    )
    want = events_to_arrow(small.events)
    assert got.schema.equals(want.schema)
    assert got.equals(want)
    for task, frame in small.labels.items():
        assert labels_to_arrow(back["labels"][task]).equals(labels_to_arrow(frame)), task
        assert labels_to_arrow(back["oracle"][task]).equals(labels_to_arrow(small.oracle[task])), task


def test_meds_schema_rejects_mistyped_events(small):
    table = events_to_arrow(small.events.head(10))
    bad = table.set_column(0, "subject_id", pa.array([str(x) for x in table.column(0).to_pylist()]))
    with pytest.raises(SchemaValidationError, match="subject_id"):
        meds.DataSchema.validate(bad)


def test_read_rejects_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="data"):
        read_meds(tmp_path)


def test_read_names_the_file_and_column_of_a_broken_shard(small, tmp_path):
    """A shard that breaks the MEDS schema, a file that is not parquet, or shards whose types disagree give a
    ValueError naming the file and the column (flexible_schema's own errors are no ValueError)."""
    from hamburg_mamba.data.meds_io import MedsFormatError, write_meds

    root = write_meds(tmp_path / "m", small.events.head(200), subjects_per_shard=1)
    shard = sorted((root / "data").rglob("*.parquet"))[0]
    table = pq.read_table(shard)
    pq.write_table(table.set_column(0, "subject_id", table.column(0).cast(pa.float64())), shard)
    with pytest.raises(MedsFormatError, match=r"subject_id \(want int64, got double\)") as e:
        read_meds(root)
    assert isinstance(e.value, ValueError) and shard.relative_to(root).as_posix() in str(e.value)
    pq.write_table(table, shard)
    (shard.parent / "9.parquet").write_bytes(b"not parquet")
    with pytest.raises(MedsFormatError, match="not a readable parquet file"):
        read_meds(root)
