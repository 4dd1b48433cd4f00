"""Derived inputs against brute force from the raw events: the status features the CatBoost baseline reads
(the same feed the sequence models read), and truncation (which events a cut pathway keeps).

The references loop over rows and pathways in plain Python on the raw MEDS events (exact microsecond times),
never through the connector's encoded arrays.
"""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import connect_hamburg_data, read_meds
from hamburg_mamba.data.system_state import DEFAULT_STATUS_COLUMNS
from hamburg_mamba.eval.features import FeatureBuilder
from hamburg_mamba.eval.predictions import prediction_rows

HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def tiny(tiny_root, tiny_data):
    """The tiny city's raw MEDS folder and its connected data (tests/conftest.py)."""
    return read_meds(tiny_root), tiny_data


def _raw_rows(events, data, rows):
    """The raw (exact) time and hospital of each prediction row's event: its pathway's timed events in file
    order, after the static head."""
    timed = events[events["pathway_id"].notna() & (events["stage"] != "static")]
    by_pathway = {int(p): (list(g["time"]), list(g["hospital"])) for p, g in timed.groupby("pathway_id", sort=False)}
    enc = data.encoded
    static = data.schema.lookup["stage"]["static"]
    stage = enc.categorical[:, list(data.schema.categorical_vocab).index("stage")]
    out = []
    for flat, p in zip(rows.flat, rows.pathway, strict=True):
        n_static = int((stage[enc.offsets[p] : enc.offsets[p + 1]] == static).sum())
        times, hospitals = by_pathway[int(enc.pathway_id[p])]
        k = flat - enc.offsets[p] - n_static
        out.append((times[k], hospitals[k]))
    return out


@pytest.mark.parametrize("column", ["ed_census", "nedocs", "closed_to_ems"])
def test_baseline_status_features_are_the_feed_an_hour_late(tiny, column):
    """Each row's status:<column> in the baseline's table is the raw hourly value of its event's hospital's
    latest feed row with time + lag <= t, no older than the schema's maximum age, as found by a plain loop over
    the raw feed; rows whose event has no hospital yet, or whose feed is stale, are missing."""
    raw, data = tiny
    feed = raw["system"]["hospital_hourly"]
    feed = feed.assign(hospital=feed["hospital"].astype(str))
    by_hospital = {h: g.sort_values("time") for h, g in feed.groupby("hospital")}
    rows = prediction_rows(data, "held_out")
    schema = data.schema
    transform = schema.status_transforms[f"status:{column}"]
    got = FeatureBuilder(data).table(rows.flat)[f"status:{column}"].to_numpy()
    lag, max_age = schema.status_lag_h * HOUR, schema.status_max_age_h * HOUR
    attached = 0
    for r, (t, hospital) in enumerate(_raw_rows(raw["events"], data, rows)):
        g = by_hospital.get(str(hospital)) if pd.notna(hospital) else None
        seen = None if g is None else g[g["time"] + lag <= t]
        if seen is None or seen.empty or t - (seen["time"].iloc[-1] + lag) > max_age:
            assert np.isnan(got[r]), r
            continue
        # the model input of that raw value (bounded rank, stored as float32; the transform is tested against
        # hand-computed ranks in test_system_state.py)
        assert got[r] == np.float32(transform(np.array([float(seen[column].iloc[-1])]))[0]), r
        attached += 1
    assert attached > 0.8 * len(rows)  # measured 289 of 337 (the rest: no hospital yet, or the feed ended)
    assert column in DEFAULT_STATUS_COLUMNS


# --- truncation ---


def _long_pathway():
    t0 = pd.Timestamp("2024-05-01 08:00")
    rows = [(7, None, "SEX//F", np.nan), (7, t0 - pd.Timedelta(days=365 * 60), "MEDS_BIRTH", np.nan)]
    rows += [(7, t0 + k * HOUR, "VITAL//PULSE", 60.0 + k) for k in range(10)]
    rows += [(8, None, "SEX//M", np.nan), (8, t0, "VITAL//PULSE", 90.0), (8, t0 + HOUR, "VITAL//PULSE", 91.0)]
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])


def test_truncation_keeps_the_static_head_and_the_last_events():
    events = _long_pathway()
    data = connect_hamburg_data(
        events, split="subject", split_fractions=(1.0, 0.0, 0.0), max_len=6, truncation="keep_last"
    )
    b = data.batch([0, 1])
    codes = data.schema.categorical_vocab["code"]
    # subject 7: SEX, BIRTH, then the last four of its ten pulses (66..69); subject 8 is short and untouched
    assert [codes[i] for i in b.categorical["code"][0, :6].tolist()] == ["SEX//F", "MEDS_BIRTH"] + ["VITAL//PULSE"] * 4
    stats = data.schema.code_stats["VITAL//PULSE"]
    pulse = b.numeric[0, 2:6, 0].double() * stats.std + stats.mean
    np.testing.assert_allclose(pulse.numpy(), [66.0, 67.0, 68.0, 69.0], atol=1e-4)
    # the clock counts from the pathway's first event, which was cut: hours since start 6..9, 0 gap at the cut
    np.testing.assert_allclose(b.time_since_start_h[0, 2:6].numpy(), [6.0, 7.0, 8.0, 9.0])
    assert b.lengths.tolist() == [6, 3]
    assert data.accounting.dropped == {"truncated (max_len=6, keep_last)": 6}
    assert data.accounting.events_in == len(events) == data.accounting.events_used + 6
