"""Features at prediction rows against the raw MEDS events of the same pathway."""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import read_meds
from hamburg_mamba.eval.features import NEWS2_CODES, FeatureBuilder
from hamburg_mamba.eval.predictions import last_event_at_time, prediction_rows


@pytest.fixture(scope="module")
def tiny(tiny_root, tiny_data):
    return tiny_root, tiny_data


def test_rows_are_the_last_event_at_each_labelled_time(tiny):
    _, data = tiny
    rows = prediction_rows(data, "held_out")
    enc = data.encoded
    last = last_event_at_time(data)
    assert last[rows.flat].all()
    # no two rows share (pathway, time), and every labelled (pathway, time) of the split has one row
    key = pd.DataFrame({"p": rows.pathway, "t": rows.time_us})
    assert not key.duplicated().any()
    assert (rows.pos >= 0).all() and (rows.pos < enc.lengths[rows.pathway]).all()
    # by a plain loop: every held-out pathway's labelled timestamps, each once, at its last event
    want = []
    for p in np.flatnonzero(enc.split == "held_out"):
        a, b = enc.offsets[p], enc.offsets[p + 1]
        labelled = np.zeros(b - a, dtype=bool)
        for _, m, _ in enc.event_labels.values():
            labelled |= m[a:b]
        for i in range(a, b):
            if labelled[i - a] and (i + 1 == b or enc.time_since_prev_h[i + 1] > 0):
                want.append(i)
    np.testing.assert_array_equal(rows.flat, want)


def test_latest_vitals_match_the_raw_events(tiny):
    root, data = tiny
    rows = prediction_rows(data, "held_out")
    fb = FeatureBuilder(data)
    vitals = fb.news2_vitals(rows.flat)
    ev = read_meds(root)["events"]
    ev = ev[ev["code"].isin(list(NEWS2_CODES.values()))].dropna(subset=["time"])
    rng = np.random.default_rng(0)
    pid = data.encoded.pathway_id
    checked = 0
    for r in rng.choice(len(rows), size=min(60, len(rows)), replace=False):
        t = pd.Timestamp(np.datetime64(int(rows.time_us[r]), "us"))
        # (encoded times are float32 hours since the pathway start: exact to well under a second)
        mine = ev[(ev["pathway_id"] == pid[rows.pathway[r]]) & (ev["time"] <= t + pd.Timedelta(seconds=1))]
        for param, code in NEWS2_CODES.items():
            hist = mine[mine["code"] == code]
            got = vitals[param][r]
            if hist.empty:
                assert np.isnan(got)
            else:
                assert got == pytest.approx(float(hist["numeric_value"].iloc[-1]), abs=0.051), (param, r)
                checked += 1
    assert checked > 50


def test_sex_and_season_subgroups_match_the_raw_events(tiny):
    from hamburg_mamba.eval.experiment import SUBGROUPS, _subgroups

    root, data = tiny
    rows = prediction_rows(data, "held_out")
    groups, one_level = _subgroups(data, FeatureBuilder(data).table(rows.flat), rows)
    # every subgroup is either compared or set aside as having one level in these rows, never both or neither
    assert sorted([*groups, *(name for name, _ in one_level)]) == sorted(SUBGROUPS)
    assert all(g.shape == rows.flat.shape for g in groups.values())
    for name, level in one_level:
        assert name not in groups and isinstance(level, str)
    ev = read_meds(root)["events"]
    sex = ev[ev["code"].str.startswith("SEX//")].set_index("subject_id")["code"].str[5:]
    want = sex.reindex(data.encoded.subject_id[rows.pathway]).fillna("unknown").to_numpy()
    np.testing.assert_array_equal(groups["sex"], want)
    assert {"F", "M"} <= set(groups["sex"])
    month = pd.to_datetime(rows.time_us, unit="us").month
    season = np.where(
        np.isin(month, [12, 1, 2]),
        "winter",
        np.where(np.isin(month, [3, 4, 5]), "spring", np.where(np.isin(month, [6, 7, 8]), "summer", "autumn")),
    )
    if len(set(season)) > 1:
        np.testing.assert_array_equal(groups["season"], season)
    else:  # the tiny city's held-out days lie in one season: set aside with that level
        assert ("season", str(season[0])) in one_level
