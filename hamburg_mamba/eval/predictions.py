"""Prediction times and the neural models' predictions at them.

Glossary: N laid-out events (flat), P pathways, R prediction rows of one split.

A prediction row is the last event of a pathway at one timestamp that carries any event-level label: MEDS
labels may use everything up to and including `prediction_time`, and several events share a timestamp (the
seven vitals of one measurement), so the earlier ones would predict without the later ones. Every model and
baseline is scored at exactly these rows. Pathway-level tasks (readmission) are scored once per pathway at its
last event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hamburg_mamba.data.splits import event_times_us

# Inference batches are cut to about this many padded events (B x L), so long ICU stays do not pad short ones.
EVENTS_PER_BATCH = 24_000


@dataclass
class PredictionRows:
    """flat (R,) event index; pathway (R,) pathway index; pos (R,) position in the pathway; time_us (R,) absolute
    time; hospital (R,) hospital vocabulary index; labels / masks / oracle: task -> (R,)."""

    split: str
    flat: np.ndarray
    pathway: np.ndarray
    pos: np.ndarray
    time_us: np.ndarray
    hospital: np.ndarray
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    oracle: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.flat.size)


@dataclass
class PathwayRows:
    """Pathway-level tasks: pathway (Q,) indices with any pathway label, flat (Q,) index of their last event."""

    split: str
    pathway: np.ndarray
    flat: np.ndarray
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    oracle: dict[str, np.ndarray]


def last_event_at_time(data) -> np.ndarray:
    """(N,) True for the last event of its pathway at its timestamp."""
    enc = data.encoded
    N = enc.offsets[-1]
    last = np.ones(N, dtype=bool)
    last[:-1] = enc.time_since_prev_h[1:] > 0
    last[enc.offsets[1:] - 1] = True  # a pathway's last event
    return last


def prediction_rows(data, split: str, tasks=None) -> PredictionRows:
    enc = data.encoded
    tasks = [t for t in (tasks or enc.event_labels) if t in enc.event_labels]
    in_split = np.repeat(enc.split == split, enc.lengths)
    any_label = np.zeros(enc.offsets[-1], dtype=bool)
    for t in tasks:
        any_label |= enc.event_labels[t][1]
    flat = np.flatnonzero(in_split & any_label & last_event_at_time(data))
    pathway = np.repeat(np.arange(enc.lengths.size), enc.lengths)[flat]
    times = event_times_us(data)
    labels, masks, oracle = {}, {}, {}
    for t in tasks:
        val, m, orc = enc.event_labels[t]
        labels[t], masks[t] = val[flat], m[flat]
        if orc is not None:
            oracle[t] = orc[flat]
    return PredictionRows(
        split=split,
        flat=flat,
        pathway=pathway,
        pos=flat - enc.offsets[pathway],
        time_us=times[flat],
        hospital=enc.event_hospital_id[flat],
        labels=labels,
        masks=masks,
        oracle=oracle,
    )


def pathway_rows(data, split: str) -> PathwayRows:
    enc = data.encoded
    in_split = enc.split == split
    any_label = np.zeros(enc.lengths.size, dtype=bool)
    for _, (_, m, _) in enc.pathway_labels.items():
        any_label |= m
    pathway = np.flatnonzero(in_split & any_label)
    labels, masks, oracle = {}, {}, {}
    for t, (val, m, orc) in enc.pathway_labels.items():
        labels[t], masks[t] = val[pathway], m[pathway]
        if orc is not None:
            oracle[t] = orc[pathway]
    return PathwayRows(
        split=split, pathway=pathway, flat=enc.offsets[pathway + 1] - 1, labels=labels, masks=masks, oracle=oracle
    )


def length_batches(pathways: np.ndarray, lengths: np.ndarray, events_per_batch: int = EVENTS_PER_BATCH):
    """Pathways sorted by length, cut so that batch size x longest length stays near events_per_batch."""
    order = pathways[np.argsort(lengths[pathways], kind="stable")]
    batches, start = [], 0
    while start < order.size:
        end = start + 1
        while end < order.size and (end - start + 1) * lengths[order[end]] <= events_per_batch:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


@torch.no_grad()
def model_predictions(
    model, data, rows: PredictionRows, prows: PathwayRows | None = None, device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The model's prediction of every task at every row (event tasks) and per pathway (pathway tasks)."""
    model.eval().to(device)
    enc = data.encoded
    tasks = model.config.tasks
    event_tasks = [t for t, s in tasks.items() if s["level"] == "event"]
    pathway_tasks = [t for t, s in tasks.items() if s["level"] == "pathway"]
    out_rows = {t: np.full(len(rows), np.nan, dtype=np.float64) for t in event_tasks}
    out_pw = {t: np.full(0 if prows is None else prows.pathway.size, np.nan) for t in pathway_tasks}
    need = np.unique(np.concatenate([rows.pathway, prows.pathway if prows is not None else np.zeros(0, np.int64)]))
    # where each needed pathway's rows are
    row_order = np.argsort(rows.pathway, kind="stable")
    row_start = np.searchsorted(rows.pathway[row_order], need, "left")
    row_end = np.searchsorted(rows.pathway[row_order], need, "right")
    where = {int(p): (a, b) for p, a, b in zip(need, row_start, row_end, strict=True)}
    pw_index = {} if prows is None else {int(p): i for i, p in enumerate(prows.pathway)}
    for idx in length_batches(need, enc.lengths):
        batch = data.batch(idx).to(device)
        out = model(batch)
        step = {t: out.step_predictions[t].float().cpu().numpy() for t in event_tasks}  # task -> (B, L)
        pathway = {t: out.pathway_predictions[t].float().cpu().numpy() for t in pathway_tasks}  # task -> (B,)
        for b, p in enumerate(idx.tolist()):
            a, e = where[p]
            if e > a:
                r = row_order[a:e]
                for t in event_tasks:
                    out_rows[t][r] = step[t][b, rows.pos[r]]
            if p in pw_index:
                for t in pathway_tasks:
                    out_pw[t][pw_index[p]] = pathway[t][b]
    return out_rows, out_pw
