"""connect_hamburg_data: validation errors, accounting, splits, schema fitting and typed batches."""

import subprocess
import sys

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hamburg_mamba.data import DatasetSchema, connect_hamburg_data
from hamburg_mamba.data.validate import DataValidationError, ValidationPolicy


def _toy():
    """Two subjects written by hand: static facts, birth, death, an unknown lab code, no pathway_id."""
    t = pd.Timestamp("2024-01-01 08:00")
    rows = [
        (1, None, "SEX//F", None),
        (1, t - pd.Timedelta(days=365 * 70), "MEDS_BIRTH", None),
        (1, t, "ED//ARRIVAL", None),
        (1, t + pd.Timedelta(minutes=10), "VITAL//PULSE", 88.0),
        (1, t + pd.Timedelta(hours=2), "LAB//LACTATE", 2.5),
        (1, t + pd.Timedelta(hours=30), "MEDS_DEATH", None),
        (2, None, "SEX//M", None),
        (2, t + pd.Timedelta(hours=1), "ED//ARRIVAL", None),
        (2, t + pd.Timedelta(hours=1, minutes=5), "VITAL//PULSE", 120.0),
        (2, t + pd.Timedelta(hours=3), "LAB//LACTATE", 4.0),
    ]
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])


def _err(df, **kw):
    with pytest.raises(DataValidationError) as e:
        connect_hamburg_data(df, split="subject", split_fractions=(1.0, 0.0, 0.0), **kw)
    return e.value


def test_missing_column_named():
    e = _err(_toy().drop(columns=["code"]))
    assert e.column == "code" and "missing" in str(e)


def test_mistyped_subject_id_named_with_rows():
    df = _toy().astype({"subject_id": object})
    df.loc[3, "subject_id"] = "patient-x"
    e = _err(df)
    assert e.column == "subject_id" and "patient-x" in str(e)


def test_unparseable_time_fails_or_is_dropped_and_counted():
    df = _toy().astype({"time": object})
    df.loc[4, "time"] = "yesterday-ish"
    e = _err(df)
    assert e.column == "time" and "yesterday-ish" in str(e)
    data = connect_hamburg_data(
        df, split="subject", split_fractions=(1.0, 0.0, 0.0), policy=ValidationPolicy(bad_time="drop")
    )
    assert data.accounting.dropped == {"time unparseable": 1}
    assert data.accounting.events_used == len(df) - 1


def test_unsorted_events_fail_or_are_sorted():
    df = _toy().iloc[[0, 1, 3, 2, 4, 5, 6, 7, 8, 9]].reset_index(drop=True)
    e = _err(df, policy=ValidationPolicy(unsorted="fail"))
    assert e.column == "time" and "ED//ARRIVAL" in str(e)
    data = connect_hamburg_data(df, split="subject", split_fractions=(1.0, 0.0, 0.0))
    assert data.accounting.repaired


def test_duplicates_fail_or_drop_counted():
    df = pd.concat([_toy(), _toy().iloc[[3]]]).sort_values(["subject_id", "time"], na_position="first", kind="stable")
    e = _err(df, policy=ValidationPolicy(duplicates="fail"))
    assert "duplicate" in str(e) and "VITAL//PULSE" in str(e)
    data = connect_hamburg_data(df, split="subject", split_fractions=(1.0, 0.0, 0.0))
    assert data.accounting.dropped == {"duplicate event": 1}
    assert data.accounting.events_in == len(df) == data.accounting.events_used + 1


def test_out_of_range_fail_clip_drop():
    df = _toy()
    df.loc[3, "numeric_value"] = 900.0  # a pulse of 900/min
    e = _err(df)
    assert e.column == "numeric_value" and "900" in str(e) and "physiological" in str(e)
    clip = connect_hamburg_data(
        df, split="subject", split_fractions=(1.0, 0.0, 0.0), policy=ValidationPolicy(out_of_range="clip")
    )
    assert clip.accounting.repaired["numeric_value clipped to physiological range"] == 1
    drop = connect_hamburg_data(
        df, split="subject", split_fractions=(1.0, 0.0, 0.0), policy=ValidationPolicy(out_of_range="drop")
    )
    assert drop.accounting.dropped == {"numeric_value outside physiological range": 1}


def test_null_code_named():
    df = _toy()
    df.loc[2, "code"] = None
    e = _err(df)
    assert e.column == "code" and "null" in str(e)


def test_foreign_meds_data_static_birth_death_unknown_codes():
    data = connect_hamburg_data(_toy(), split="subject", split_fractions=(1.0, 0.0, 0.0))
    acc = data.accounting
    assert acc.events_in == 10 and acc.events_used == 10 and not acc.dropped
    assert any("no pathway_id" in n for n in acc.notes)
    assert set(data.schema.missing_tasks) == set(data.schema.task_declarations()) | set(data.schema.missing_tasks)
    assert "adverse_event" in data.schema.missing_tasks and not data.schema.tasks
    b = data.batch([0, 1])
    b.check()
    # subject 1: SEX, BIRTH (static head) + 4 timed events; subject 2: SEX + 3 timed events
    assert b.lengths.tolist() == [6, 4]
    codes = data.schema.categorical_vocab["code"]
    assert [codes[i] for i in b.categorical["code"][0, :6].tolist()] == [
        "SEX//F",
        "MEDS_BIRTH",
        "ED//ARRIVAL",
        "VITAL//PULSE",
        "LAB//LACTATE",
        "MEDS_DEATH",
    ]
    assert b.time_since_prev_h[0, :6].tolist() == pytest.approx([0, 0, 0, 10 / 60, 110 / 60, 28])
    assert b.numeric_missing[1, :, 1].all()  # no birth for subject 2: age missing, not invented
    assert not b.numeric_missing[0, :6, 1].any()
    assert b.day_of_week[0, 2].item() == 0  # 2024-01-01 was a Monday
    assert b.hour_of_day[0, 2].item() == pytest.approx(8.0)


def test_inference_reuses_schema_and_handles_unknown_codes():
    train = connect_hamburg_data(_toy(), split="subject", split_fractions=(1.0, 0.0, 0.0))
    new = _toy()
    new.loc[4, "code"] = "LAB//NEVER_SEEN"
    e = _err(new, schema=train.schema, policy=ValidationPolicy(unknown_code="fail"))
    assert e.column == "code" and "LAB//NEVER_SEEN" in str(e)
    data = connect_hamburg_data(new, split="subject", split_fractions=(1.0, 0.0, 0.0), schema=train.schema)
    assert data.accounting.repaired["code unknown to the fitted schema, encoded as <unk>"] == 1
    assert data.batch([0]).categorical["code"][0, 4].item() == 1
    dropped = connect_hamburg_data(
        new,
        split="subject",
        split_fractions=(1.0, 0.0, 0.0),
        schema=train.schema,
        policy=ValidationPolicy(unknown_code="drop"),
    )
    assert dropped.accounting.dropped == {"code unknown to the fitted schema": 1}


def test_synthetic_folder_accounting_and_labels(small_root, small):
    data = connect_hamburg_data(small_root)
    acc = data.accounting
    assert acc.events_in == len(small.events) == acc.events_used + acc.events_dropped
    assert not data.schema.missing_tasks
    for task, c in acc.label_rows.items():
        assert c["unmatched (no event at prediction_time)"] == 0, task
    assert "events in" in data.report()


def test_batch_labels_agree_with_label_files(small_root, small):
    data = connect_hamburg_data(small_root)
    idx = data.indices("train")[:64]
    b = data.batch(idx)
    b.check()
    enc = data.encoded
    # independent path: pandas merge of the label file onto the raw events of these pathways
    ev = small.events
    for k in (0, 5, 17):
        pid = int(b.pathway_id[k])
        raw = ev[(ev["pathway_id"] == pid)]
        n_static = int(
            (ev["subject_id"] == int(b.subject_id[k])).sum()
            - ev["pathway_id"].notna()[ev["subject_id"] == int(b.subject_id[k])].sum()
        )
        assert int(b.lengths[k]) == len(raw) + n_static
        lab = small.labels["adverse_event"]
        m = raw.merge(lab, left_on=["subject_id", "time"], right_on=["subject_id", "prediction_time"], how="left")
        want = m["boolean_value"].astype("float").to_numpy()
        got = b.labels["adverse_event"][k, n_static : int(b.lengths[k])].numpy()
        got_mask = b.label_mask["adverse_event"][k, n_static : int(b.lengths[k])].numpy()
        np.testing.assert_array_equal(got_mask, ~np.isnan(want))
        np.testing.assert_array_equal(got[got_mask], want[~np.isnan(want)])
    r = small.labels["readmission_30d"].set_index(["subject_id", "prediction_time"])["boolean_value"]
    assert b.label_mask["readmission_30d"].any()
    assert b.labels["readmission_30d"].shape == (64,)
    del enc, r


def test_padding_zero_and_masks(small_root):
    data = connect_hamburg_data(small_root)
    b = data.batch(data.indices("tuning")[:16])
    pad = ~b.mask
    assert pad.any()
    for name, t in b.categorical.items():
        assert (t[pad] == 0).all(), name
    assert (b.numeric[pad] == 0).all() and b.numeric_missing[pad].all()
    assert (b.time_since_prev_h[pad] == 0).all() and (b.time_since_start_h[pad] == 0).all()
    for task, m in b.label_mask.items():
        if m.dim() == 2:
            assert not m[pad].any(), task
    assert (b.categorical["code"][b.mask] > 0).all()
    assert torch.equal(b.mask.sum(1), b.lengths)


def test_normalisation_uses_training_split_only(small_root):
    data = connect_hamburg_data(small_root)
    enc, sch = data.encoded, data.schema
    code_col = list(sch.categorical_vocab).index("code")
    pulse = sch.lookup["code"]["VITAL//PULSE"]
    owner = np.repeat(np.arange(enc.lengths.size), enc.lengths)
    train = enc.split[owner] == "train"
    sel = (enc.categorical[:, code_col] == pulse) & ~enc.numeric_missing[:, 0]
    z_train = enc.numeric[sel & train, 0]
    assert abs(z_train.mean()) < 1e-3 and abs(z_train.std() - 1) < 1e-2
    z_other = enc.numeric[sel & ~train, 0]
    assert abs(z_other.mean()) > 1e-4  # other splits are not re-standardised


def test_splits_never_share_a_subject(small_root, small):
    start = pd.Timestamp(small.config.start)
    for kw in (
        {"split": "file"},
        {"split": "subject", "seed": 3},
        {
            "split": "temporal",
            "temporal_cutoffs": (str(start + pd.Timedelta(days=14)), str(start + pd.Timedelta(days=18))),
        },
        {"split": "crisis", "holdout_window": (str(start + pd.Timedelta(days=13)), str(start + pd.Timedelta(days=18)))},
    ):
        data = connect_hamburg_data(small_root, **kw)
        per = pd.DataFrame({"s": data.encoded.subject_id, "split": data.encoded.split})
        assert (per.groupby("s")["split"].nunique() == 1).all(), kw
        assert set(per["split"]) == {"train", "tuning", "held_out"}, kw
    # crisis: every subject with a pathway starting in the window is held out
    w0, w1 = start + pd.Timedelta(days=13), start + pd.Timedelta(days=18)
    pw = data.pathways
    inside = pw[(pw["start"] >= w0) & (pw["start"] < w1)]["subject_id"]
    assert (pw.set_index("subject_id").loc[inside, "split"] == "held_out").all()


def test_truncation_is_explicit_and_counted(small_root):
    with pytest.raises(DataValidationError, match="max_len"):
        connect_hamburg_data(small_root, max_len=64)
    data = connect_hamburg_data(small_root, max_len=64, truncation="keep_last")
    acc = data.accounting
    cut = acc.dropped["truncated (max_len=64, keep_last)"]
    assert cut > 0 and acc.events_in == acc.events_used + acc.events_dropped
    assert data.encoded.lengths.max() <= 64


def test_dataloader_deterministic_and_bucketed(small_root):
    data = connect_hamburg_data(small_root)
    run = lambda: [
        b.pathway_id.tolist()
        for b in data.dataloader("train", batch_size=32, shuffle=True, seed=7, bucket_by_length=True)
    ]
    a, b = run(), run()
    assert a == b
    assert sorted(sum(a, [])) == sorted(data.encoded.pathway_id[data.indices("train")].tolist())
    plain = [b.mask.numel() for b in data.dataloader("train", batch_size=32, shuffle=True, seed=7)]
    bucket = [
        b.mask.numel() for b in data.dataloader("train", batch_size=32, shuffle=True, seed=7, bucket_by_length=True)
    ]
    assert sum(bucket) < sum(plain)  # bucketing reduces padding


def test_schema_round_trip(small_root, tmp_path):
    data = connect_hamburg_data(small_root)
    data.schema.save(tmp_path / "schema.json")
    back = DatasetSchema.load(tmp_path / "schema.json")
    assert back.vocab_sizes == data.schema.vocab_sizes
    assert back.task_declarations() == data.schema.task_declarations()
    assert back.code_stats == data.schema.code_stats


def test_several_shards_and_optional_text_value(tmp_path):
    df = _toy()
    root = tmp_path / "user"
    for k, sub in enumerate((1, 2)):
        part = df[df["subject_id"] == sub]
        t = pa.table(
            {
                "subject_id": pa.array(part["subject_id"], pa.int64()),
                "time": pa.array(part["time"], pa.timestamp("us")),
                "code": pa.array(part["code"], pa.string()),
                "numeric_value": pa.array(part["numeric_value"], pa.float32()),
            }
        )
        (root / "data" / "train").mkdir(parents=True, exist_ok=True)
        pq.write_table(t, root / "data" / "train" / f"{k}.parquet")
    data = connect_hamburg_data(root)
    assert data.accounting.events_used == 10
    assert len(data.pathways) == 2
    assert meds.train_split == "train"


def test_data_package_never_imports_model_code_and_torch_only_in_batch():
    """Static check of every import in hamburg_mamba/data (the package root may load ops itself)."""
    import ast
    from pathlib import Path

    import hamburg_mamba.data as d

    for path in Path(d.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert not name.startswith(("hamburg_mamba.nn", "hamburg_mamba.ops")), (path.name, name)
                if name.split(".")[0] == "torch":
                    assert path.name == "batch.py", (path.name, name)
    code = (
        "import sys, importlib.util as u; loc = u.find_spec('hamburg_mamba').submodule_search_locations[0]; "
        "pkg = type(sys)('hamburg_mamba'); pkg.__path__ = [loc]; sys.modules['hamburg_mamba'] = pkg; "
        "import hamburg_mamba.data.connector, hamburg_mamba.data.synthetic, hamburg_mamba.data.meds_io; "
        "bad=[m for m in sys.modules if m.split('.')[0]=='torch' or m.startswith(('hamburg_mamba.nn', "
        "'hamburg_mamba.ops'))]; assert not bad, bad[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_duplicate_check_matches_pandas_on_near_duplicates():
    """The candidate-key duplicate check marks exactly what pandas' all-column check marks."""
    from hamburg_mamba.data.validate import _duplicated

    df = pd.concat([_toy()] * 3, ignore_index=True)
    df["unit"] = ["ED", None] * 15
    df.loc[12, "numeric_value"] = 88.5  # same key as row 2 of the first copy, other value: not a duplicate
    df.loc[21, "unit"] = "ward"
    df.loc[[6, 16], "numeric_value"] = np.nan  # null values compare equal, as in pandas
    df["time"] = df["time"].astype("datetime64[us]")
    for keep in ("first", False):
        want = df.duplicated(keep=keep).to_numpy()
        np.testing.assert_array_equal(_duplicated(df, keep=keep), want)
    assert 0 < df.duplicated().sum() < 20


def test_duplicate_label_rows_are_named(small_root, small):
    lab = small.labels["adverse_event"]
    twice = pd.concat([lab, lab.iloc[[5]]], ignore_index=True)
    with pytest.raises(DataValidationError) as e:
        connect_hamburg_data(small_root, labels={"adverse_event": twice})
    assert e.value.column == "prediction_time" and "adverse_event" in str(e.value) and e.value.count == 2
    # a repeated label row that matches no event is caught as well
    stray = lab.iloc[[0, 0]].assign(prediction_time=pd.Timestamp("1999-01-01"))
    with pytest.raises(DataValidationError, match="duplicate"):
        connect_hamburg_data(small_root, labels={"adverse_event": pd.concat([lab, stray], ignore_index=True)})
