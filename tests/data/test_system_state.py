"""The hospital status feed as per-event features: causality, the trend, missingness, errors, the schema, the
bounded rank transform that turns them into model inputs, and the hospital each event knows."""

import json

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import DatasetSchema, connect_hamburg_data
from hamburg_mamba.data.schema import EXCESS_MAX, UNKNOWN_INDEX, BoundedRank
from hamburg_mamba.data.system_state import (
    DEFAULT_STATUS_COLUMNS,
    TREND_TIME_CONSTANT_H,
    check_status_table,
    feature_names,
    status_features,
)
from hamburg_mamba.data.validate import Accounting, DataValidationError

US_PER_HOUR = 3.6e9
T0 = pd.Timestamp("2024-03-01 00:00")


def _random_feed(rng, hospitals=("A", "B"), rows=60):
    """Irregular report times (gaps of 0.5-5 h) per hospital, two numeric columns with some NaN."""
    parts = []
    for h in hospitals:
        t = T0 + pd.to_timedelta(np.cumsum(rng.uniform(0.5, 5.0, rows)), unit="h")
        census = rng.integers(0, 30, rows).astype(float)
        census[rng.random(rows) < 0.1] = np.nan
        parts.append(pd.DataFrame({"hospital": h, "time": t, "census": census, "closed": rng.random(rows) < 0.2}))
    return pd.DataFrame(pd.concat(parts, ignore_index=True))


def _reference(feed, columns, hospital, t_us, lag_h, max_age_h, tau_h=TREND_TIME_CONSTANT_H):
    """Per event, by brute force: the latest row with time + lag <= t (age <= max_age), and value minus the
    exp(-age / tau)-weighted mean of that hospital's rows up to the row (NaN values skipped)."""
    out = np.full((t_us.size, 2 * len(columns)), np.nan)
    for e, (h, t) in enumerate(zip(hospital, t_us, strict=True)):
        rows = feed[feed["hospital"] == h].sort_values("time")
        times = rows["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
        avail = times + lag_h * US_PER_HOUR
        seen = np.nonzero(avail <= t)[0]
        if h is None or not seen.size or t - avail[seen[-1]] > max_age_h * US_PER_HOUR:
            continue
        r = seen[-1]
        for j, c in enumerate(columns):
            x = rows[c].to_numpy(dtype=float)[: r + 1]
            w = np.exp(-(times[r] - times[: r + 1]) / US_PER_HOUR / tau_h)
            ok = ~np.isnan(x)
            out[e, j] = x[r]
            out[e, len(columns) + j] = x[r] - (w[ok] * x[ok]).sum() / w[ok].sum() if ok[-1] else np.nan
    return out


@pytest.mark.parametrize("lag_h,max_age_h", [(1.0, 6.0), (0.0, 2.0), (2.5, 100.0)])
def test_features_equal_brute_force(lag_h, max_age_h):
    rng = np.random.default_rng(0)
    feed = _random_feed(rng)
    n = 400
    hospital = np.array(rng.choice(["A", "B", "C", None], n), dtype=object)  # C: not in the feed
    t_us = (T0 + pd.to_timedelta(rng.uniform(-5, 200, n), unit="h")).to_numpy().astype("datetime64[us]")
    t_us = t_us.astype(np.int64)
    timed = rng.random(n) < 0.95
    acc = Accounting()
    table = check_status_table(feed, ["census", "closed"], acc)
    got = status_features(table, ["census", "closed"], hospital, t_us, timed, acc, lag_h=lag_h, max_age_h=max_age_h)
    want = _reference(feed, ["census", "closed"], hospital, t_us, lag_h, max_age_h)
    want[~timed] = np.nan
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-9, atol=1e-9)
    assert 0 < (~np.isnan(got[:, 0])).sum() < n  # some attached, some missing: the test can tell them apart
    assert "attached to" in acc.notes[0] and "hospitals the feed does not cover" in acc.notes[0]


def test_a_row_is_invisible_until_its_lag_has_passed():
    feed = pd.DataFrame({"hospital": ["A", "A"], "time": [T0, T0 + pd.Timedelta(hours=1)], "census": [3.0, 9.0]})
    table = check_status_table(feed, ["census"], Accounting())
    at = [
        T0 + pd.Timedelta(hours=2) - pd.Timedelta(microseconds=1),
        T0 + pd.Timedelta(hours=2),
        T0 + pd.Timedelta(minutes=59),
    ]
    t_us = pd.DatetimeIndex(at).to_numpy().astype("datetime64[us]").astype(np.int64)
    got = status_features(
        table, ["census"], np.array(["A"] * 3, dtype=object), t_us, np.ones(3, bool), Accounting(), lag_h=1.0
    )
    assert got[0, 0] == 3.0  # the 01:00 row is available from 02:00, not a microsecond earlier
    assert got[1, 0] == 9.0
    assert np.isnan(got[2, 0])  # before 01:00 nothing has been reported


def _events_with_hospital():
    rows = []
    for s, h in ((1, "A"), (2, "B"), (3, "A")):
        for k in range(4):
            rows.append((s, T0 + pd.Timedelta(hours=3 + 2 * k + s / 10), "VITAL//PULSE", 80.0 + k, h))
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value", "hospital"])


def _hourly_feed(hospitals=("A", "B"), hours=24):
    t = T0 + pd.to_timedelta(np.arange(hours), unit="h")
    return pd.DataFrame(
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "hospital": h,
                        "time": t,
                        "ed_census": np.arange(hours) + 100 * i,
                        "closed_to_ems": np.arange(hours) % 5 == 0,
                    }
                )
                for i, h in enumerate(hospitals)
            ],
            ignore_index=True,
        )
    )


def test_connector_attaches_the_feed_and_refits_nothing_at_inference():
    events, feed = _events_with_hospital(), _hourly_feed()
    kw = dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    data = connect_hamburg_data(events, hospital_status=feed, status_columns=["ed_census", "closed_to_ems"], **kw)
    s = data.schema
    assert s.numeric_features[2:] == feature_names(["ed_census", "closed_to_ems"])
    j = s.numeric_features.index("status:ed_census")
    # ground truth from the feed: event at hour 3 + 2k + s/10 sees the row of hour floor(t) - 1; every event is
    # in training and the values are fewer than the knots, so each input is its value's mid-rank among them
    # (pandas' average rank), rescaled to [0, 1]
    t_h = (pd.Series(events["time"]) - T0) / pd.Timedelta(hours=1)
    want = pd.Series(np.floor(t_h.to_numpy()) - 1 + np.where(events["hospital"] == "B", 100, 0)).rank()
    want = (want - want.min()) / (want.max() - want.min())
    np.testing.assert_allclose(data.encoded.numeric[:, j], want, atol=1e-6)
    assert not data.encoded.numeric_missing[:, j].any()
    # inference: the schema's statistics are reused and the schema survives JSON
    again = connect_hamburg_data(events, hospital_status=feed, schema=DatasetSchema.from_json(s.to_json()), **kw)
    np.testing.assert_array_equal(again.encoded.numeric, data.encoded.numeric)
    # a schema with a feed but data without one: every status feature is missing, and the report says so
    blind = connect_hamburg_data(events, schema=s, **kw)
    assert blind.encoded.numeric_missing[:, 2:].all()
    assert any("no status table" in n for n in blind.accounting.notes)


def test_feed_switched_off_and_old_schemas_load():
    events = _events_with_hospital()
    data = connect_hamburg_data(
        events, hospital_status=_hourly_feed(), status_columns=(), split="subject", split_fractions=(1.0, 0.0, 0.0)
    )
    assert data.schema.numeric_features == ("value", "age_years") and data.encoded.numeric.shape[1] == 2
    blob = json.loads(data.schema.to_json())
    for key in ("status_columns", "status_transforms", "status_lag_h", "status_max_age_h"):
        blob.pop(key)
    assert DatasetSchema.from_json(json.dumps(blob)).status_columns == ()


def test_a_schema_with_z_scored_status_features_is_refused():
    """A model trained on z-scores would read ranks as if they were z-scores: silent garbage."""
    events = _events_with_hospital()
    data = connect_hamburg_data(
        events, hospital_status=_hourly_feed(), split="subject", split_fractions=(1.0, 0.0, 0.0)
    )
    blob = json.loads(data.schema.to_json())
    blob["status_stats"] = {name: {"mean": 0.0, "std": 1.0, "count": 1} for name in blob.pop("status_transforms")}
    with pytest.raises(ValueError, match="status_stats"):
        DatasetSchema.from_json(json.dumps(blob))


def test_default_columns_and_bad_feeds_are_named():
    events, kw = _events_with_hospital(), dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    data = connect_hamburg_data(events, hospital_status=_hourly_feed(), **kw)  # default: the observable columns
    assert data.schema.status_columns == tuple(c for c in DEFAULT_STATUS_COLUMNS if c in _hourly_feed().columns)
    with pytest.raises(DataValidationError, match="'nedocs'"):
        connect_hamburg_data(events, hospital_status=_hourly_feed(), status_columns=["nedocs"], **kw)
    with pytest.raises(DataValidationError, match="hidden ground truth"):
        connect_hamburg_data(
            events, hospital_status=_hourly_feed().assign(closure_hazard=0.1), status_columns=["closure_hazard"], **kw
        )
    with pytest.raises(DataValidationError, match="numeric or boolean"):
        connect_hamburg_data(
            events, hospital_status=_hourly_feed().assign(ed_census="full"), status_columns=["ed_census"], **kw
        )
    dup = pd.concat([_hourly_feed(), _hourly_feed().iloc[:1]], ignore_index=True)
    with pytest.raises(DataValidationError, match="same \\(hospital, time\\)"):
        connect_hamburg_data(events, hospital_status=dup, **kw)
    with pytest.raises(DataValidationError, match="none of the default status columns"):
        connect_hamburg_data(events, hospital_status=_hourly_feed()[["hospital", "time"]], **kw)


def test_generator_feed_reaches_events(small):
    """On the synthetic Hamburg, each event's `closed_to_ems` and `ed_census` are the generator's own hourly
    figures for its known hospital in the hour before the event's hour (the ground truth), and events whose
    hospital is not known yet have none."""
    from hamburg_mamba.data.splits import event_times_us

    data = connect_hamburg_data(
        small.events, labels=small.labels, hospital_status=small.hospital_hourly, split="subject", seed=0
    )
    s, enc = data.schema, data.encoded
    # the generator stamps the hospital on every event from the departure or ED arrival on (test_time_travel.py)
    stamped = enc.categorical[:, list(s.categorical_vocab).index("hospital")]
    np.testing.assert_array_equal(enc.event_hospital_id, stamped)
    unknown = enc.event_hospital_id == UNKNOWN_INDEX
    assert 0 < unknown.mean() < 0.5
    assert enc.numeric_missing[unknown, 2:].all()
    hosp = np.array(s.categorical_vocab["hospital"], dtype=object)[enc.event_hospital_id]
    t = pd.to_datetime(event_times_us(data), unit="us")
    hh = small.hospital_hourly.assign(hospital=lambda f: f["hospital"].astype(str)).set_index(["hospital", "time"])
    known = np.isin(hosp, hh.index.levels[0]) & (t.floor("h") != t)
    row_time = t.floor("h") - pd.Timedelta(hours=1)
    idx = pd.MultiIndex.from_arrays([hosp[known], row_time[known]])
    for col in ("closed_to_ems", "ed_census"):
        j = s.numeric_features.index(f"status:{col}")
        want = hh[col].reindex(idx).to_numpy(dtype=float)
        got = np.where(enc.numeric_missing[known, j], np.nan, enc.numeric[known, j])
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        assert ok.mean() > 0.9
        # the transform itself is checked against hand-computed ranks below; here: the right raw value reached it
        np.testing.assert_array_equal(got[ok], s.status_transforms[f"status:{col}"](want[ok]).astype(np.float32))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_status_value_is_refused_as_an_infinite_numeric_value_is(value):
    """One inf in a status column used to give that column mean 0 and std 1 (the inf encoded as is)."""
    events, kw = _events_with_hospital(), dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    feed = _hourly_feed().astype({"ed_census": float})
    feed.loc[5, "ed_census"] = value
    with pytest.raises(DataValidationError) as e:
        connect_hamburg_data(events, hospital_status=feed, status_columns=["ed_census"], **kw)
    assert e.value.column == "ed_census" and "infinite" in str(e.value) and e.value.count == 1
    events.loc[5, "numeric_value"] = value
    with pytest.raises(DataValidationError) as e:
        connect_hamburg_data(events, **kw)
    assert e.value.column == "numeric_value" and "infinite" in str(e.value) and e.value.count == 1


def test_numeric_status_times_need_a_unit():
    events, kw = _events_with_hospital(), dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    feed = _hourly_feed()
    seconds = feed.assign(time=(feed["time"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    with pytest.raises(DataValidationError) as e:
        connect_hamburg_data(events, hospital_status=seconds, status_columns=["ed_census"], **kw)
    assert e.value.column == "time" and "datetime64" in str(e.value)
    want = connect_hamburg_data(events, hospital_status=feed, status_columns=["ed_census"], **kw)
    events_s = events.assign(time=(events["time"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    got = connect_hamburg_data(events_s, hospital_status=seconds, status_columns=["ed_census"], time_unit="s", **kw)
    np.testing.assert_array_equal(got.encoded.numeric, want.encoded.numeric)


# ----------------------------------------------------------------------------------------------------------
# Bounded ranks: status features as model inputs


def test_bounded_rank_equals_hand_computed_mid_ranks():
    """Training values 1, 2, 2, 3, 5 (n = 5): mid-ranks 0.1, 0.4, 0.7, 0.9 (share below plus half the share
    equal), rescaled to 0, 0.375, 0.75, 1; 4 lies halfway between the knots 3 and 5; the interquartile range
    (values at positions 1 and 3 of the sorted five) is 2 to 3, so one unit beyond the range adds
    EXCESS_MAX * 1 / (1 + 1)."""
    t = BoundedRank.fit(np.array([3.0, 1.0, np.nan, 2.0, 2.0, 5.0]))
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, np.nan])
    h = EXCESS_MAX / 2
    want = np.array([0.0, 0.375, 0.75, 0.875, 1.0, 1.0 + h, -h, np.nan])
    np.testing.assert_allclose(t(x), want, rtol=0, atol=1e-15)
    assert t.count == 5
    np.testing.assert_array_equal(t.outside(x), [False] * 5 + [True, True, False])
    assert np.isnan(BoundedRank.fit(np.array([np.nan]))(np.array([1.0]))).all()
    assert BoundedRank.fit(np.array([4.0, 4.0]))(np.array([4.0])).tolist() == [0.5]


@pytest.mark.parametrize("kind", ["continuous", "counts", "flag"])
def test_bounded_rank_is_monotone_and_bounded_far_outside_the_training_range(kind):
    """Strictly increasing inside the training range and beyond it (float64), never decreasing after the
    float32 cast the model reads, and inside (-EXCESS_MAX, 1 + EXCESS_MAX) for values 1e12 past the range,
    where a z-score grows without bound."""
    rng = np.random.default_rng(3)
    train = {
        "continuous": rng.lognormal(2.0, 0.7, 50_000),
        "counts": rng.poisson(12.0, 50_000).astype(float),
        "flag": (rng.random(50_000) < 0.05).astype(float),
    }[kind]
    t = BoundedRank.fit(train)
    lo, hi = train.min(), train.max()
    inside = np.linspace(lo, hi, 100_001)
    beyond = hi + np.geomspace(1e-6, 1e12, 2_000)
    before = lo - np.geomspace(1e-6, 1e12, 2_000)[::-1]
    x = np.concatenate([before, inside, beyond])
    y = t(x)
    assert (np.diff(y) > 0).all()
    assert (np.diff(y.astype(np.float32)) >= 0).all()
    assert -EXCESS_MAX < y.min() and y.max() < 1 + EXCESS_MAX
    assert t(np.array([lo, hi])).tolist() == [0.0, 1.0]
    # beyond the range the order survives float32 to many spreads out, not only to the first one
    far = hi + t.spread * np.array([1.0, 10.0, 100.0, 1000.0])
    assert (np.diff(t(far).astype(np.float32)) > 0).all()


def _split_events_and_feed(shift_b=0.0):
    """Subjects 1 and 3 (hospital A) in train, subject 2 (hospital B) held out; B's census is A's plus
    `shift_b`: values the held-out subject reads, never a training one."""
    events = _events_with_hospital()
    feed = _hourly_feed()
    feed["ed_census"] = np.arange(len(feed)) % 24 + np.where(feed["hospital"] == "B", 5.0 + shift_b, 0.0)
    splits = pd.DataFrame({"subject_id": [1, 2, 3], "split": ["train", "held_out", "train"]})
    return events, feed, dict(split="file", splits=splits, status_columns=["ed_census", "closed_to_ems"])


def test_bounded_rank_is_fitted_on_training_rows_only():
    events, feed, kw = _split_events_and_feed()
    base = connect_hamburg_data(events, hospital_status=feed, **kw)
    events, feed, kw = _split_events_and_feed(shift_b=1000.0)
    moved = connect_hamburg_data(events, hospital_status=feed, **kw)
    assert base.schema.status_transforms == moved.schema.status_transforms
    j = base.schema.numeric_features.index("status:ed_census")
    held = np.repeat(base.encoded.split == "held_out", base.encoded.lengths)
    assert (moved.encoded.numeric[held, j] > base.encoded.numeric[held, j]).all()  # the held-out values did move
    np.testing.assert_array_equal(moved.encoded.numeric[~held], base.encoded.numeric[~held])


def test_report_gives_the_share_of_events_outside_the_training_range():
    """By hand: events at hour 3 + 2k + s/10 read the feed row of hour 2 + 2k (k = 0..3). Training (subjects 1
    and 3, hospital A) reads census 2, 4, 6, 8: range [2, 8]. The held-out subject (hospital B, census + 5)
    reads 7, 9, 11, 13: three of four outside. closed_to_ems (hour % 5 == 0) is 0 at hours 2, 4, 6, 8 for
    everyone: none outside. No tuning events."""
    events, feed, kw = _split_events_and_feed()
    data = connect_hamburg_data(events, hospital_status=feed, **kw)
    share = data.status_out_of_range
    assert share.loc["status:ed_census", "train"] == 0.0
    assert share.loc["status:ed_census", "held_out"] == 0.75
    assert share.loc["status:closed_to_ems", "held_out"] == 0.0
    assert np.isnan(share.loc["status:ed_census", "tuning"])
    line = next(x for x in data.report().splitlines() if x.strip().startswith("status:ed_census"))
    assert line.split()[1:] == ["0.0000", "NaN", "0.7500"]


# ----------------------------------------------------------------------------------------------------------
# The hospital each event knows


def test_event_hospital_is_the_record_forward_filled_within_the_pathway():
    """Pathway 10 (subject 1): no hospital in the ambulance, A named on the departure only, rows without a
    hospital after it (A is still known), then a transfer to B. Pathway 11 (subject 1, overlapping in time):
    its own hospital only, never pathway 10's. A static fact with a hospital fills nothing. Status features
    follow the known hospital: present from the departure on, B's feed after the transfer."""
    h = lambda k: T0 + pd.Timedelta(hours=k, minutes=30)
    rows = [
        (1, None, "SEX//F", np.nan, "B", None),
        (1, h(3), "EMS//DISPATCH", np.nan, None, 10),
        (1, h(4), "EMS//TRANSPORT", np.nan, "A", 10),
        (1, h(5), "VITAL//PULSE", 80.0, None, 10),
        (1, h(6), "VITAL//PULSE", 81.0, None, 11),
        (1, h(7), "VITAL//PULSE", 82.0, None, 10),
        (1, h(8), "ADT//TRANSFER", np.nan, "B", 10),
        (1, h(9), "VITAL//PULSE", 83.0, None, 10),
    ]
    events = pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value", "hospital", "pathway_id"])
    data = connect_hamburg_data(
        events,
        hospital_status=_hourly_feed(),
        status_columns=["ed_census"],
        split="subject",
        split_fractions=(1.0, 0.0, 0.0),
    )
    enc, vocab = data.encoded, data.schema.lookup["hospital"]
    A, B, U = vocab["A"], vocab["B"], UNKNOWN_INDEX
    p10, p11 = list(enc.pathway_id).index(10), list(enc.pathway_id).index(11)
    at = lambda p: slice(enc.offsets[p], enc.offsets[p + 1])
    assert enc.event_hospital_id[at(p10)].tolist() == [U, U, A, A, A, B, B]  # SEX, DISPATCH, ..., last pulse
    assert enc.event_hospital_id[at(p11)].tolist() == [U, U]
    # the feed's census is the hour (A) or 100 + hour (B); an event at k:30 reads the row of hour k - 1
    j = data.schema.numeric_features.index("status:ed_census")
    raw = np.array([np.nan, np.nan, 3.0, 4.0, 6.0, 107.0, 108.0])
    want = data.schema.status_transforms["status:ed_census"](raw).astype(np.float32)
    got = np.where(enc.numeric_missing[at(p10), j], np.nan, enc.numeric[at(p10), j])
    np.testing.assert_array_equal(got, want)
    assert enc.numeric_missing[at(p11), j].all()
    b = data.batch([p10, p11])
    assert b.event_hospital_id.tolist() == [[U, U, A, A, A, B, B], [U, U, 0, 0, 0, 0, 0]]
    b.check()
