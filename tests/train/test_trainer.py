"""Trainer: schedule, learning, checkpoints (atomic, resumable after a kill), early stopping."""

import json
import math

import numpy as np
import pytest
import torch

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba
from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config, lr_factor
from hamburg_mamba.train.checkpoint import CHECKPOINTS, LATEST, latest_checkpoint


def test_lr_schedule_hand_values():
    # warmup 4 steps: 1/4, 2/4, 3/4, 4/4; then cosine over steps 4..13 (span 9) down to 0.1
    assert [lr_factor(s, 14, 4, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(13, 14, 4, 0.1) == pytest.approx(0.1)
    mid = 4 + 4.5
    assert lr_factor(mid, 14, 4, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 14, 4, 0.1) == pytest.approx(0.1)


def _trainer(data, run_dir, spec=None, **cfg):
    config = build_model_config(data, backbone=cfg.pop("backbone", "mamba"), preset="tiny")
    tc = TrainConfig(
        **{
            "epochs": 2,
            "batch_size": 16,
            "warmup_steps": 3,
            "checkpoint_every": 4,
            "progress": False,
            "num_threads": 1,
            "lr": 3e-3,
            **cfg,
        }
    )
    return Trainer(build_model(config, seed=tc.seed), data, tc, run_dir, data_spec=spec)


def test_training_lowers_tuning_loss_and_writes_a_loadable_run(tiny_data, tmp_path):
    tr = _trainer(tiny_data, tmp_path / "run", eval_every=4, epochs=3)
    before = tr.tuning_loss()["loss"]
    summary = tr.fit()
    assert summary["steps"] > 0 and summary["best_step"] > 0
    assert summary["best_tuning_loss"] < before - 0.02
    for f in ("config.json", "model.safetensors", "schema.json", "train_config.json", "data_spec.json", "history.json"):
        assert (tmp_path / "run" / f).exists(), f
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert min(h["tuning_loss"] for h in history) == pytest.approx(summary["best_tuning_loss"])
    # the saved best model reproduces its tuning loss
    loaded = HamburgHealthcareSafetyMamba.from_pretrained(tmp_path / "run")
    tr.module.load_state_dict(loaded.state_dict())
    assert tr.tuning_loss()["loss"] == pytest.approx(summary["best_tuning_loss"], rel=1e-5)


def test_resume_after_kill_gives_the_uninterrupted_weights(tiny_data, tmp_path):
    full = _trainer(tiny_data, tmp_path / "full")
    full.fit()
    # "kill" after 6 steps: the work after the last checkpoint (step 4) is lost and redone on resume
    first = _trainer(tiny_data, tmp_path / "killed")
    assert first.fit(stop_after=6) == {"interrupted_at": 6}
    assert latest_checkpoint(tmp_path / "killed").name == "step-0000004"
    # a torn write of the next checkpoint is ignored
    (tmp_path / "killed" / CHECKPOINTS / "step-0000008.tmp").mkdir()
    resumed = _trainer(tiny_data, tmp_path / "killed")
    summary = resumed.fit()
    assert summary["steps"] == full.step
    assert not (tmp_path / "killed" / CHECKPOINTS / "step-0000008.tmp").exists()
    for (name, a), b in zip(full.module.state_dict().items(), resumed.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (tmp_path / "killed" / CHECKPOINTS / LATEST).read_text() == latest_checkpoint(tmp_path / "full").name


def test_early_stopping_stops_and_keeps_the_best(tiny_data, tmp_path):
    # a learning rate far too high makes the tuning loss stop improving quickly
    tr = _trainer(
        tiny_data, tmp_path / "run", epochs=50, eval_every=2, patience=2, lr=0.5, warmup_steps=0, grad_clip=0.0
    )
    summary = tr.fit()
    assert summary["stopped"] == "early_stopping"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) >= 3 and summary["steps"] < tr.total_steps
    best = min(history, key=lambda h: h["tuning_loss"])
    assert best["step"] == summary["best_step"]
    assert tr.tuning_loss()["loss"] == pytest.approx(best["tuning_loss"], rel=1e-5)


@pytest.mark.parametrize("backbone", ["gru", "transformer", "hybrid"])
def test_other_backbones_train(tiny_data, tmp_path, backbone):
    tr = _trainer(tiny_data, tmp_path / backbone, backbone=backbone, max_steps=3, epochs=1)
    assert tr.fit()["steps"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_on_cuda(tiny_data, tmp_path):
    config = build_model_config(tiny_data, preset="tiny")
    tc = TrainConfig(epochs=1, max_steps=3, batch_size=8, progress=False)
    tr = Trainer(build_model(config, seed=0), tiny_data, tc, tmp_path / "run", device="cuda")
    assert tr.autocast
    assert math.isfinite(tr.fit()["best_tuning_loss"])


def test_every_label_weighs_the_same_whatever_its_batch(tiny_data, tmp_path):
    """Over an epoch of length-bucketed batches, the mean step loss equals the per-label mean loss over the
    training split (computed here in fixed batches of 7 pathways); the mean of per-batch means does not."""
    trainer = _trainer(tiny_data, tmp_path / "run")
    model = trainer.module.eval()
    trainer.sampler.set_epoch(0)
    with torch.no_grad():
        steps, per_batch_means = [], []
        for idx in trainer.sampler:
            out = model(tiny_data.batch(idx))
            steps.append(float(trainer._step_loss(tiny_data.batch(idx), out)))
            per_batch_means.append(float(out.loss))
        sums, counts = {}, {}
        train = tiny_data.indices("train")
        for s in range(0, train.size, 7):
            batch = tiny_data.batch(train[s : s + 7])
            out = model(batch)
            for task, value in out.task_losses.items():
                n = float(trainer._label_count(batch, task))
                sums[task] = sums.get(task, 0.0) + float(value) * n
                counts[task] = counts.get(task, 0.0) + n
    scale = trainer.task_scale  # the best constant prediction's loss per task, from the training labels
    enc, in_train = tiny_data.encoded, tiny_data.encoded.split == "train"
    for t in sums:
        if tiny_data.schema.tasks[t].kind == "regression":
            assert scale[t] == 1.0
            continue
        if t in enc.event_labels:
            y, valid, _ = enc.event_labels[t]
            valid = valid & np.repeat(in_train, enc.lengths)
        else:
            y, valid, _ = enc.pathway_labels[t]
            valid = valid & in_train
        prevalence = float(y[valid].mean())
        if prevalence in (0.0, 1.0):  # one class: not rescaled (see the test below)
            assert scale[t] == 1.0
            continue
        p = float(np.clip(prevalence, 1e-4, 1 - 1e-4))
        assert scale[t] == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))
    want = sum(sums[t] / counts[t] / scale[t] for t in sums if counts[t]) / len(sums)
    assert sum(steps) / len(steps) == pytest.approx(want, rel=1e-5)
    assert abs(sum(per_batch_means) / len(per_batch_means) - want) > 1e-3 * want  # the biased objective differs


def test_weight_decay_reaches_matrices_only(tiny_data, tmp_path):
    """The demo's regularisation setting (train --weight-decay) decays weight matrices, never norms, biases or
    embeddings (parameter_groups)."""
    from hamburg_mamba.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--weight-decay", "0.1"])
    tr = _trainer(tiny_data, tmp_path / "run", weight_decay=args.weight_decay)
    decayed, kept = tr.optimizer.param_groups
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
    names = {id(p): n for n, p in tr.module.named_parameters()}
    assert all(p.ndim >= 2 and "embed" not in names[id(p)] for p in decayed["params"])
    assert any("embed" in names[id(p)] for p in kept["params"])


def test_a_binary_task_with_one_training_class_is_not_weighted_a_thousandfold(tiny_spec, tmp_path):
    """Dividing by the best constant prediction's loss needs both classes: with every training label 0 that loss
    is 0 (clipped to about 1e-3), which would make the task weigh about a thousand times the others."""
    data = tiny_spec.connect()
    enc = data.encoded
    value, valid, oracle = enc.event_labels["adverse_event"]
    enc.event_labels["adverse_event"] = (np.zeros_like(value), valid, oracle)
    with pytest.warns(UserWarning, match="'adverse_event': every training label is 0"):
        trainer = _trainer(data, tmp_path / "run")
    assert trainer.task_scale["adverse_event"] == 1.0
    rescaled = [t for t, s in trainer.task_scale.items() if s != 1.0]
    assert rescaled and all(0 < trainer.task_scale[t] < math.log(2) + 1e-12 for t in rescaled)
