"""The hospital status feed as per-event features: causality, the trend, missingness, errors, the schema."""

import json

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import DatasetSchema, connect_hamburg_data
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
        parts.append(pd.DataFrame({"hospital": h, "time": t, "census": census,
                                   "closed": rng.random(rows) < 0.2}))
    return pd.DataFrame(pd.concat(parts, ignore_index=True))


def _reference(feed, columns, hospital, t_us, lag_h, max_age_h, tau_h=TREND_TIME_CONSTANT_H):
    """Per event, by brute force: the latest row with time + lag <= t (age <= max_age), and value minus the
    exp(-age / tau)-weighted mean of that hospital's rows up to the row (NaN values skipped)."""
    out = np.full((t_us.size, 2 * len(columns)), np.nan)
    for e, (h, t) in enumerate(zip(hospital, t_us)):
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
    at = [T0 + pd.Timedelta(hours=2) - pd.Timedelta(microseconds=1), T0 + pd.Timedelta(hours=2),
          T0 + pd.Timedelta(minutes=59)]
    t_us = pd.DatetimeIndex(at).to_numpy().astype("datetime64[us]").astype(np.int64)
    got = status_features(table, ["census"], np.array(["A"] * 3, dtype=object), t_us, np.ones(3, bool),
                          Accounting(), lag_h=1.0)
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
    return pd.DataFrame(pd.concat([pd.DataFrame({"hospital": h, "time": t, "ed_census": np.arange(hours) + 100 * i,
                                                 "closed_to_ems": np.arange(hours) % 5 == 0})
                                   for i, h in enumerate(hospitals)], ignore_index=True))


def test_connector_attaches_the_feed_and_refits_nothing_at_inference():
    events, feed = _events_with_hospital(), _hourly_feed()
    kw = dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    data = connect_hamburg_data(events, hospital_status=feed, status_columns=["ed_census", "closed_to_ems"], **kw)
    s = data.schema
    assert s.numeric_features[2:] == feature_names(["ed_census", "closed_to_ems"])
    j = s.numeric_features.index("status:ed_census")
    st = s.status_stats["status:ed_census"]
    raw = data.encoded.numeric[:, j] * st.std + st.mean
    # ground truth from the feed: event at hour 3 + 2k + s/10 sees the row of hour floor(t) - 1
    t_h = (pd.Series(events["time"]) - T0) / pd.Timedelta(hours=1)
    want = np.floor(t_h.to_numpy()) - 1 + np.where(events["hospital"] == "B", 100, 0)
    np.testing.assert_allclose(raw, want, atol=1e-3)
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
    data = connect_hamburg_data(events, hospital_status=_hourly_feed(), status_columns=(), split="subject",
                                split_fractions=(1.0, 0.0, 0.0))
    assert data.schema.numeric_features == ("value", "age_years") and data.encoded.numeric.shape[1] == 2
    blob = json.loads(data.schema.to_json())
    for key in ("status_columns", "status_stats", "status_lag_h", "status_max_age_h"):
        blob.pop(key)
    assert DatasetSchema.from_json(json.dumps(blob)).status_columns == ()


def test_default_columns_and_bad_feeds_are_named():
    events, kw = _events_with_hospital(), dict(split="subject", split_fractions=(1.0, 0.0, 0.0))
    data = connect_hamburg_data(events, hospital_status=_hourly_feed(), **kw)  # default: the observable columns
    assert data.schema.status_columns == tuple(c for c in DEFAULT_STATUS_COLUMNS if c in _hourly_feed().columns)
    with pytest.raises(DataValidationError, match="'nedocs'"):
        connect_hamburg_data(events, hospital_status=_hourly_feed(), status_columns=["nedocs"], **kw)
    with pytest.raises(DataValidationError, match="hidden ground truth"):
        connect_hamburg_data(events, hospital_status=_hourly_feed().assign(closure_hazard=0.1),
                             status_columns=["closure_hazard"], **kw)
    with pytest.raises(DataValidationError, match="numeric or boolean"):
        connect_hamburg_data(events, hospital_status=_hourly_feed().assign(ed_census="full"),
                             status_columns=["ed_census"], **kw)
    dup = pd.concat([_hourly_feed(), _hourly_feed().iloc[:1]], ignore_index=True)
    with pytest.raises(DataValidationError, match="same \\(hospital, time\\)"):
        connect_hamburg_data(events, hospital_status=dup, **kw)
    with pytest.raises(DataValidationError, match="none of the default status columns"):
        connect_hamburg_data(events, hospital_status=_hourly_feed()[["hospital", "time"]], **kw)


def test_generator_feed_reaches_events(small):
    """On the synthetic Hamburg, each event's `closed_to_ems` and `ed_census` are the generator's own hourly
    figures for its hospital in the hour before the event's hour (the ground truth)."""
    from hamburg_mamba.train.data_setup import event_times_us

    data = connect_hamburg_data(small.events, labels=small.labels, hospital_status=small.hospital_hourly,
                                split="subject", seed=0)
    s, enc = data.schema, data.encoded
    hosp_tokens = np.array(s.categorical_vocab["hospital"], dtype=object)
    hosp = hosp_tokens[enc.categorical[:, list(s.categorical_vocab).index("hospital")]]
    t = pd.to_datetime(event_times_us(data), unit="us")
    hh = small.hospital_hourly.assign(hospital=lambda f: f["hospital"].astype(str)).set_index(["hospital", "time"])
    known = np.isin(hosp, hh.index.levels[0]) & (t.floor("h") != t)
    row_time = t.floor("h") - pd.Timedelta(hours=1)
    idx = pd.MultiIndex.from_arrays([hosp[known], row_time[known]])
    for col in ("closed_to_ems", "ed_census"):
        j = s.numeric_features.index(f"status:{col}")
        st = s.status_stats[f"status:{col}"]
        want = hh[col].reindex(idx).to_numpy(dtype=float)
        got = np.where(enc.numeric_missing[known, j], np.nan, enc.numeric[known, j] * st.std + st.mean)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        assert ok.mean() > 0.9
        np.testing.assert_allclose(got[ok], want[ok], atol=1e-3 * max(st.std, 1.0))


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
