"""Time travel: every input an event gives a model is what a real system holds at that event's time.

Two guards:
- The record itself (the generator's rows): each column of an event row is known at that row's time. A
  pathway attribute (destination hospital, Manchester triage group, arrival mode, unit) appears only from the
  event that reveals it (rules written out here by hand, independently of the generator's own table); every
  numeric value is a measurement taken at the event or a duration that ends at it.
- The pipeline (connector and the CatBoost features): for cut-off times t across the tiny city's window, the
  events, the other patients' events and the hospital status feed truncated at t give, for every event at or
  before t, exactly the inputs the full data set gives it. Removing the future must change nothing.

The status feed is truncated by availability: a row stamped `time` summarises the hour starting then and is
published at time + status_lag_h (the end of that hour by default). A real system at t holds the rows published
by t; a row whose hour has begun but is not over (time <= t < time + lag) counts events after t, so keeping it
would hand the truncated run a piece of the future. Truncating by `time` alone would also hide a connector that
read rows before they are published.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import connect_hamburg_data, generate_synthetic
from hamburg_mamba.data.connector import EncodedPathways
from hamburg_mamba.data.meds_io import CODE_DESCRIPTIONS
from hamburg_mamba.data.schema import UNKNOWN_INDEX
from hamburg_mamba.data.splits import TINY_CUTOFFS, tiny_synthetic_config
from hamburg_mamba.eval.features import FeatureBuilder

# Which event of a pathway reveals each attribute (a real record holds it from that event on, inclusive).
REVEALED_BY = {
    "arrival_mode": ("EMS//DISPATCH", "ED//ARRIVAL"),  # the emergency call, or a walk-in registering at the ED
    "hospital": ("EMS//TRANSPORT", "ED//ARRIVAL"),  # the crew chooses the destination when it leaves the scene
    "triage_group": ("ED//TRIAGE",),
}
# Codes whose value is a duration that ends at the event: code -> (codes of the event it starts at, hours per unit).
DURATION_SINCE = {
    "EMS//ON_SCENE": (("EMS//DISPATCH",), 1 / 60),  # response minutes
    "ED//ARRIVAL": (("EMS//TRANSPORT",), 1 / 60),  # transport minutes (ambulance arrivals)
    "ED//PHYSICIAN": (("ED//ARRIVAL",), 1 / 60),  # wait for the first physician, minutes
    "ADT//ADMIT": (("ED//DISPOSITION//WARD", "ED//DISPOSITION//ICU"), 1.0),  # boarding hours
}
# Codes whose value is measured at the event itself.
MEASURED_PREFIXES = ("VITAL//", "ED//TRIAGE")
N_CUTS = 8
# Fields of EncodedPathways that are targets, not inputs.
TARGET_FIELDS = ("event_labels", "pathway_labels")


@pytest.fixture(scope="module")
def city():
    return generate_synthetic(tiny_synthetic_config())


@pytest.fixture(scope="module")
def events(city):
    return city.events.assign(_timed=city.events["stage"] != "static")


@pytest.fixture(scope="module")
def full(city):
    return connect_hamburg_data(
        city.events, hospital_status=city.hospital_hourly, split="temporal", temporal_cutoffs=TINY_CUTOFFS
    )


@pytest.fixture(scope="module")
def cutoffs(city, events) -> list[pd.Timestamp]:
    """Moments inside the ambulance phase of some pathways (on scene before the scene vitals, at the scene
    vitals, between departure and arrival, during the mass-casualty incident), one exactly when a status row is
    published, and plain times across the window."""
    ev = events
    ems = ev[ev["code"] == "EMS//ON_SCENE"].sort_values("time")
    pick = lambda q: ems.iloc[int(q * (len(ems) - 1))]
    on_scene = pick(0.25)
    scene_vitals = ev[
        (ev["pathway_id"] == pick(0.5)["pathway_id"]) & (ev["stage"] == "EMS") & ev["code"].str.startswith("VITAL//")
    ]["time"].iloc[0]
    departure = ev[(ev["pathway_id"] == pick(0.75)["pathway_id"]) & (ev["code"] == "EMS//TRANSPORT")]["time"].iloc[0]
    start = pd.Timestamp(city.config.start)
    cuts = [
        on_scene["time"],
        scene_vitals,
        departure + pd.Timedelta(minutes=1),
        pd.Timestamp(city.config.mci_time) + pd.Timedelta(minutes=12),
        start + pd.Timedelta(hours=24 * 6 + 10 + 1),  # a status row published exactly now (1 h lag)
        start + pd.Timedelta(days=2, hours=7, minutes=13),
        start + pd.Timedelta(days=9, hours=14, minutes=41),
        start + pd.Timedelta(days=13, hours=22, minutes=5),
    ]
    assert len(cuts) == N_CUTS
    return cuts


def truncate(city, events, t, lag_h):
    """Events with time <= t (and the static facts), status rows published by t."""
    ev = events[events["time"].isna() | (events["time"] <= t)].drop(columns="_timed").reset_index(drop=True)
    status = city.hospital_hourly
    status = status[status["time"] + pd.Timedelta(hours=lag_h) <= t].reset_index(drop=True)
    return ev, status


def connect_truncated(city, events, full, t):
    ev, status = truncate(city, events, t, full.schema.status_lag_h)
    return connect_hamburg_data(ev, hospital_status=status, schema=full.schema, split="file", splits=full.splits)


def matching_rows(full, part, events, t):
    """(pathway index in full per pathway of part, flat rows of full matching part's flat rows)."""
    where = pd.Index(full.encoded.pathway_id).get_indexer(part.encoded.pathway_id)
    assert (where >= 0).all()
    # each truncated pathway is its full self's static head plus its timed events up to t: a prefix
    timed_by_t = events[events["_timed"] & (events["time"] <= t)].groupby("pathway_id").size()
    static_head = (
        full.encoded.lengths
        - full.pathways.set_index("pathway_id")["n_timed"].reindex(full.encoded.pathway_id).to_numpy()
    )
    want = static_head[where] + timed_by_t.reindex(part.encoded.pathway_id).fillna(0).to_numpy(np.int64)
    np.testing.assert_array_equal(part.encoded.lengths, want)
    lengths = part.encoded.lengths
    k = np.arange(lengths.sum()) - np.repeat(part.encoded.offsets[:-1], lengths)
    return where, np.repeat(full.encoded.offsets[:-1][where], lengths) + k


def per_event_and_per_pathway_fields(enc: EncodedPathways):
    P, N = enc.lengths.size, int(enc.offsets[-1])
    event_level, pathway_level = [], []
    for f in dataclasses.fields(enc):
        if f.name in TARGET_FIELDS or f.name in ("offsets", "sites"):  # sites: the hospital table, not per row
            continue
        a = getattr(enc, f.name)
        assert isinstance(a, np.ndarray), f.name  # a new kind of field needs a rule here
        (event_level if a.shape[0] == N and N != P else pathway_level).append(f.name)
    return event_level, pathway_level


# ----------------------------------------------------------------------------------------------------------
# The record: what each row holds


def reveal_times(events, codes) -> pd.Series:
    """Per pathway_id, the time of its first event with one of these codes."""
    hit = events[events["code"].isin(codes)]
    return hit.groupby("pathway_id")["time"].min()


@pytest.mark.parametrize("column", sorted(REVEALED_BY))
def test_a_pathway_attribute_appears_from_the_event_that_reveals_it(city, events, column):
    assert events.loc[~events["_timed"], column].isna().all(), f"{column} on a static fact"
    ev = events[events["_timed"]]
    known_from = reveal_times(ev, REVEALED_BY[column]).reindex(ev["pathway_id"]).to_numpy()
    known = ev["time"].to_numpy() >= known_from
    present = ev[column].notna().to_numpy()
    early = present & ~known
    assert not early.any(), (
        f"{column} is on {int(early.sum())} events before the event that reveals it, e.g.\n"
        f"{ev[early].head(8).to_string()}"
    )
    assert present[known].all(), f"{column} is missing on {int((~present[known]).sum())} events after it is known"
    truth = city.pathways.set_index("pathway_id")
    stamped = ev[column][present].to_numpy()
    pathway = ev["pathway_id"][present].to_numpy()
    if column == "hospital":
        np.testing.assert_array_equal(stamped, truth["hospital"].reindex(pathway).to_numpy())
    if column == "triage_group":
        np.testing.assert_array_equal(stamped, truth["triage_group"].reindex(pathway).to_numpy())
        triage = ev[ev["code"] == "ED//TRIAGE"]
        np.testing.assert_array_equal(triage["numeric_value"].to_numpy(float), triage["triage_group"].to_numpy(float))
    if column == "arrival_mode":
        ems = truth["ems"].reindex(pathway).to_numpy()
        np.testing.assert_array_equal(stamped, np.where(ems, "ambulance", "walk_in"))


def test_a_unit_appears_only_once_the_patient_is_in_it(events):
    ev = events[events["_timed"]]
    t = ev["time"].to_numpy()
    pathway = ev["pathway_id"]
    arrived = reveal_times(ev, ("ED//ARRIVAL",)).reindex(pathway).to_numpy()
    admitted = reveal_times(ev, ("ADT//ADMIT",)).reindex(pathway).to_numpy()
    in_icu = reveal_times(ev[ev["unit"] == "ICU"], ("ADT//ADMIT", "ADT//TRANSFER_ICU")).reindex(pathway).to_numpy()
    unit = ev["unit"]
    checks = {
        "a unit before ED arrival": unit.notna().to_numpy() & ~(t >= arrived),
        "a bed unit before admission": (unit.notna() & (unit != "ED")).to_numpy() & ~(t >= admitted),
        "the ICU before ICU admission or transfer": (unit == "ICU").to_numpy() & ~(t >= in_icu),
    }
    for what, bad in checks.items():
        assert not bad.any(), f"{what} on {int(bad.sum())} events, e.g.\n{ev[bad].head(8).to_string()}"


def test_every_value_is_known_at_its_event(events):
    """A value is a measurement taken at the event, or a duration ending at it that started at an earlier event
    of the same pathway (its end is the event itself, so nothing after the event is needed)."""
    ev = events[events["_timed"] & events["numeric_value"].notna()]
    unexplained = sorted(
        set(ev["code"]) - set(DURATION_SINCE) - {c for c in set(ev["code"]) if c.startswith(MEASURED_PREFIXES)}
    )
    assert not unexplained, (
        f"codes with a value that is neither a measurement nor a duration ending at the event: {unexplained}"
    )
    checked = 0
    for code, (start_codes, hours_per_unit) in DURATION_SINCE.items():
        rows = ev[ev["code"] == code]
        begin = events[events["code"].isin(start_codes)].groupby("pathway_id")["time"].max()
        began = begin.reindex(rows["pathway_id"]).to_numpy()
        assert not pd.isna(began).any(), f"{code}: a value without the event its duration starts at"
        assert (began <= rows["time"].to_numpy()).all(), f"{code}: a duration that starts after the event"
        elapsed_h = (rows["time"].to_numpy() - began) / np.timedelta64(1, "h")
        np.testing.assert_allclose(
            rows["numeric_value"].to_numpy(float) * hours_per_unit, elapsed_h, rtol=1e-5, atol=1e-4, err_msg=code
        )
        checked += len(rows)
    assert checked > 100


def test_code_descriptions_put_each_value_on_the_event_that_carries_it(events):
    """The MEDS code metadata (meds_io.CODE_DESCRIPTIONS) says "value = ..." exactly for the codes whose events
    carry a duration value (measurements, vitals and the triage group, describe themselves)."""
    described = {code for code, text in CODE_DESCRIPTIONS.items() if "value =" in text}
    valued = events[events["numeric_value"].notna()]["code"]
    assert described == set(valued[~valued.str.startswith(MEASURED_PREFIXES)]) == set(DURATION_SINCE)


# ----------------------------------------------------------------------------------------------------------
# The pipeline: removing the future changes no input


def test_the_cutoffs_reach_into_the_ambulance_phase(events, cutoffs):
    """Guards the guard: some cut-offs fall after a dispatch and before that pathway's ED arrival."""
    ev = events[events["_timed"]]
    first = ev.groupby("pathway_id")["time"].min()
    arrival = reveal_times(ev, ("ED//ARRIVAL",)).reindex(first.index)
    inside = [int(((first <= t) & ~(arrival <= t)).sum()) for t in cutoffs]
    assert sum(n > 0 for n in inside) >= 4, inside


@pytest.mark.parametrize("cut", range(N_CUTS))
def test_model_inputs_up_to_t_do_not_change_when_the_future_is_removed(city, events, full, cutoffs, cut):
    t = cutoffs[cut]
    part = connect_truncated(city, events, full, t)
    where, rows = matching_rows(full, part, events, t)
    event_level, pathway_level = per_event_and_per_pathway_fields(full.encoded)
    assert {"categorical", "numeric", "numeric_missing", "time_since_prev_h", "time_since_start_h"} <= set(event_level)
    for name in event_level:
        np.testing.assert_array_equal(
            getattr(part.encoded, name), getattr(full.encoded, name)[rows], err_msg=f"{name} at cut-off {t}"
        )
    for name in pathway_level:
        np.testing.assert_array_equal(
            getattr(part.encoded, name), getattr(full.encoded, name)[where], err_msg=f"{name} at cut-off {t}"
        )
    # event_site_id (compared above) points into the same hospitals: the table up to t is a prefix of the whole
    assert part.encoded.sites.equals(full.encoded.sites.iloc[: len(part.encoded.sites)])
    # the status features really are there (not all missing), so their equality says something
    assert (~part.encoded.numeric_missing[:, 2:]).any()


def expected_event_hospital(city, events, data, t=None):
    """(N,) by hand from the raw events (those up to t) and the generator's truth: the vocabulary index of the
    pathway's destination on its events from the one that reveals it (REVEALED_BY) on, unknown before and on the
    static head. A pathway's laid-out events are its static head, then its timed events in file order."""
    timed = events[events["_timed"] & ((events["time"] <= t) if t is not None else True)]
    reveal = reveal_times(timed, REVEALED_BY["hospital"])
    destination = city.pathways.set_index("pathway_id")["hospital"].astype(str)
    vocab = data.schema.lookup["hospital"]
    by_pathway = {pid: g["time"] for pid, g in timed.groupby("pathway_id", sort=False)}
    enc = data.encoded
    out = []
    for pid, n in zip(enc.pathway_id, enc.lengths, strict=True):
        times = by_pathway[pid]
        known = (times >= reveal.get(pid, pd.NaT)).to_numpy()
        out += [UNKNOWN_INDEX] * (n - known.size)
        out += np.where(known, vocab.get(destination[pid], UNKNOWN_INDEX), UNKNOWN_INDEX).tolist()
    return np.asarray(out)


def test_event_hospital_up_to_t_is_the_hospital_known_then(city, events, full, cutoffs):
    """Each event's hospital (the one its predictions are attributed to) is the destination from the departure
    or ED arrival on, unknown before, and the same whether or not the future is in the data. There is no
    pathway-level hospital: the pathway's destination seen from an event before the departure is its future."""
    want = expected_event_hospital(city, events, full)
    np.testing.assert_array_equal(full.encoded.event_hospital_id, want)
    before_departure = 0
    for t in cutoffs:
        part = connect_truncated(city, events, full, t)
        _, rows = matching_rows(full, part, events, t)
        np.testing.assert_array_equal(part.encoded.event_hospital_id, want[rows], err_msg=f"at cut-off {t}")
        np.testing.assert_array_equal(part.encoded.event_hospital_id, expected_event_hospital(city, events, part, t))
        stage = part.encoded.categorical[:, list(part.schema.categorical_vocab).index("stage")]
        timed = stage != part.schema.lookup["stage"]["static"]
        before_departure += int((timed & (part.encoded.event_hospital_id == UNKNOWN_INDEX)).sum())
    assert before_departure > 0  # the cut-offs catch ambulances before their departure: the test can tell
    _, pathway_level = per_event_and_per_pathway_fields(full.encoded)
    assert not [name for name in pathway_level if "hospital" in name]


@pytest.mark.parametrize("cut", range(N_CUTS))
def test_catboost_features_up_to_t_do_not_change_when_the_future_is_removed(city, events, full, cutoffs, cut):
    t = cutoffs[cut]
    part = connect_truncated(city, events, full, t)
    _, rows = matching_rows(full, part, events, t)
    fitted = FeatureBuilder(full)
    want = fitted.table(rows)
    got = FeatureBuilder(part, codes=fitted.code_columns).table(np.arange(rows.size))
    pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"features at cut-off {t}")
