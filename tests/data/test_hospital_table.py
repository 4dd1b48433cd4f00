"""Hospital descriptors as per-event features: which hospital an event knows, the training ranks, hospitals the
table lacks, a schema applied to another city's table, and the errors for a malformed table."""

import json

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import DatasetSchema, connect_hamburg_data
from hamburg_mamba.data.validate import DataValidationError

T0 = pd.Timestamp("2024-03-01 00:00")
TABLE = pd.DataFrame({"hospital": ["A", "B", "C"], "beds": [100, 400, 900], "care_level": [1, 3, 2]})
ALL_TRAIN = dict(split="subject", split_fractions=(1.0, 0.0, 0.0))


def _events():
    """Three subjects: an ambulance pathway whose destination (B) is known from EMS//TRANSPORT on, and two
    walk-ins at A; subject 1 has a static birth fact."""
    rows = [
        (1, pd.NaT, "MEDS_BIRTH", None, None, None),
        (1, T0 + pd.Timedelta(hours=1), "EMS//DISPATCH", None, 1, None),
        (1, T0 + pd.Timedelta(hours=1.2), "VITAL//PULSE", 90.0, 1, None),
        (1, T0 + pd.Timedelta(hours=1.5), "EMS//TRANSPORT", None, 1, "B"),
        (1, T0 + pd.Timedelta(hours=2), "ED//ARRIVAL", None, 1, "B"),
        (1, T0 + pd.Timedelta(hours=3), "VITAL//PULSE", 95.0, 1, None),
    ]
    for s in (2, 3):
        rows += [
            (s, T0 + pd.Timedelta(hours=s), "ED//ARRIVAL", None, s, "A"),
            (s, T0 + pd.Timedelta(hours=s + 1), "VITAL//PULSE", 80.0, s, "A"),
        ]
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value", "pathway_id", "hospital"])


def _descriptors(data):
    """(N, K) descriptor inputs (NaN where missing) and their names."""
    names = [n for n in data.schema.numeric_features if n.startswith("hospital:")]
    cols = [data.schema.numeric_features.index(n) for n in names]
    x = data.encoded.numeric[:, cols].astype(float)
    return np.where(data.encoded.numeric_missing[:, cols], np.nan, x), names


def test_each_event_gets_the_hospital_it_knows_and_its_training_rank():
    data = connect_hamburg_data(_events(), hospital_table=TABLE, **ALL_TRAIN)
    x, names = _descriptors(data)
    assert names == ["hospital:beds", "hospital:care_level"]
    known = data.encoded.event_hospital_name
    # the ambulance before the departure and the static fact know no hospital: missing, not the destination's size
    np.testing.assert_array_equal(np.isnan(x[:, 0]), pd.isna(known))
    assert np.isnan(x[:3, 0]).all() and pd.isna(known[:3]).all()  # birth, dispatch, vital in the ambulance
    # training events: 4 at A (100 beds, level 1), 3 at B (400 beds, level 3). Mid-rank CDF of A's value:
    # 2/7, of B's: 4/7 + 3/14; rescaled from the first to the last knot, A is 0 and B is 1 (by hand)
    at_a, at_b = known == "A", known == "B"
    assert at_a.sum() == 4 and at_b.sum() == 3
    np.testing.assert_array_equal(x[at_a], 0.0)
    np.testing.assert_array_equal(x[at_b], 1.0)
    assert any("hospital descriptors (2 columns): attached to 7 of 9 timed events" in n for n in data.accounting.notes)


def test_an_unseen_hospital_gets_its_own_descriptors_not_unknown():
    train = connect_hamburg_data(_events(), hospital_table=TABLE, **ALL_TRAIN)
    other = _events()
    other["hospital"] = other["hospital"].replace({"A": "C"})  # C: in the table, never in training
    data = connect_hamburg_data(other, hospital_table=TABLE, schema=train.schema, **ALL_TRAIN)
    x, _ = _descriptors(data)
    at_c = data.encoded.event_hospital_name == "C"
    assert (data.encoded.event_hospital_id[at_c] == 1).all()  # the name is unknown to the vocabulary ...
    # ... its descriptors are not. 900 beds lie 500 beyond B's 400: rank 1 plus the bounded excess
    # 0.5 * 500 / (500 + 300), 300 the training interquartile range (100 .. 400 over the 7 training events);
    # level 2 lies between the training levels 1 and 3, so its rank is interpolated halfway
    np.testing.assert_allclose(x[at_c, 0], 1.0 + 0.5 * 500 / 800, rtol=1e-6)
    np.testing.assert_allclose(x[at_c, 1], 0.5)
    assert data.status_out_of_range.loc["hospital:beds", "train"] == pytest.approx(4 / 7)


def test_hospitals_absent_from_the_table_are_missing_and_counted():
    data = connect_hamburg_data(_events(), hospital_table=TABLE[TABLE["hospital"] != "B"], **ALL_TRAIN)
    x, _ = _descriptors(data)
    assert np.isnan(x[data.encoded.event_hospital_name == "B"]).all()
    assert any("3 of hospitals absent from the hospital table ['B']" in n for n in data.accounting.notes)


def test_a_schema_with_descriptors_on_data_without_a_table():
    train = connect_hamburg_data(_events(), hospital_table=TABLE, **ALL_TRAIN)
    blind = connect_hamburg_data(_events(), schema=train.schema, **ALL_TRAIN)
    x, _ = _descriptors(blind)
    assert np.isnan(x).all()
    assert any("no hospital table" in n for n in blind.accounting.notes)


def test_descriptors_switched_off_and_schemas_round_trip():
    off = connect_hamburg_data(_events(), hospital_table=TABLE, hospital_columns=(), **ALL_TRAIN)
    assert not any(n.startswith("hospital:") for n in off.schema.numeric_features)
    data = connect_hamburg_data(_events(), hospital_table=TABLE, hospital_columns=["beds"], **ALL_TRAIN)
    assert data.schema.numeric_features[-1] == "hospital:beds" and data.schema.hospital_columns == ("beds",)
    again = connect_hamburg_data(
        _events(), hospital_table=TABLE, schema=DatasetSchema.from_json(data.schema.to_json()), **ALL_TRAIN
    )
    np.testing.assert_array_equal(again.encoded.numeric, data.encoded.numeric)
    blob = json.loads(data.schema.to_json())
    for key in ("hospital_columns", "hospital_transforms"):
        blob.pop(key)
    blob["numeric_features"] = blob["numeric_features"][:-1]
    assert DatasetSchema.from_json(json.dumps(blob)).hospital_columns == ()  # schemas from before descriptors


@pytest.mark.parametrize(
    "table,named",
    [
        (TABLE.drop(columns="beds"), "beds"),
        (TABLE.drop(columns="hospital"), "hospital"),
        (TABLE.assign(beds=["many", "few", "some"]), "beds"),
        (TABLE.assign(beds=[100.0, -4.0, 9.0]), "beds"),
        (TABLE.assign(care_level=[1.0, np.inf, 2.0]), "care_level"),
        (TABLE.assign(hospital=["A", "A", "C"]), "hospital"),
    ],
)
def test_a_malformed_table_is_named(table, named):
    with pytest.raises(DataValidationError) as err:
        connect_hamburg_data(_events(), hospital_table=table, hospital_columns=["beds", "care_level"], **ALL_TRAIN)
    assert err.value.column == named


def test_column_choice_errors_are_named():
    with pytest.raises(DataValidationError, match="hospital_table"):
        connect_hamburg_data(_events(), hospital_table=TABLE[["hospital"]].assign(size=1), **ALL_TRAIN)
    with pytest.raises(ValueError, match="hospital_columns"):
        connect_hamburg_data(_events(), hospital_table=TABLE, hospital_columns=["beds", "beds"], **ALL_TRAIN)


def test_unnamed_rows_are_counted():
    table = pd.concat([TABLE, pd.DataFrame({"hospital": [None], "beds": [5], "care_level": [1]})], ignore_index=True)
    data = connect_hamburg_data(_events(), hospital_table=table, **ALL_TRAIN)
    assert any("1 rows without a hospital name ignored" in n for n in data.accounting.notes)
