"""Per-hospital warnings of `predict_system_breakdown` are per hospital of the data set, by name.

Index 1 of the hospital vocabulary ("unknown") is both no hospital yet (an ambulance before its departure) and
any hospital outside the training vocabulary. Grouped by that index, a city the model never saw got one warning
for all its hospitals, and once "unknown" was left out, none at all. The data set's own hospital table
(`EncodedPathways.sites`, `PathwayBatch.event_site_id`) tells them apart; only pathways with no hospital yet are
unattributed.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from hamburg_mamba.data import connect_hamburg_data, read_meds
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig, predict_system_breakdown

UNKNOWN = 1
NO_SITE = -1


@pytest.fixture(scope="module")
def model(tiny_data):
    torch.manual_seed(0)
    return HamburgHealthcareSafetyMamba(HamburgMambaConfig.from_schema(tiny_data.schema, preset="small")).eval()


def _with_latest(batch, site: list[int], vocab_id: list[int]):
    """The batch with each pathway's latest event at the given site and vocabulary index."""
    rows, last = torch.arange(batch.batch_size), batch.lengths - 1
    event_site_id, event_hospital_id = batch.event_site_id.clone(), batch.event_hospital_id.clone()
    event_site_id[rows, last] = torch.tensor(site)
    event_hospital_id[rows, last] = torch.tensor(vocab_id)
    return dataclasses.replace(batch, event_site_id=event_site_id, event_hospital_id=event_hospital_id)


def test_no_hospital_yet_counts_overall_but_has_no_warning(tiny_data, model):
    sites = tiny_data.encoded.sites
    a, b = sites["hospital"].iloc[0], sites["hospital"].iloc[1]
    va, vb = int(sites["vocab_id"].iloc[0]), int(sites["vocab_id"].iloc[1])
    batch = _with_latest(
        tiny_data.batch(tiny_data.indices("train")[:7]),
        [NO_SITE, NO_SITE, 0, 0, 1, 1, 1],
        [UNKNOWN] * 2 + [va] * 2 + [vb] * 3,
    )
    with torch.no_grad():
        risk = model(batch).pathway_predictions["closure_6h"].double()  # the warning task by default

    got = predict_system_breakdown(model, batch)
    assert list(got.hospitals) == sorted([a, b]) and got.unattributed == 2
    assert got.overall.n_pathways == 7 and got.overall.score == pytest.approx(float(risk.mean()), abs=1e-6)
    assert got.hospitals[a].score == pytest.approx(float(risk[2:4].mean()), abs=1e-6)
    assert got.hospitals[b].n_pathways == 3
    assert got.hospitals.vocab_id == {a: va, b: vb}


def test_one_hospital_with_two_vocabulary_indices_is_refused(tiny_data, model):
    batch = _with_latest(tiny_data.batch(tiny_data.indices("train")[:2]), [0, 0], [2, 3])
    with pytest.raises(ValueError, match="event_hospital_id: the pathways at hospital .* carry vocabulary indices"):
        predict_system_breakdown(model, batch)


def test_site_ids_outside_the_table_are_refused(tiny_data, model):
    batch = tiny_data.batch(tiny_data.indices("train")[:2])
    bad = batch.event_site_id.clone()
    bad[0, 0] = len(batch.site_names)
    with pytest.raises(ValueError, match="PathwayBatch.event_site_id: expected -1 .* or a row of site_names"):
        predict_system_breakdown(model, dataclasses.replace(batch, event_site_id=bad))


def test_hospitals_outside_the_vocabulary_each_get_their_own_warning(tiny_root, tiny_data, model):
    events = read_meds(tiny_root)["events"].drop(columns=["shard"])
    events["hospital"] = events["hospital"].map(lambda h: None if h is None or h != h else f"elsewhere {h}")
    new_city = connect_hamburg_data(events, schema=tiny_data.schema, hospital_status=None)
    enc = new_city.encoded
    assert set(np.unique(enc.event_hospital_id)) <= {UNKNOWN}
    pathways = np.arange(40)
    latest = pd.Series(enc.event_hospital_name[enc.offsets[pathways + 1] - 1])  # by hand, from the names
    got = predict_system_breakdown(model, new_city.batch(pathways))
    expected = latest.value_counts().sort_index()
    assert len(expected) > 1 and all(name.startswith("elsewhere ") for name in expected.index)
    assert {name: w.n_pathways for name, w in got.hospitals.items()} == expected.to_dict()
    assert got.unattributed == int(latest.isna().sum()) and got.overall.n_pathways == 40
