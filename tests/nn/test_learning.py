"""Each backbone learns planted signals that need memory of the pathway (a test that can fail: a model that
cannot carry information forward, reads pathway outputs at the wrong event, or mixes up task columns scores
near chance)."""

from __future__ import annotations

import torch
from nn_batches import ALL_TASKS, auroc, make_batch, small_config

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba

PLANTED_TASKS = {name: ALL_TASKS[name] for name in ("closure_6h", "readmission_30d", "unit_workload")}
TRAIN_STEPS = 80
BATCH = 16
LENGTHS = (4, 25)  # pathway lengths drawn uniformly from [4, 25)
LEARNING_RATE = 5e-3
MIN_AUROC = 0.9


def test_auroc_helper_matches_pairwise_count():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (40,), generator=g).float()  # many ties
    labels = torch.rand(40, generator=g) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert abs(auroc(scores, labels) - float(pairs.mean())) < 1e-12


def test_backbone_learns_planted_signal(backbone):
    torch.manual_seed(0)
    config = small_config(backbone, tasks=PLANTED_TASKS, target_stats={"unit_workload": [5.0, 1.5]})
    model = HamburgHealthcareSafetyMamba(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    g = torch.Generator().manual_seed(1)
    losses = []
    for step in range(TRAIN_STEPS):
        batch = make_batch(torch.randint(*LENGTHS, (BATCH,), generator=g), seed=100 + step, planted=True)
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10, losses

    model.eval()
    held_out = make_batch(torch.randint(*LENGTHS, (128,), generator=g), seed=10_000, planted=True)
    with torch.no_grad():
        out = model(held_out)
    crisis = auroc(out.step_predictions["closure_6h"][held_out.mask], held_out.labels["closure_6h"][held_out.mask])
    readmission = auroc(out.pathway_predictions["readmission_30d"], held_out.labels["readmission_30d"])
    assert crisis > MIN_AUROC, f"closure_6h AUROC {crisis:.3f}"
    assert readmission > MIN_AUROC, f"readmission_30d AUROC {readmission:.3f}"
    error = (out.step_predictions["unit_workload"] - held_out.labels["unit_workload"])[held_out.mask]
    variance = held_out.labels["unit_workload"][held_out.mask].var()
    assert float((error**2).mean()) < 0.5 * float(variance), "unit_workload explains < half the variance"
