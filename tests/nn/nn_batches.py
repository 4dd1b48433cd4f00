"""Batches built directly with torch (planted signals the tests control) and the small model configs.

A module of its own (not conftest.py, which only holds the fixtures): `from conftest import` resolves to
whichever conftest was imported first when several test folders are collected in one run.

Glossary: B batch (pathways), L events, F numeric features.
"""

from __future__ import annotations

import torch

from hamburg_mamba.data.batch import PathwayBatch
from hamburg_mamba.data.schema import CATEGORICAL_FIELDS, NUMERIC_FEATURES, TASKS
from hamburg_mamba.nn import HamburgMambaConfig

# Table sizes per categorical field (pad and unk included), small but > 2 so every field has real tokens.
VOCAB_SIZES = {"code": 24, "stage": 8, "hospital": 6, "unit": 10, "triage_group": 7, "arrival_mode": 5}
assert tuple(VOCAB_SIZES) == CATEGORICAL_FIELDS
ALL_TASKS = {
    n: {"kind": t.kind, "level": t.level, "horizon_h": t.horizon_h, "group": t.group} for n, t in TASKS.items()
}
# The code whose appearance the planted labels remember (crisis: from then on; readmission: per pathway).
TRIGGER_CODE = 2
MISSING_RATE = 0.3
LABEL_MISSING_RATE = 0.2


def small_config(backbone: str = "mamba", tasks: dict | None = None, **kwargs) -> HamburgMambaConfig:
    return HamburgMambaConfig.small(
        vocab_sizes=dict(VOCAB_SIZES),
        num_numeric=len(NUMERIC_FEATURES),
        tasks=dict(tasks or ALL_TASKS),
        backbone=backbone,
        **kwargs,
    )


def make_batch(
    lengths, seed: int = 0, max_len: int | None = None, planted: bool = False, trigger_rate: float = 0.5
) -> PathwayBatch:
    """Random pathways of the given lengths, right-padded to max_len (default: the longest).

    Random labels for every declared task, or with planted=True labels the model can only get right by
    remembering the past:
        closure_6h[t] = 1 iff TRIGGER_CODE occurred at or before event t (a pathway-long memory);
        readmission_30d = 1 iff TRIGGER_CODE occurs anywhere in the pathway (read at the last event, so a
            model that reads pathway-level outputs anywhere else scores near chance);
        unit_workload[t] = 4 + 3 * (the event's triage group is red or orange).
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    B = lengths.shape[0]
    L = int(max_len if max_len is not None else lengths.max())
    mask = torch.arange(L)[None, :] < lengths[:, None]  # (B, L)

    categorical = {name: torch.randint(2, size, (B, L), generator=g) * mask for name, size in VOCAB_SIZES.items()}
    # One hospital per pathway, as in real data.
    hospital_id = torch.randint(2, VOCAB_SIZES["hospital"], (B,), generator=g)
    categorical["hospital"] = hospital_id[:, None] * mask
    if planted:
        code = categorical["code"]
        code[code == TRIGGER_CODE] = TRIGGER_CODE + 1
        has_trigger = torch.rand(B, generator=g) < trigger_rate
        where = (torch.rand(B, generator=g) * lengths).long()  # (B,) position in [0, length)
        rows = torch.nonzero(has_trigger)[:, 0]
        code[rows, where[rows]] = TRIGGER_CODE

    F = len(NUMERIC_FEATURES)
    numeric_missing = (torch.rand(B, L, F, generator=g) < MISSING_RATE) | ~mask[..., None]
    numeric = torch.randn(B, L, F, generator=g).masked_fill(numeric_missing, 0.0)
    # Exponential gaps (mean 1 h), a fifth of them 0 (events recorded at the same time).
    gaps = -torch.log1p(-torch.rand(B, L, generator=g)) * (torch.rand(B, L, generator=g) > 0.2)
    gaps[:, 0] = 0.0
    time_since_prev_h = (gaps * mask).float()
    time_since_start_h = time_since_prev_h.cumsum(1) * mask
    start_hour = torch.rand(B, 1, generator=g) * 24
    hour_of_day = ((start_hour + time_since_start_h) % 24) * mask
    day_of_week = torch.randint(0, 7, (B, 1), generator=g).expand(B, L) * mask

    labels, label_mask = {}, {}
    for name, spec in ALL_TASKS.items():
        shape = (B, L) if spec["level"] == "event" else (B,)
        if spec["kind"] == "binary":
            labels[name] = (torch.rand(shape, generator=g) < 0.3).float()
        else:
            labels[name] = torch.rand(shape, generator=g) * 10
        valid = torch.rand(shape, generator=g) > LABEL_MISSING_RATE
        label_mask[name] = valid & mask if spec["level"] == "event" else valid
    if planted:
        seen = (categorical["code"] == TRIGGER_CODE).cumsum(1) > 0  # (B, L)
        labels["closure_6h"] = seen.float() * mask
        label_mask["closure_6h"] = mask.clone()
        labels["readmission_30d"] = seen.any(1).float()
        label_mask["readmission_30d"] = torch.ones(B, dtype=torch.bool)
        severe = categorical["triage_group"] <= 3  # indices 2, 3 stand for MTS red, orange here
        labels["unit_workload"] = (4.0 + 3.0 * severe.float()) * mask
        label_mask["unit_workload"] = mask.clone()

    batch = PathwayBatch(
        categorical=categorical,
        numeric=numeric,
        numeric_missing=numeric_missing,
        time_since_prev_h=time_since_prev_h,
        time_since_start_h=time_since_start_h.float(),
        hour_of_day=hour_of_day.float(),
        day_of_week=day_of_week.contiguous(),
        mask=mask,
        lengths=lengths,
        labels=labels,
        label_mask=label_mask,
        event_hospital_id=categorical["hospital"].clone(),
        subject_id=torch.arange(B) + 1000,
        pathway_id=torch.arange(B) + 5000 + 100 * seed,
    )
    batch.check()
    return batch


def select(batch: PathwayBatch, rows, steps: slice | None = None) -> PathwayBatch:
    """Rows `rows` of a batch, optionally only the events in `steps` (lengths recomputed from the mask)."""
    rows = torch.as_tensor(rows, dtype=torch.int64)
    steps = steps if steps is not None else slice(None)

    def ev(t):
        return t[rows][:, steps]

    mask = ev(batch.mask)
    labels = {n: ev(v) if v.dim() == 2 else v[rows] for n, v in batch.labels.items()}
    label_mask = {n: ev(v) if v.dim() == 2 else v[rows] for n, v in batch.label_mask.items()}
    return PathwayBatch(
        categorical={n: ev(v) for n, v in batch.categorical.items()},
        numeric=ev(batch.numeric),
        numeric_missing=ev(batch.numeric_missing),
        time_since_prev_h=ev(batch.time_since_prev_h),
        time_since_start_h=ev(batch.time_since_start_h),
        hour_of_day=ev(batch.hour_of_day),
        day_of_week=ev(batch.day_of_week),
        mask=mask,
        lengths=mask.sum(1),
        labels=labels,
        label_mask=label_mask,
        event_hospital_id=ev(batch.event_hospital_id),
        subject_id=batch.subject_id[rows],
        pathway_id=batch.pathway_id[rows],
    )


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (average ranks for ties)."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    for value in torch.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
