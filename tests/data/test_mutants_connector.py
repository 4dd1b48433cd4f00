"""Connector paths that mutation testing found unguarded: each test fails with one plausible one-line bug.

A MEDS folder's status feed reaching the events, a pathway id shared by two subjects, the label accounting,
an oracle table whose rows do not line up with the labels, and the age statistics from two training ages.
"""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import DataValidationError, connect_hamburg_data
from hamburg_mamba.data.connector import DAYS_PER_YEAR
from hamburg_mamba.data.meds_io import read_meds
from hamburg_mamba.data.schema import NUMERIC_FEATURES

H = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2023-08-10 08:00")


def _status_columns(data) -> list[int]:
    names = list(data.schema.context_transforms)
    return [len(NUMERIC_FEATURES) + j for j, n in enumerate(names) if n.startswith("status:")]


def test_a_meds_folders_status_feed_reaches_the_events(tiny_root):
    """Connected from the folder, the status inputs equal those of the same tables passed by hand, and many
    events carry them (without the feed every status input would be missing)."""
    from_folder = connect_hamburg_data(tiny_root, split="subject")
    blob = read_meds(tiny_root)
    by_hand = connect_hamburg_data(
        blob["events"],
        labels=blob["labels"],
        oracle=blob["oracle"],
        hospital_status=blob["system"]["hospital_hourly"],
        hospital_table=blob["hospitals"],
        splits=from_folder.splits,
        split="file",
    )
    cols = _status_columns(from_folder)
    assert cols, "the tiny city has status inputs"
    present = ~from_folder.encoded.numeric_missing[:, cols]
    assert present.mean() > 0.5
    np.testing.assert_array_equal(present, ~by_hand.encoded.numeric_missing[:, cols])
    np.testing.assert_array_equal(from_folder.encoded.numeric[:, cols], by_hand.encoded.numeric[:, cols])


def _events(rows) -> pd.DataFrame:
    ev = pd.DataFrame(rows, columns=["subject_id", "pathway_id", "time"])
    ev["code"] = "VITAL//PULSE"
    ev["numeric_value"] = 80.0
    return ev


def test_a_pathway_id_shared_by_two_subjects_is_refused_naming_it():
    ev = _events([(1, 7, T0), (1, 7, T0 + H), (2, 7, T0 + 2 * H), (2, 8, T0 + 3 * H)])
    with pytest.raises(DataValidationError, match="column 'pathway_id': one pathway_id used by several subjects"):
        connect_hamburg_data(ev, split="subject")


def _labelled_case():
    ev = _events([(s, 10 * s + k, T0 + (4 * s + 2 * k + i) * H) for s in (1, 2, 3) for k in (0, 1) for i in (0, 1)])
    label = ev[["subject_id", "time"]].rename(columns={"time": "prediction_time"})
    label = label.assign(boolean_value=(np.arange(len(ev)) % 3 == 0))
    unmatched = pd.DataFrame({"subject_id": [3], "prediction_time": [T0 + 100 * H], "boolean_value": [True]})
    return ev, pd.concat([label, unmatched], ignore_index=True)


def test_label_accounting_counts_rows_in_matched_and_unmatched():
    ev, label = _labelled_case()
    data = connect_hamburg_data(ev, labels={"adverse_event": label}, split="subject")
    assert data.accounting.label_rows["adverse_event"] == {
        "rows in": 13,
        "matched": 12,
        "unmatched (no event at prediction_time)": 1,
    }


def test_oracle_rows_in_another_order_than_the_labels_are_joined_by_key():
    """The oracle table usually repeats the label rows in the same order (a fast path); shuffled and missing
    one row, each value must still land on its own (subject, time) event."""
    ev, label = _labelled_case()
    oracle = label.iloc[:-1].drop(columns="boolean_value").copy()
    oracle["float_value"] = np.linspace(0.05, 0.6, len(oracle))
    oracle = oracle.sample(frac=1.0, random_state=3).iloc[1:]
    data = connect_hamburg_data(ev, labels={"adverse_event": label}, oracle={"adverse_event": oracle}, split="subject")
    enc = data.encoded
    _, mask, got = enc.event_labels["adverse_event"]
    times = pd.to_datetime(enc.time_us, unit="us")
    subjects = np.repeat(enc.subject_id, enc.lengths)
    want = dict(
        zip(zip(oracle["subject_id"], oracle["prediction_time"], strict=True), oracle["float_value"], strict=True)
    )
    checked = 0
    for i in np.nonzero(mask)[0]:
        key = (subjects[i], times[i])
        assert got[i] == pytest.approx(want.get(key, 0.0), abs=1e-7), key
        checked += key in want
    assert checked == len(oracle)


def test_age_statistics_from_two_training_ages():
    """Two training pathways: the mean and the (population) standard deviation of their ages, not a default."""
    births = {1: pd.Timestamp("1950-01-01"), 2: pd.Timestamp("1980-06-01"), 3: pd.Timestamp("1990-01-01")}
    rows = [(s, 10 * s, T0 + (s + i) * H) for s in births for i in (0, 1)]
    ev = _events(rows)
    static = pd.DataFrame(
        {"subject_id": list(births), "pathway_id": np.nan, "time": list(births.values()), "code": "MEDS_BIRTH"}
    )
    ev = pd.concat([static, ev], ignore_index=True).sort_values(["subject_id", "time"], ignore_index=True)
    splits = pd.DataFrame({"subject_id": [1, 2, 3], "split": ["train", "train", "held_out"]})
    data = connect_hamburg_data(ev, splits=splits, split="file")
    ages = np.array([((T0 + s * H) - births[s]) / pd.Timedelta(days=1) / DAYS_PER_YEAR for s in (1, 2)])
    assert data.schema.age_stats.mean == pytest.approx(ages.mean(), rel=1e-12)
    assert data.schema.age_stats.std == pytest.approx(ages.std(), rel=1e-12)
    assert data.schema.age_stats.count == 2
