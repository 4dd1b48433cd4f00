"""connect_hamburg_data on inputs that once connected without complaint and gave a wrong answer: codes without
training statistics, numeric and time-zone-aware times, ids that merged, labels outside {0, 1}, events before
birth, untimed vital signs. Each case now gives the right encoding or an error naming the column."""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import connect_hamburg_data
from hamburg_mamba.data.validate import DataValidationError, ValidationPolicy

T0 = pd.Timestamp("2024-01-01 08:00")  # a Monday
ALL_TRAIN = dict(split="subject", split_fractions=(1.0, 0.0, 0.0))


def _events():
    """Two subjects by hand: a static fact, a birth, timed events with and without values."""
    rows = [
        (1, None, "SEX//F", None),
        (1, T0 - pd.Timedelta(days=365 * 70), "MEDS_BIRTH", None),
        (1, T0, "ED//ARRIVAL", None),
        (1, T0 + pd.Timedelta(minutes=10), "VITAL//PULSE", 88.0),
        (1, T0 + pd.Timedelta(hours=2), "LAB//LACTATE", 2.5),
        (1, T0 + pd.Timedelta(hours=30), "MEDS_DEATH", None),
        (2, None, "SEX//M", None),
        (2, T0 + pd.Timedelta(hours=1), "ED//ARRIVAL", None),
        (2, T0 + pd.Timedelta(hours=1, minutes=5), "VITAL//PULSE", 120.0),
        (2, T0 + pd.Timedelta(hours=3), "LAB//LACTATE", 4.0),
    ]
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])


def _connect(df, **kw):
    return connect_hamburg_data(df, **{**ALL_TRAIN, **kw})


def _error(df, **kw) -> DataValidationError:
    with pytest.raises(DataValidationError) as e:
        _connect(df, **kw)
    return e.value


# --- codes without training statistics ------------------------------------------------------------------


def test_value_of_a_code_without_training_statistics_is_missing_and_counted():
    train = _connect(_events())
    new = _events()
    new.loc[5, "numeric_value"] = 5000.0  # MEDS_DEATH never carried a value in training
    data = _connect(new, schema=train.schema)
    b = data.batch([0])
    codes = data.schema.categorical_vocab["code"]
    assert codes[int(b.categorical["code"][0, 5])] == "MEDS_DEATH"
    assert b.numeric[0, 5, 0].item() == 0.0 and b.numeric_missing[0, 5, 0].item()
    assert data.accounting.repaired == {"numeric_value of a code without training statistics, marked missing": 1}
    # the pulse still gets its z-score from the two training pulses (88, 120: mean 104, std 16 * sqrt(2))
    assert b.numeric[0, 3, 0].item() == pytest.approx((88.0 - 104.0) / (16.0 * np.sqrt(2.0)), rel=1e-6)


# --- time columns ----------------------------------------------------------------------------------------


def _epoch_seconds(t: pd.Series) -> pd.Series:
    return pd.Series([None if pd.isna(x) else int(x.timestamp()) for x in t], dtype="Int64")


def test_numeric_times_are_refused_without_a_unit():
    df = _events().assign(time=lambda f: _epoch_seconds(f["time"]))
    e = _error(df)
    assert e.column == "time" and "datetime64" in str(e) and "time_unit" in str(e)


def test_numeric_times_with_a_unit_give_the_same_hours():
    df = _events().assign(time=lambda f: _epoch_seconds(f["time"]))
    b = _connect(df, time_unit="s").batch([0, 1])
    # subject 1: arrival 08:00, pulse 08:10, lactate 10:00, death 14:00 the next day
    assert b.time_since_prev_h[0, 2:6].tolist() == pytest.approx([0.0, 10 / 60, 110 / 60, 28.0])
    assert b.hour_of_day[0, 2].item() == pytest.approx(8.0)
    with pytest.raises(ValueError, match="time_unit"):
        _connect(df, time_unit="hours")


def test_numeric_prediction_times_follow_the_same_rule():
    labels = pd.DataFrame(
        {"subject_id": [1, 2], "prediction_time": [T0, T0 + pd.Timedelta(hours=1)], "boolean_value": [True, False]}
    )
    as_seconds = labels.assign(prediction_time=lambda f: _epoch_seconds(f["prediction_time"]))
    e = _error(_events(), labels={"adverse_event": as_seconds})
    assert e.column == "prediction_time" and "datetime64" in str(e)
    df = _events().assign(time=lambda f: _epoch_seconds(f["time"]))
    data = _connect(df, labels={"adverse_event": as_seconds}, time_unit="s")
    assert data.accounting.label_rows["adverse_event"]["matched"] == 2


def test_time_zone_aware_times_become_naive_utc():
    df = _events().assign(time=lambda f: f["time"].dt.tz_localize("Europe/Berlin"))  # winter: UTC+1
    data = _connect(df)
    b = data.batch([0])
    assert b.hour_of_day[0, 2].item() == pytest.approx(7.0)  # 08:00 in Hamburg is 07:00 UTC
    assert b.time_since_prev_h[0, 3].item() == pytest.approx(10 / 60)
    assert any("naive UTC" in n for n in data.accounting.notes)


@pytest.mark.parametrize(
    "times",
    [
        ["2024-01-01T08:00+01:00", "2024-06-01T08:00+02:00"],
        [pd.Timestamp("2024-01-01 08:00", tz="UTC"), pd.Timestamp("2024-06-01 08:00", tz="Europe/Berlin")],
        [pd.Timestamp("2024-01-01 08:00", tz="UTC"), pd.Timestamp("2024-06-01 08:00")],
    ],
    ids=["string offsets", "two zones", "naive and aware"],
)
def test_mixed_utc_offsets_are_refused(times):
    df = pd.DataFrame(
        {"subject_id": [1, 1], "time": pd.Series(times, dtype=object), "code": ["ED//ARRIVAL", "ED//TRIAGE"]}
    )
    e = _error(df)
    assert e.column == "time" and "mixed" in str(e)


# --- ids -------------------------------------------------------------------------------------------------


def test_string_subject_ids_are_refused_not_merged():
    df = _events().astype({"subject_id": object})
    df.loc[df["subject_id"] == 1, "subject_id"] = "1"
    df.loc[df["subject_id"] == 2, "subject_id"] = "001"  # as a number, the same id as "1"
    e = _error(df)
    assert e.column == "subject_id" and "001" in str(e) and e.count == len(df)


@pytest.mark.parametrize(
    "ids,problem",
    [
        (pd.Series([True] * 6 + [False] * 4), "boolean"),
        (pd.Series([2**63 + 1] * 6 + [2] * 4, dtype=np.uint64), "int64 range"),
        (pd.Series([1.0] * 6 + [2.5] * 4), "fractional"),
    ],
    ids=["bool", "uint64 above int64", "fractional float"],
)
def test_subject_ids_that_would_merge_or_wrap_are_refused(ids, problem):
    e = _error(_events().assign(subject_id=ids))
    assert e.column == "subject_id" and problem in str(e)


def test_fractional_pathway_ids_are_refused():
    df = _events().assign(pathway_id=[None, None, 1.2, 1.7, 1.7, 1.7, None, 2.0, 2.0, 2.0])
    e = _error(df)
    assert e.column == "pathway_id" and "fractional" in str(e) and e.count == 4


def test_string_pathway_ids_are_kept_one_to_one():
    df = _events().assign(pathway_id=[None, None, "1", "1", "001", "001", None, "V7", "V7", "V7"])
    data = _connect(df)
    acc = data.accounting
    assert acc.events_used == len(df) and not acc.dropped
    assert sorted(data.pathways["pathway_key"]) == ["001", "1", "V7"]
    n_timed = data.pathways.set_index("pathway_key")["n_timed"].to_dict()
    assert n_timed == {"1": 2, "001": 2, "V7": 3}


# --- labels ----------------------------------------------------------------------------------------------


def _labels(values, column="boolean_value"):
    return pd.DataFrame(
        {
            "subject_id": [1, 1, 2],
            "prediction_time": [T0, T0 + pd.Timedelta(minutes=10), T0 + pd.Timedelta(hours=1)],
            column: values,
        }
    )


def test_binary_labels_outside_zero_one_are_refused():
    e = _error(_events(), labels={"adverse_event": _labels([0.0, 7.0, 1.0])})
    assert e.column == "boolean_value" and "adverse_event" in str(e) and "0 or 1" in str(e) and e.count == 1
    assert "7.0" in str(e)


@pytest.mark.parametrize(
    "task,column,values",
    [
        ("adverse_event", "boolean_value", [0.0, np.nan, 1.0]),
        ("unit_workload", "float_value", [1.5, np.inf, 2.0]),
        ("adverse_event", "boolean_value", [1.0, -np.inf, 0.0]),
    ],
)
def test_null_or_infinite_labels_are_refused(task, column, values):
    e = _error(_events(), labels={task: _labels(values, column)})
    assert e.column == column and repr(task) in str(e) and e.count == 1


def test_string_labels_name_the_task_and_column():
    e = _error(_events(), labels={"unit_workload": _labels(["high", "low", "low"], "float_value")})
    assert e.column == "float_value" and "'unit_workload'" in str(e) and "high" in str(e)


def test_valid_labels_still_match():
    data = _connect(
        _events(),
        labels={
            "adverse_event": _labels([False, True, False]),
            "unit_workload": _labels([1.5, 2.0, 0.5], "float_value"),
        },
    )
    b = data.batch([0, 1])
    assert b.labels["adverse_event"][0, 2:4].tolist() == [0.0, 1.0]
    assert b.labels["unit_workload"][1, 1].item() == 0.5


# --- birth and untimed events ----------------------------------------------------------------------------


def _born_late():
    df = _events()
    df.loc[1, "time"] = T0 + pd.Timedelta(hours=1)  # born an hour after the arrival and the pulse
    return df.iloc[[0, 2, 3, 1, 4, 5, 6, 7, 8, 9]].reset_index(drop=True)


def test_events_before_birth_fail_or_are_dropped_and_counted():
    e = _error(_born_late())
    assert e.column == "time" and "MEDS_BIRTH" in str(e) and e.count == 2
    data = _connect(_born_late(), policy=ValidationPolicy(before_birth="drop"))
    acc = data.accounting
    assert acc.dropped == {"event before the subject's MEDS_BIRTH": 2}
    assert acc.events_in == acc.events_used + acc.events_dropped == 10
    b = data.batch([0])
    assert not b.numeric_missing[0, :4, 1].any() and (b.numeric[0, :4, 1] >= -1e6).all()
    assert data.pathways.loc[0, "start"] == T0 + pd.Timedelta(hours=2)  # the lactate, after birth


def test_two_different_births_are_refused():
    df = pd.concat([_events(), _events().iloc[[1]].assign(time=T0 - pd.Timedelta(days=9000))])
    e = _error(df.sort_values(["subject_id", "time"], na_position="first", kind="stable"))
    assert e.column == "time" and "several different MEDS_BIRTH" in str(e)


def test_a_vital_sign_without_time_is_not_a_static_fact():
    df = _events()
    df.loc[8, "time"] = pd.NaT  # the second subject's pulse
    df = df.sort_values(["subject_id", "time"], na_position="first", kind="stable").reset_index(drop=True)
    e = _error(df)
    assert e.column == "time" and "VITAL//PULSE" in str(e) and e.count == 1
    data = _connect(df, policy=ValidationPolicy(bad_time="drop"))
    assert data.accounting.dropped == {"null time on a timed event": 1}
    codes = data.schema.categorical_vocab["code"]
    assert [codes[i] for i in data.batch([1]).categorical["code"][0].tolist()] == [
        "SEX//M",
        "ED//ARRIVAL",
        "LAB//LACTATE",
    ]


def test_an_untimed_row_of_a_timed_stage_is_refused():
    df = _events().assign(stage=["static", "static", "ED", "ED", "ED", "discharge", None, "ED", "ED", "ED"])
    df.loc[0, "code"] = "ALLERGY//PENICILLIN"
    df.loc[0, "stage"] = "ED"  # only this subject's row, only untimed: the stage says it happened in the ED
    e = _error(df)
    assert e.column == "time" and "ALLERGY" in str(e)


def test_blank_codes_are_refused():
    df = _events()
    df.loc[4, "code"] = "  "
    e = _error(df)
    assert e.column == "code" and e.count == 1
