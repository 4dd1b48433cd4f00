"""Warnings per hospital of the data set, seen in training or not: a model trained on the tiny Hamburg warns for
each hospital of Emscherstadt, a city it never saw, by name.

Every expected warning is computed here by hand: the model's per-pathway risks (its forward, float64), grouped
with pandas by the hospital name the connector recorded at each pathway's latest event
(`EncodedPathways.event_hospital_name`), never through `event_site_id` or the breakdown's own grouping.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from hamburg_mamba.data import connect_hamburg_data, generate_synthetic, read_meds, write_synthetic
from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS
from hamburg_mamba.data.schema import UNKNOWN_INDEX
from hamburg_mamba.data.synthetic import SyntheticConfig
from hamburg_mamba.eval.monitor import event_batch, replay
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig, PathwayMonitor

TRAIN_STEPS = 10
# Emscherstadt at the tiny Hamburg's scale (3 % of the catalogue's volumes) for a week: about 110 pathways.
EXTERNAL_TINY = dict(scale=0.03, days=7)
# Pathways scored in the batch-size test: a multiple of every batch size tried.
N_POOLED = 28
LEVELS = ("green", "yellow", "orange", "red")
# An ambulance's events before its departure: static facts, then dispatch and scene (none knows a hospital).
BEFORE_DEPARTURE = 5
SCORE_TOL = dict(abs=1e-6)
# Float32 forwards over different padding agree to rounding, not bit for bit.
POOLED_TOL = dict(abs=1e-5)


@pytest.fixture(scope="module")
def model(tiny_data):
    """A small model trained a few steps on the tiny Hamburg (so risks differ between pathways)."""
    config = HamburgMambaConfig.from_schema(tiny_data.schema, preset="small", d_model=32, n_layers=1)
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train = tiny_data.indices("train")
    rng = np.random.default_rng(0)
    for _ in range(TRAIN_STEPS):
        loss = model(tiny_data.batch(rng.choice(train, 16, replace=False))).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def external(tmp_path_factory, tiny_data):
    """Emscherstadt connected with the Hamburg-trained schema: every hospital outside its vocabulary."""
    root = write_synthetic(
        tmp_path_factory.mktemp("meds") / "external", generate_synthetic(SyntheticConfig.external(**EXTERNAL_TINY))
    )
    return connect_hamburg_data(root, schema=tiny_data.schema, split="subject")


def expected_warnings(model, data, pathways) -> tuple[pd.DataFrame, int]:
    """By hand: per hospital name, n_pathways, score, level and the riskiest pathway; and the pathways with no
    hospital at their latest event."""
    enc = data.encoded
    pathways = np.asarray(pathways)
    with torch.no_grad():
        risk = model(data.batch(pathways)).pathway_predictions[model.config.breakdown_task].double().numpy()
    name = enc.event_hospital_name[enc.offsets[pathways + 1] - 1]  # at each pathway's latest event
    frame = pd.DataFrame({"hospital": name, "risk": risk, "pathway_id": enc.pathway_id[pathways]})
    known = frame["hospital"].notna()
    grouped = frame[known].groupby("hospital")
    table = pd.DataFrame({"n_pathways": grouped.size(), "score": grouped["risk"].mean()})
    table["top"] = frame[known].loc[grouped["risk"].idxmax(), ["hospital", "pathway_id"]].set_index("hospital")
    thresholds = model.config.warning_thresholds
    table["level"] = [LEVELS[sum(s >= t for t in thresholds)] for s in table["score"]]
    return table, int((~known).sum())


def assert_warnings_equal(got, table: pd.DataFrame, unattributed: int) -> None:
    assert list(got.hospitals) == list(table.index)
    assert got.unattributed == unattributed
    for hospital, row in table.iterrows():
        w = got.hospitals[hospital]
        assert (w.n_pathways, w.level) == (row["n_pathways"], row["level"]), hospital
        assert w.score == pytest.approx(row["score"], **SCORE_TOL), hospital
        assert w.top_pathways[0][0] == row["top"], hospital


def test_every_hospital_of_a_new_city_gets_its_own_warning(model, external):
    enc = external.encoded
    assert not enc.sites["in_training_vocab"].any() and (enc.sites["vocab_id"] == UNKNOWN_INDEX).all()
    everyone = np.arange(enc.lengths.size)
    table, unattributed = expected_warnings(model, external, everyone)
    assert set(table.index) == {h.name for h in EXTERNAL_HOSPITALS}  # all six, none merged into "unknown"
    got = model.predict_system_breakdown(external.batch(everyone))
    assert_warnings_equal(got, table, unattributed)
    assert set(got.hospitals.vocab_id.values()) == {UNKNOWN_INDEX}
    assert got.overall.n_pathways == everyone.size


def test_on_hamburg_the_warnings_are_the_old_ones_by_name(model, tiny_data):
    """The same groups as the training vocabulary index gave (every Hamburg hospital is in it), now by name; the
    old integer key still reads them, with a DeprecationWarning."""
    enc = tiny_data.encoded
    pathways = tiny_data.indices("held_out")
    old_key = enc.event_hospital_id[enc.offsets[pathways + 1] - 1]  # the pre-change grouping
    with torch.no_grad():
        risk = model(tiny_data.batch(pathways)).pathway_predictions[model.config.breakdown_task].double().numpy()
    got = model.predict_system_breakdown(tiny_data.batch(pathways))
    vocab = tiny_data.schema.categorical_vocab["hospital"]
    assert sorted(got.hospitals.vocab_id.values()) == sorted(set(old_key.tolist()))
    for name, warning in got.hospitals.items():
        vocab_id = got.hospitals.vocab_id[name]
        assert vocab[vocab_id] == name
        members = old_key == vocab_id
        assert warning.n_pathways == members.sum()
        assert warning.score == pytest.approx(risk[members].mean(), **SCORE_TOL)
        with pytest.warns(DeprecationWarning, match="hospital name"):
            assert got.hospitals[vocab_id] is warning
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        got.hospitals[UNKNOWN_INDEX]  # not a hospital


@pytest.mark.parametrize("batch_size", [1, 2, 7])
def test_batch_size_does_not_change_the_warnings(model, external, batch_size):
    """Pooled over batches of 1, 2 or 7 pathways, each hospital has the pathways and mean risk of one batch."""
    pathways = np.arange(N_POOLED)
    table, unattributed = expected_warnings(model, external, pathways)
    n, total, none = {}, {}, 0
    for start in range(0, N_POOLED, batch_size):
        got = model.predict_system_breakdown(external.batch(pathways[start : start + batch_size]))
        none += got.unattributed
        for name, w in got.hospitals.items():
            n[name] = n.get(name, 0) + w.n_pathways
            total[name] = total.get(name, 0.0) + w.score * w.n_pathways
    assert none == unattributed
    assert n == table["n_pathways"].to_dict()
    for name, row in table.iterrows():
        assert total[name] / n[name] == pytest.approx(row["score"], **POOLED_TOL), name


def test_an_ambulance_before_its_departure_is_unattributed(model, external):
    enc = external.encoded
    latest = enc.offsets[:-1] + BEFORE_DEPARTURE - 1  # (P,) the latest of each pathway's first events
    long_enough = enc.lengths >= BEFORE_DEPARTURE
    ambulance = np.flatnonzero(long_enough & pd.isna(enc.event_hospital_name[np.minimum(latest, enc.offsets[-1] - 1)]))
    walk_in = np.flatnonzero(long_enough & pd.notna(enc.event_hospital_name[np.minimum(latest, enc.offsets[-1] - 1)]))
    assert len(ambulance) >= 3 and len(walk_in) >= 1
    batch = _first_events(external.batch(np.r_[ambulance[:3], walk_in[0]]), BEFORE_DEPARTURE)
    got = model.predict_system_breakdown(batch)
    assert got.unattributed == 3 and got.overall.n_pathways == 4
    name = enc.event_hospital_name[latest[walk_in[0]]]
    assert list(got.hospitals) == [name] and got.hospitals[name].n_pathways == 1


def test_hospitals_keep_their_site_id_when_later_events_are_removed(tiny_root, tiny_data):
    """Sites are numbered by first appearance: the data up to t numbers its hospitals as the whole data does
    (sorted by name, a hospital first seen after t would shift the others)."""
    events = read_meds(tiny_root)["events"].drop(columns=["shard"])
    seen = events.dropna(subset=["hospital"]).sort_values("time").drop_duplicates("hospital")
    assert seen["hospital"].tolist() != sorted(seen["hospital"])  # else any numbering would pass
    t = seen["time"].iloc[1]  # two hospitals seen by t, not the third
    connect = lambda ev: connect_hamburg_data(ev, schema=tiny_data.schema, hospital_status=None)
    whole, part = connect(events), connect(events[events["time"].isna() | (events["time"] <= t)])
    assert part.encoded.sites["hospital"].tolist() == seen["hospital"].tolist()[:2]
    assert part.encoded.sites.equals(whole.encoded.sites.iloc[:2])
    for data in (whole, part):  # each event's site id names the hospital the connector recorded there
        enc = data.encoded
        known = enc.event_site_id >= 0
        assert (enc.sites["hospital"].to_numpy()[enc.event_site_id[known]] == enc.event_hospital_name[known]).all()
        assert pd.isna(enc.event_hospital_name[~known]).all()


def test_the_model_reads_none_of_the_hospital_table(model, external):
    """Inputs unchanged: the same predictions, bit for bit, without the data set's hospitals."""
    batch = external.batch(np.arange(N_POOLED))
    bare = dataclasses.replace(batch, event_site_id=None, site_names=())
    with torch.no_grad():
        with_sites, without = model(batch), model(bare)
    for task in model.config.tasks:
        assert torch.equal(with_sites.step_predictions[task], without.step_predictions[task]), task
    got = model.predict_system_breakdown(batch)
    for task in model.config.tasks:
        assert torch.equal(got.pathway_risk[task], with_sites.pathway_predictions[task]), task
    # without the table the breakdown falls back to the vocabulary index: a new city's hospitals are unknown
    assert len(model.predict_system_breakdown(bare).hospitals) == 0


def test_the_monitor_warns_per_hospital_of_every_city_it_streams(model, tiny_data, external):
    """History joined, then the last event streamed; Hamburg and Emscherstadt live in one monitor."""
    enc = external.encoded
    short = np.flatnonzero(enc.lengths <= 40)[:12]
    hamburg = tiny_data.indices("held_out")[:5]
    monitor = PathwayMonitor(model, capacity=4)
    monitor.join(_first_events(external.batch(short), None, drop_last=True))
    monitor.update(event_batch(external, enc.offsets[short + 1] - 1))
    monitor.join(tiny_data.batch(hamburg))
    got = monitor.system_breakdown()
    ext_table, ext_none = expected_warnings(model, external, short)
    ham_table, ham_none = expected_warnings(model, tiny_data, hamburg)
    table = pd.concat([ext_table, ham_table]).sort_index()
    assert_warnings_equal(got, table, ext_none + ham_none)


def test_replay_reports_changes_by_hospital_name_in_a_new_city(model, external):
    start = pd.Timestamp(external.pathways["start"].min()) + pd.Timedelta(hours=12)
    wanted = "Universitaetsklinikum Emscherstadt"
    changes = replay(model, external, str(start), hours=6, hospitals=[wanted])
    assert changes and {c.hospital for c in changes} <= set(external.encoded.sites["hospital"])
    assert wanted in {c.hospital for c in changes}
    with pytest.raises(ValueError, match="hospitals: unknown names"):
        replay(model, external, str(start), hours=6, hospitals=["Asklepios Nord"])


def _first_events(batch, n: int | None, drop_last: bool = False):
    """Each pathway's first n events (or all but its last with drop_last)."""
    lengths = batch.lengths - 1 if drop_last else batch.lengths.clamp(max=n)
    L = int(lengths.max())
    mask = torch.arange(L)[None, :] < lengths[:, None]  # (B, L)

    def cut(t, fill=0):
        return t[:, :L].masked_fill(~mask.view(*mask.shape, *[1] * (t.ndim - 2)), fill)

    return dataclasses.replace(
        batch,
        categorical={f: cut(t) for f, t in batch.categorical.items()},
        numeric=cut(batch.numeric),
        numeric_missing=cut(batch.numeric_missing, True),
        time_since_prev_h=cut(batch.time_since_prev_h),
        time_since_start_h=cut(batch.time_since_start_h),
        hour_of_day=cut(batch.hour_of_day),
        day_of_week=cut(batch.day_of_week),
        mask=mask,
        lengths=lengths,
        labels={},
        label_mask={},
        oracle={},
        event_hospital_id=cut(batch.event_hospital_id),
        event_site_id=cut(batch.event_site_id, -1),
    )
