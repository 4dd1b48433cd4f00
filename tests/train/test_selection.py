"""Model selection: early stopping and the kept checkpoint read the objective that training optimises.

Glossary: P tuning pathways, T tasks (sorted by name, as `Trainer.tuning_pathway_losses` orders them).
"""

import math

import numpy as np
import pytest
import torch

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba
from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

RARE, COMMON = "icu_transfer", "closure_6h"


def _trainer(data, run_dir, **cfg):
    config = build_model_config(data, backbone="mamba", preset="tiny")
    tc = TrainConfig(
        **{
            "epochs": 1,
            "batch_size": 16,
            "warmup_steps": 2,
            "checkpoint_every": 100,
            "progress": False,
            "num_threads": 1,
            "lr": 3e-3,
            **cfg,
        }
    )
    return Trainer(build_model(config, seed=tc.seed), data, tc, run_dir)


def _entropy(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _hand_tuning_losses(data, model) -> dict[str, float]:
    """Per-task mean label loss over the tuning split in float64, from the model's logits and the encoded labels
    (BCE written out as softplus(z) - y z; regression as the squared error in training standard deviations)."""
    enc = data.encoded
    tune = data.indices("tuning")
    sums, counts = {}, {}
    with torch.no_grad():
        out = model.eval()(data.batch(tune))
    for task, spec in model.config.tasks.items():
        if spec["level"] == "event":
            value, valid, _ = enc.event_labels[task]
            z, y = [], []
            for b, p in enumerate(tune):
                a, e = enc.offsets[p], enc.offsets[p + 1]
                keep = valid[a:e]
                z.append(out.step_logits[task][b, : e - a].double().numpy()[keep])
                y.append(value[a:e][keep].astype(np.float64))
            z, y = np.concatenate(z), np.concatenate(y)
        else:
            value, valid, _ = enc.pathway_labels[task]
            keep = valid[tune]
            z, y = out.pathway_logits[task].double().numpy()[keep], value[tune][keep].astype(np.float64)
        if spec["kind"] == "binary":
            per = np.logaddexp(0.0, z) - y * z
        else:
            per = ((z - y) / model.config.target_stats[task][1]) ** 2
        if y.size:
            sums[task], counts[task] = per.sum(), y.size
    return {t: sums[t] / counts[t] for t in sums}


def _hand_scales(data, model) -> dict[str, float]:
    """The entropy of each binary task's training prevalence (the best constant prediction's loss); 1 for
    regression and for a binary task whose training labels hold one class."""
    enc, in_train = data.encoded, data.encoded.split == "train"
    out = {}
    for task, spec in model.config.tasks.items():
        if spec["kind"] == "regression":
            out[task] = 1.0
            continue
        if spec["level"] == "event":
            y, valid, _ = enc.event_labels[task]
            valid = valid & np.repeat(in_train, enc.lengths)
        else:
            y, valid, _ = enc.pathway_labels[task]
            valid = valid & in_train
        prevalence = float(y[valid].mean())
        out[task] = 1.0 if prevalence in (0.0, 1.0) else _entropy(prevalence)  # one class: not rescaled
    return out


def test_selection_loss_is_the_training_objective_on_the_whole_tuning_split(tiny_data, tmp_path):
    tr = _trainer(tiny_data, tmp_path / "run")
    assert np.array_equal(tr.tune_idx, tiny_data.indices("tuning"))  # no subsample unless asked
    per_task = _hand_tuning_losses(tiny_data, tr.module)
    scale = _hand_scales(tiny_data, tr.module)
    got = tr.tuning_loss()
    for task, loss in per_task.items():
        assert got[task] == pytest.approx(loss, rel=1e-5), task
    assert got["loss"] == pytest.approx(np.mean([per_task[t] / scale[t] for t in per_task]), rel=1e-5)
    assert got["unweighted"] == pytest.approx(np.mean(list(per_task.values())), rel=1e-5)
    assert abs(got["loss"] - got["unweighted"]) > 0.1 * got["unweighted"]  # the two objectives differ here


@pytest.mark.parametrize("selection, kept_step", [("objective", 2), ("unweighted", 4)])
def test_trainer_keeps_the_weighted_best_where_the_unweighted_mean_disagrees(
    tiny_data, tmp_path, monkeypatch, selection, kept_step
):
    """Three evaluations with hand-set tuning losses. At the first every task sits at its best constant
    prediction's loss; at the second the rare task's loss doubles and the common one's falls by a fifth, which
    lowers the plain mean of task losses (the common task's loss is several times the rare one's) but raises the
    training objective; the third equals the second. The trainer must keep the first evaluation's weights (the
    earlier rule, selection="unweighted", kept the second's)."""
    tr = _trainer(tiny_data, tmp_path / "run", max_steps=6, eval_every=2, patience=5, selection=selection)
    tasks = sorted(tr.module.config.tasks)
    scale = {t: tr.task_scale.get(t, 1.0) for t in tasks}
    factors = [{}, {RARE: 2.0, COMMON: 0.8}, {RARE: 2.0, COMMON: 0.8}]
    scripted = [{t: scale[t] * f.get(t, 1.0) for t in tasks} for f in factors]
    plain = [np.mean(list(s.values())) for s in scripted]
    weighted = [np.mean([s[t] / scale[t] for t in tasks]) for s in scripted]
    assert plain[1] < plain[0] and weighted[1] > weighted[0]  # the hand-built case: the objectives disagree

    calls = iter(scripted)

    def scripted_losses(batch_size=None):
        losses = next(calls)
        return np.array([[losses[t] for t in tasks]]), np.ones((1, len(tasks)))  # (P=1, T)

    monkeypatch.setattr(tr, "tuning_pathway_losses", scripted_losses)
    snapshots = {}
    evaluate = tr._evaluate

    def snapshot_then_evaluate(*args):
        snapshots[tr.step] = {k: v.clone() for k, v in tr.module.state_dict().items()}
        evaluate(*args)

    monkeypatch.setattr(tr, "_evaluate", snapshot_then_evaluate)
    summary = tr.fit()
    assert sorted(snapshots) == [2, 4, 6]
    assert summary["best_step"] == kept_step
    assert summary["best_tuning_loss"] == pytest.approx(weighted[0] if selection == "objective" else plain[1])
    assert [h["tuning_loss"] for h in tr.history] == pytest.approx(weighted)
    assert [h["tuning_loss_unweighted"] for h in tr.history] == pytest.approx(plain)
    saved = HamburgHealthcareSafetyMamba.from_pretrained(tmp_path / "run").state_dict()
    for name, want in snapshots[kept_step].items():
        assert torch.equal(tr.module.state_dict()[name], want), name
        assert torch.equal(saved[name], want), name
    assert any(not torch.equal(snapshots[6][k], v) for k, v in snapshots[2].items())  # training did move


def test_a_run_folder_selected_under_the_earlier_rule_is_not_resumed(tiny_data, tmp_path):
    """A run folder written before `selection` existed holds its best loss on the plain mean; resuming it under
    the training objective would compare two scales, so it is refused, naming the field."""
    import json

    from hamburg_mamba.train.checkpoint import RunSettingsMismatch

    first = _trainer(tiny_data, tmp_path / "run", max_steps=4, eval_every=2)
    assert first.fit(stop_after=2) == {"interrupted_at": 2}
    path = tmp_path / "run" / "train_config.json"
    saved = json.loads(path.read_text())
    del saved["selection"]  # as the earlier code wrote it
    path.write_text(json.dumps(saved))
    with pytest.raises(RunSettingsMismatch, match="selection"):
        _trainer(tiny_data, tmp_path / "run", max_steps=4, eval_every=2).fit()


def test_kept_weights_equal_those_at_the_best_evaluation(tiny_data, tmp_path, monkeypatch):
    """Real training with a learning rate high enough that the tuning loss goes up and down: the weights kept at
    the end are those of the evaluation with the lowest selection loss, whichever came last."""
    tr = _trainer(tiny_data, tmp_path / "run", epochs=3, eval_every=2, patience=50, lr=0.05, warmup_steps=0)
    snapshots = {}
    evaluate = tr._evaluate

    def snapshot_then_evaluate(*args):
        snapshots[tr.step] = {k: v.clone() for k, v in tr.module.state_dict().items()}
        evaluate(*args)

    monkeypatch.setattr(tr, "_evaluate", snapshot_then_evaluate)
    summary = tr.fit()
    best = min(tr.history, key=lambda h: h["tuning_loss"])
    assert best["step"] == summary["best_step"] and best["step"] != tr.history[-1]["step"]
    for name, want in snapshots[best["step"]].items():
        assert torch.equal(tr.module.state_dict()[name], want), name
    assert tr.tuning_loss()["loss"] == pytest.approx(best["tuning_loss"], rel=1e-6)


def test_selection_standard_error_of_a_subsample(tiny_data, tmp_path, monkeypatch):
    """Two tuning pathways with hand-set losses: the whole split's selection loss is the label-weighted mean; a
    one-pathway subsample is either pathway, so its spread is half the difference (+- the draws' noise)."""
    tr = _trainer(tiny_data, tmp_path / "run")
    tasks = sorted(tr.module.config.tasks)
    scale = np.array([tr.task_scale.get(t, 1.0) for t in tasks])
    sums = np.stack([scale * 1.0, scale * 3.0 * 2])  # (P=2, T): pathway 0 loss 1 x scale, pathway 1 loss 3 x scale
    counts = np.stack([np.ones(len(tasks)), np.full(len(tasks), 2.0)])  # pathway 1 has two labels per task
    monkeypatch.setattr(tr, "tuning_pathway_losses", lambda batch_size=None: (sums, counts))
    whole = tr.selection_standard_error(n_pathways=2)
    assert whole["whole_split"] == pytest.approx((1.0 + 3.0 * 2) / 3)
    assert whole["standard_error"] == pytest.approx(0.0, abs=1e-12) and whole["tuning_pathways"] == 2
    one = tr.selection_standard_error(n_pathways=1, draws=400)
    assert one["standard_error"] == pytest.approx((3.0 - 1.0) / 2, rel=0.05)


def test_tuning_subsample_is_deterministic_and_of_the_asked_size(tiny_data, tmp_path):
    n = tiny_data.indices("tuning").size // 2
    a = _trainer(tiny_data, tmp_path / "a", eval_max_pathways=n)
    b = _trainer(tiny_data, tmp_path / "b", eval_max_pathways=n)
    assert a.tune_idx.size == n and np.array_equal(a.tune_idx, b.tune_idx)
    assert np.isin(a.tune_idx, tiny_data.indices("tuning")).all()
