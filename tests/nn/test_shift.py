"""A trained model fed hospital states far beyond anything in its training period, end to end through the
connector: the status inputs stay bounded, the predictions converge as the state runs away, and no rare
outcome's prediction saturates where it did not with the real feed.

The shifted feed sets every numeric status column, from the held-out cut-off on, to its maximum plus `k`
standard deviations (k = 1e3 and 1e6): far outside the training range, in the levels and in the trends.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from hamburg_mamba.data import connect_hamburg_data
from hamburg_mamba.data.schema import EXCESS_MAX, NUMERIC_FEATURES
from hamburg_mamba.data.splits import TINY_CUTOFFS, mask_labels_after_cutoffs
from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

TRAIN_STEPS = 40
FAR, FARTHER = 1e3, 1e6  # standard deviations beyond the maximum
CONVERGED = 0.01  # largest change of any prediction between FAR and FARTHER
SATURATED = 0.9
RARE = 0.05  # training prevalence below which a binary task counts as rare


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    config = build_model_config(tiny_data, backbone="mamba", preset="tiny")
    tc = TrainConfig(
        epochs=2,
        max_steps=TRAIN_STEPS,
        batch_size=16,
        warmup_steps=4,
        lr=5e-3,
        eval_every=TRAIN_STEPS,
        progress=False,
        num_threads=1,
    )
    trainer = Trainer(build_model(config, seed=0), tiny_data, tc, tmp_path_factory.mktemp("shift") / "run")
    trainer.fit()
    return trainer.module.eval()


def _connect(root, schema, k: float | None):
    """The tiny city with the training schema; k: the held-out feed's status columns set to max + k std."""
    hourly = pd.read_parquet(root / "system" / "hospital_hourly.parquet")
    if k is not None:
        late = hourly["time"] >= pd.Timestamp(TINY_CUTOFFS[1])
        for column in schema.status_columns:
            if pd.api.types.is_bool_dtype(hourly[column]):
                continue  # a flag has no "beyond"
            values = hourly[column].astype(np.float64)
            hourly[column] = values.where(~late, values.max() + k * (values.std() + 1.0))
    data = connect_hamburg_data(
        root, hospital_status=hourly, schema=schema, split="temporal", temporal_cutoffs=TINY_CUTOFFS
    )
    mask_labels_after_cutoffs(data, TINY_CUTOFFS)
    return data


def _held_out_predictions(model, data) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """task -> (E,) prediction at every real event of the held-out pathways, and their (E, F_status) inputs."""
    idx = data.indices("held_out")
    batch = data.batch(idx)
    with torch.no_grad():
        out = model(batch)
    real = batch.mask.numpy()  # (B, L)
    preds = {
        t: p.float().numpy()[real] for t, p in out.step_predictions.items() if model.config.tasks[t]["kind"] == "binary"
    }
    status = batch.numeric[..., len(NUMERIC_FEATURES) :].numpy()[real]  # (E, F_status)
    missing = batch.numeric_missing[..., len(NUMERIC_FEATURES) :].numpy()[real]
    return preds, np.where(missing, np.nan, status)


def _rare_tasks(data) -> list[str]:
    enc, in_train = data.encoded, np.repeat(data.encoded.split == "train", data.encoded.lengths)
    rare = []
    for task, spec in data.schema.tasks.items():
        if spec.kind == "binary" and spec.level == "event":
            y, valid, _ = enc.event_labels[task]
            if valid[in_train].any() and y[valid & in_train].mean() < RARE:
                rare.append(task)
    return rare


def test_runaway_hospital_state_keeps_inputs_bounded_and_predictions_unsaturated(trained, tiny_root, tiny_data):
    schema = tiny_data.schema
    real, _ = _held_out_predictions(trained, _connect(tiny_root, schema, None))
    far_data = _connect(tiny_root, schema, FAR)
    far, far_inputs = _held_out_predictions(trained, far_data)
    farther, farther_inputs = _held_out_predictions(trained, _connect(tiny_root, schema, FARTHER))

    # the shift is real: most present status inputs lie beyond the training range, all within the bound
    for inputs in (far_inputs, farther_inputs):
        present = inputs[~np.isnan(inputs)]
        assert (present > 1).mean() > 0.5
        # (closed in float32: a state 1e6 spreads beyond the range rounds to the bound itself)
        assert present.min() >= -EXCESS_MAX and present.max() <= 1 + EXCESS_MAX
    assert (far_data.status_out_of_range["held_out"] > 0.5).any()  # and the connector reports it

    # the model reads the status inputs (else the checks below would hold trivially)
    assert max(np.abs(far[t] - real[t]).max() for t in real) > 1e-3
    rare = _rare_tasks(tiny_data)
    assert rare
    for task in real:
        for p in (far[task], farther[task]):
            assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all(), task
        # bounded inputs: a thousand times farther away changes nothing that matters
        assert np.abs(farther[task] - far[task]).max() < CONVERGED, task
        if task in rare:
            new = (farther[task] > SATURATED) & ~(real[task] > SATURATED)
            assert not new.any(), f"{task}: {int(new.sum())} predictions saturate only under the shifted state"
