"""Every task's labels in the batches equal the label files merged by hand, and the temporal split hides
exactly the labels docs/experiments.md promises ("label hygiene").

The reference is a pandas merge of the raw MEDS events with the label (and oracle) tables on
(subject_id, time) == (subject_id, prediction_time), written here; pathway-level labels (readmission) are
merged on the pathway's own last event time, so a join to a neighbouring pathway of the same subject fails.
Uses the session-scoped `small` cohort of tests/data/conftest.py (21 days, about 2,000 pathways).
"""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import connect_hamburg_data
from hamburg_mamba.data.schema import TASKS
from hamburg_mamba.data.splits import mask_labels_after_cutoffs

CHUNK = 256  # pathways per batch: every pathway of the cohort is checked, in batches of this size
EVENT_TASKS = [t for t, s in TASKS.items() if s.level == "event"]
PATHWAY_TASKS = [t for t, s in TASKS.items() if s.level == "pathway"]


@pytest.fixture(scope="module")
def small_data(small_root):
    return connect_hamburg_data(small_root)


def _value_column(table):
    return "boolean_value" if "boolean_value" in table.columns else "float_value"


def _batched(data, field, task):
    """(value, mask) of every pathway in index order: event tasks as the concatenation over pathways of their
    timed positions (static head cut off), pathway tasks one per pathway."""
    values, masks, heads = [], [], []
    n = data.encoded.lengths.size
    for start in range(0, n, CHUNK):
        b = data.batch(np.arange(start, min(start + CHUNK, n)))
        val = getattr(b, field)[task].numpy()
        has = b.label_mask[task].numpy() if field == "labels" else None
        if val.ndim == 1:
            values.append(val)
            masks.append(has)
            continue
        stage = b.categorical["stage"].numpy()
        static = data.schema.lookup["stage"]["static"]
        timed = b.mask.numpy() & (stage != static)  # (B, L), static facts are repeated at the head
        heads.append((b.mask.numpy() & (stage == static)).sum(1))
        values.append(val[timed])
        masks.append(None if has is None else has[timed])
    return np.concatenate(values), None if field != "labels" else np.concatenate(masks), heads


def _timed_events_in_pathway_order(small, data):
    """The raw timed events, pathways in the connector's index order, each pathway's events in file order."""
    ev = small.events[small.events["pathway_id"].notna()][["subject_id", "time", "pathway_id"]].copy()
    rank = pd.Series(np.arange(data.encoded.pathway_id.size), index=data.encoded.pathway_id)
    ev["rank"] = rank.reindex(ev["pathway_id"].astype(np.int64)).to_numpy()
    return ev.sort_values("rank", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("task", EVENT_TASKS)
def test_event_labels_equal_the_label_file_merged_by_hand(small, small_data, task):
    ev = _timed_events_in_pathway_order(small, small_data)
    for field, table in (("labels", small.labels[task]), ("oracle", small.oracle[task])):
        col = _value_column(table)
        want = ev.merge(
            table[["subject_id", "prediction_time", col]],
            how="left",
            left_on=["subject_id", "time"],
            right_on=["subject_id", "prediction_time"],
            validate="many_to_one",
        )[col]
        want = want.astype("float64").to_numpy()
        got, got_mask, heads = _batched(small_data, field, task)
        assert got.size == want.size, "timed events laid out"
        has = ~np.isnan(want)
        if field == "labels":
            np.testing.assert_array_equal(got_mask, has, err_msg=task)
        np.testing.assert_array_equal(got[has], want[has].astype(np.float32), err_msg=f"{task} {field}")
        assert has.sum() > 100 and (field == "oracle" or len(np.unique(want[has])) > 1)
    # the static head of each pathway is its subject's static facts (no labels there)
    n_static = small.events[small.events["pathway_id"].isna()].groupby("subject_id").size()
    want_heads = n_static.reindex(small_data.encoded.subject_id).fillna(0).to_numpy()
    np.testing.assert_array_equal(np.concatenate(heads), want_heads)


@pytest.mark.parametrize("task", PATHWAY_TASKS)
def test_pathway_labels_are_joined_at_the_pathways_own_discharge(small, small_data, task):
    ev = small.events[small.events["pathway_id"].notna()]
    end = ev.groupby("pathway_id")["time"].max().rename("end").reset_index()
    pw = pd.DataFrame({"pathway_id": small_data.encoded.pathway_id, "subject_id": small_data.encoded.subject_id})
    pw = pw.merge(end, on="pathway_id", how="left", validate="one_to_one")
    for field, table in (("labels", small.labels[task]), ("oracle", small.oracle[task])):
        col = _value_column(table)
        want = pw.merge(
            table[["subject_id", "prediction_time", col]],
            how="left",
            left_on=["subject_id", "end"],
            right_on=["subject_id", "prediction_time"],
            validate="one_to_one",
        )[col]
        want = want.astype("float64").to_numpy()
        got, got_mask, _ = _batched(small_data, field, task)
        has = ~np.isnan(want)
        if field == "labels":
            np.testing.assert_array_equal(got_mask, has)
        np.testing.assert_array_equal(got[has], want[has].astype(np.float32))
        assert has.sum() > 100
    # a subject's pathways have different outcomes, so a join to the neighbouring pathway would differ
    y = pw.assign(y=want).dropna(subset=["y"])
    assert (y.groupby("subject_id")["y"].nunique() > 1).any()


# --- label hygiene of the temporal split ---

C0, C1 = pd.Timestamp("2024-03-10"), pd.Timestamp("2024-03-20")
H = pd.Timedelta(hours=1)


def _hygiene_case(tick):
    """Three subjects by first pathway start: 1 train (a second pathway after C1), 2 tuning, 3 held-out.
    Events sit one `tick` before, exactly at and after each cut-off; every event has a label."""
    rows = [  # subject, pathway, time
        (1, 12, C0 - 30 * H),
        (1, 12, C0 - 20 * H),
        (1, 10, C0 - 5 * H),
        (1, 10, C0 - tick),
        (1, 10, C0),
        (1, 10, C0 + 3 * H),
        (1, 11, C1 + 2 * H),
        (1, 11, C1 + 4 * H),
        (2, 20, C1 - 2 * H),
        (2, 20, C1 - tick),
        (2, 20, C1),
        (2, 20, C1 + 6 * H),
        (3, 30, C1 + H),
        (3, 30, C1 + 9 * H),
    ]
    ev = pd.DataFrame(rows, columns=["subject_id", "pathway_id", "time"])
    ev["code"] = "VITAL//PULSE"
    ev["numeric_value"] = 80.0
    labels = {
        "adverse_event": pd.DataFrame(
            {
                "subject_id": ev["subject_id"],
                "prediction_time": ev["time"],
                "boolean_value": np.arange(len(ev)) % 2 == 0,
            }
        )
    }
    ends = ev.groupby("pathway_id").agg(subject_id=("subject_id", "first"), prediction_time=("time", "max"))
    labels["readmission_30d"] = ends.reset_index(drop=True).assign(boolean_value=True)
    return ev, labels


# By hand, per pathway in time order: training labels at or after C0 are hidden (pathway 10 from C0 on, all of
# 11), tuning labels at or after C1 (pathway 20 from C1 on), held-out labels never.
KEPT = {
    12: [True, True],
    10: [True, True, False, False],
    11: [False, False],
    20: [True, True, False, False],
    30: [True, True],
}
# readmission is read at each pathway's end: 10 ends after C0, 11 after C1, 20 after C1 (hidden); 12 ends before
# C0 and 30 is held out (kept)
KEPT_PATHWAY = {10: False, 11: False, 12: True, 20: False, 30: True}


def _check_hygiene(tick):
    ev, labels = _hygiene_case(tick)
    data = connect_hamburg_data(ev, labels=labels, split="temporal", temporal_cutoffs=(str(C0), str(C1)))
    enc = data.encoded
    assert dict(zip(enc.subject_id, enc.split, strict=True)) == {1: "train", 2: "tuning", 3: "held_out"}
    hidden = mask_labels_after_cutoffs(data, (str(C0), str(C1)))
    _, mask, _ = enc.event_labels["adverse_event"]
    got = {
        int(p): mask[a:b].tolist() for p, a, b in zip(enc.pathway_id, enc.offsets[:-1], enc.offsets[1:], strict=True)
    }
    assert got == KEPT
    assert hidden["adverse_event"] == sum(not k for v in KEPT.values() for k in v) == 6
    _, pmask, _ = enc.pathway_labels["readmission_30d"]
    assert dict(zip(enc.pathway_id.tolist(), pmask.tolist(), strict=True)) == KEPT_PATHWAY
    assert hidden["readmission_30d"] == 3


def test_temporal_split_hides_labels_at_and_after_the_splits_own_period():
    _check_hygiene(pd.Timedelta(seconds=1))


def test_temporal_split_label_hygiene_to_the_microsecond():
    _check_hygiene(pd.Timedelta(microseconds=1))
