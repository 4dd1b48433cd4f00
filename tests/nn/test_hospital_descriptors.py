"""A model trained on the tiny Hamburg runs on Emscherstadt, a city whose hospitals it never saw: every hospital
is described by its own size and level (none collapses into the one "unknown" name), the inputs follow the
catalogue's order of sizes, and the predictions move with the descriptors: more beds for one hospital change
the inputs and predictions of its events and of nothing else."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hamburg_mamba.data import connect_hamburg_data, generate_synthetic, write_synthetic
from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS
from hamburg_mamba.data.schema import UNKNOWN_INDEX
from hamburg_mamba.data.synthetic import SyntheticConfig
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig

TRAIN_STEPS = 15
# Emscherstadt at the tiny Hamburg's scale (3 % of the catalogue's volumes) for a week: about 110 pathways.
EXTERNAL_TINY = dict(scale=0.03, days=7)
CHANGED = "Universitaetsklinikum Emscherstadt"


@pytest.fixture(scope="module")
def trained(tiny_data):
    """A small model trained a few steps on the tiny Hamburg's training split, with the default config."""
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
def external_root(tmp_path_factory):
    return write_synthetic(
        tmp_path_factory.mktemp("meds") / "external", generate_synthetic(SyntheticConfig.external(**EXTERNAL_TINY))
    )


def _connect(root, schema, table=None):
    return connect_hamburg_data(root, schema=schema, split="subject", hospital_table=table)


def _descriptor_columns(schema) -> list[int]:
    return [j for j, n in enumerate(schema.numeric_features) if n.startswith("hospital:")]


def _predict(model, data) -> dict[str, np.ndarray]:
    """task -> (P, L) event predictions of every pathway (all splits), and the batch."""
    batch = data.batch(np.arange(len(data.encoded.pathway_id)))
    with torch.no_grad():
        out = model(batch)
    return {t: p.numpy() for t, p in out.step_predictions.items()}, batch


def test_the_default_model_does_not_embed_the_hospital_name(trained):
    assert not trained.config.hospital_identity
    assert "hospital" not in trained.encoder.embeddings
    assert trained.config.num_numeric == trained.encoder.num_numeric


def test_a_hamburg_model_runs_on_hospitals_it_never_saw(trained, tiny_data, external_root):
    schema = tiny_data.schema
    assert schema.hospital_columns == ("ed_visits_per_year", "beds", "care_level")
    data = _connect(external_root, schema)
    enc = data.encoded
    known = pd.notna(enc.event_hospital_name)
    assert set(enc.event_hospital_name[known]) == {h.name for h in EXTERNAL_HOSPITALS}
    # every name is unknown to the training vocabulary: the name alone would collapse all six into one
    assert (enc.event_hospital_id[known] == UNKNOWN_INDEX).all()
    cols = _descriptor_columns(schema)
    assert not enc.numeric_missing[known][:, cols].any()  # no hospital without its descriptors
    assert enc.numeric_missing[~known][:, cols].all()
    # six hospitals, six distinct descriptor rows; ED visits in the catalogue's order of size
    by_hospital = pd.DataFrame(enc.numeric[known][:, cols]).groupby(enc.event_hospital_name[known]).first()
    assert len(by_hospital.drop_duplicates()) == len(EXTERNAL_HOSPITALS)
    visits = {h.name: h.ed_visits_per_year for h in EXTERNAL_HOSPITALS}
    order = sorted(visits, key=visits.get)
    assert by_hospital.loc[order, 0].is_monotonic_increasing
    # 78,000 visits exceed every Hamburg ED's, 9,500 fall below: bounded ranks beyond [0, 1] on either side
    assert 1.0 < by_hospital.loc[CHANGED, 0] < 1.5
    assert -0.5 < by_hospital.loc["Elisabeth-Krankenhaus Emscherstadt", 0] < 0.0
    preds, batch = _predict(trained, data)
    for task, p in preds.items():
        assert np.isfinite(p[batch.mask.numpy()]).all(), task


def test_predictions_follow_the_descriptors(trained, tiny_data, external_root):
    schema = tiny_data.schema
    table = pd.read_parquet(external_root / "metadata" / "hospitals.parquet")
    bigger = table.assign(beds=np.where(table["hospital"] == CHANGED, table["beds"] * 3, table["beds"]))
    base, changed = _connect(external_root, schema, table), _connect(external_root, schema, bigger)
    beds = schema.numeric_features.index("hospital:beds")
    at = base.encoded.event_hospital_name == CHANGED
    differs = base.encoded.numeric != changed.encoded.numeric  # (N, F)
    assert differs[:, beds][at].all()  # every event at that hospital reads more beds ...
    assert not differs[~at].any() and not np.delete(differs, beds, axis=1).any()  # ... and nothing else changed
    assert (changed.encoded.numeric[at, beds] > base.encoded.numeric[at, beds]).all()
    p0, batch = _predict(trained, base)
    p1, _ = _predict(trained, changed)
    real = batch.mask.numpy()
    offsets = base.encoded.offsets
    visited = np.array([at[offsets[p] : offsets[p + 1]].any() for p in range(len(offsets) - 1)])  # (P,)
    assert visited.any() and (~visited).any()
    for task in p0:
        delta = np.where(real, np.abs(p1[task] - p0[task]), 0.0)
        assert delta[visited].max() > 1e-6, task  # the model reads the descriptors
        assert delta[~visited].max() == 0.0, task  # a pathway never at that hospital is untouched


def test_hospital_identity_embeds_the_name_when_asked(tiny_data):
    """With identity on, the name's embedding is an input; off, no index of the name changes the output."""
    batch = tiny_data.batch(tiny_data.indices("train")[:4])
    other = batch.categorical["hospital"].clone()
    other[batch.mask] = UNKNOWN_INDEX
    for identity in (False, True):
        config = HamburgMambaConfig.from_schema(
            tiny_data.schema, preset="small", d_model=32, n_layers=1, hospital_identity=identity
        )
        torch.manual_seed(0)
        model = HamburgHealthcareSafetyMamba(config).eval()
        with torch.no_grad():
            a = model(batch).step_predictions["closure_6h"]
            batch.categorical["hospital"], saved = other, batch.categorical["hospital"]
            b = model(batch).step_predictions["closure_6h"]
            batch.categorical["hospital"] = saved
        assert ("hospital" in model.encoder.embeddings) == identity
        assert bool((a != b)[batch.mask].any()) == identity


def test_configs_saved_before_the_option_keep_the_name_embedding(tiny_data):
    config = HamburgMambaConfig.from_schema(tiny_data.schema, preset="small")
    blob = config.to_json()
    old = json.loads(blob)
    old.pop("hospital_identity")
    assert HamburgMambaConfig.from_json(json.dumps(old)).hospital_identity is True
    assert HamburgMambaConfig.from_json(blob).hospital_identity is False
