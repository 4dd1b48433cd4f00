"""Per-hospital warnings of `predict_system_breakdown` leave out the "unknown" hospital.

Index 1 of the hospital vocabulary is no hospital: an ambulance before its departure, or any hospital outside
the training vocabulary. It got a warning level of its own, so on a city the model never saw every hospital
was merged into one warning (and the monitor reported changes for "<unk>").
"""

import dataclasses

import numpy as np
import pytest
import torch

from hamburg_mamba.data import connect_hamburg_data, read_meds
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig, predict_system_breakdown

UNKNOWN = 1


@pytest.fixture(scope="module")
def model(tiny_data):
    torch.manual_seed(0)
    return HamburgHealthcareSafetyMamba(HamburgMambaConfig.from_schema(tiny_data.schema, preset="small")).eval()


def test_unknown_hospital_counts_overall_but_has_no_warning(tiny_data, model):
    batch = tiny_data.batch(tiny_data.indices("train")[:7])
    last = batch.lengths - 1
    hospital = batch.event_hospital_id.clone()
    rows = torch.arange(7)
    hospital[rows, last] = torch.tensor([UNKNOWN, UNKNOWN, 2, 2, 3, 3, 3])
    batch = dataclasses.replace(batch, event_hospital_id=hospital)
    with torch.no_grad():
        risk = model(batch).pathway_predictions["closure_6h"].double()  # the warning task by default

    got = predict_system_breakdown(model, batch)
    assert sorted(got.hospitals) == [2, 3] and got.unattributed == 2
    assert got.overall.n_pathways == 7 and got.overall.score == pytest.approx(float(risk.mean()), abs=1e-6)
    assert got.hospitals[2].score == pytest.approx(float(risk[2:4].mean()), abs=1e-6)
    assert got.hospitals[3].n_pathways == 3


def test_hospitals_outside_the_vocabulary_are_not_merged_into_one(tiny_root, tiny_data, model):
    events = read_meds(tiny_root)["events"].drop(columns=["shard"])
    events["hospital"] = events["hospital"].map(lambda h: None if h is None or h != h else f"elsewhere {h}")
    new_city = connect_hamburg_data(events, schema=tiny_data.schema, hospital_status=None)
    assert set(np.unique(new_city.encoded.event_hospital_id)) <= {UNKNOWN}
    got = predict_system_breakdown(model, new_city.batch(np.arange(5)))
    assert got.hospitals == {} and got.unattributed == 5 and got.overall.n_pathways == 5
