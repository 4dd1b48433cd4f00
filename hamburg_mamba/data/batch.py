"""The typed batch the model consumes: padded pathways as torch tensors.

Dimension letters: B pathways in the batch, L events (padded to the longest pathway, right padding),
F numeric features (`DatasetSchema.numeric_features`).

This is the only module of `hamburg_mamba.data` that imports torch; everything before it is numpy/pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

from hamburg_mamba.data.connector import NO_SITE
from hamburg_mamba.data.schema import PAD_INDEX

HOURS_PER_DAY = 24.0
DAYS_PER_WEEK = 7


@dataclass
class PathwayBatch:
    """B pathways of up to L events, right-padded; every per-event tensor is zero where `mask` is False.

    categorical: field -> (B, L) int64 indices into `DatasetSchema.categorical_vocab[field]`
        (0 padding, 1 unknown); fields are `DatasetSchema.categorical_vocab` keys (code, stage, hospital, unit,
        triage_group, arrival_mode).
    numeric: (B, L, F) float32, normalised with training-split statistics (the event's value and age z-scored,
        the system-state features as bounded ranks, `schema.BoundedRank`); 0 where missing.
    numeric_missing: (B, L, F) bool, True where the value is absent (and on padding).
    time_since_prev_h: (B, L) float32 hours since the previous event of the pathway; 0 for the first event
        and for padding.
    time_since_start_h: (B, L) float32 hours since the pathway's first timed event; 0 on padding.
    hour_of_day: (B, L) float32 in [0, 24), local wall-clock hour with fraction; 0 on padding.
    day_of_week: (B, L) int64, 0 = Monday .. 6 = Sunday; 0 on padding.
    mask: (B, L) bool, True for real events.
    lengths: (B,) int64 number of real events per pathway.
    labels: task -> (B, L) float32 for event-level tasks, (B,) float32 for pathway-level tasks
        (binary labels are 0/1; a pathway-level label belongs to the pathway's last real event).
    label_mask: task -> bool tensor of the label's shape, False where the label is missing.
    event_hospital_id: (B, L) int64 index in `categorical_vocab["hospital"]` of the hospital known at each event
        (its own, else the pathway's latest earlier one); 1 (unknown) before the destination is chosen and on
        static facts, 0 on padding. The hospital a prediction at that event belongs to. Not a model input
        (the model reads `categorical["hospital"]`, the record's column).
    subject_id: (B,) int64 MEDS subject_id.
    pathway_id: (B,) int64 pathway (encounter) id, unique within the dataset.
    oracle: task -> tensor of the label's shape, the generator's true probability (binary) or expected value
        (regression) behind each label; empty for data without ground truth.
    event_site_id: (B, L) int64 row of `site_names` of the hospital known at each event, -1 (`NO_SITE`) where
        none is known and on padding. Unlike `event_hospital_id` it tells apart hospitals outside the training
        vocabulary; not a model input. None in a batch built by hand without its data set's hospitals.
    site_names: the data set's hospital names (`EncodedPathways.sites`), indexed by `event_site_id`.
    """

    categorical: dict[str, Tensor]
    numeric: Tensor
    numeric_missing: Tensor
    time_since_prev_h: Tensor
    time_since_start_h: Tensor
    hour_of_day: Tensor
    day_of_week: Tensor
    mask: Tensor
    lengths: Tensor
    labels: dict[str, Tensor]
    label_mask: dict[str, Tensor]
    event_hospital_id: Tensor
    subject_id: Tensor
    pathway_id: Tensor
    oracle: dict[str, Tensor] = field(default_factory=dict)
    event_site_id: Tensor | None = None
    site_names: tuple[str, ...] = ()

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.mask.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PathwayBatch:
        def move(v):
            if v is None or isinstance(v, tuple):
                return v
            if isinstance(v, dict):
                return {k: t.to(device, non_blocking=non_blocking) for k, t in v.items()}
            return v.to(device, non_blocking=non_blocking)

        return PathwayBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def pin_memory(self) -> PathwayBatch:
        """Called by torch's DataLoader when pin_memory=True."""

        def pin(v):
            if v is None or isinstance(v, tuple):
                return v
            if isinstance(v, dict):
                return {k: t.pin_memory() for k, t in v.items()}
            return v.pin_memory()

        return PathwayBatch(**{f.name: pin(getattr(self, f.name)) for f in fields(self)})

    def check(self) -> None:
        """Raise ValueError naming the first field whose shape, dtype or values break the contract above."""
        B, L = self.mask.shape
        F = self.numeric.shape[-1]
        expect = {
            "numeric": ((B, L, F), torch.float32),
            "numeric_missing": ((B, L, F), torch.bool),
            "time_since_prev_h": ((B, L), torch.float32),
            "time_since_start_h": ((B, L), torch.float32),
            "hour_of_day": ((B, L), torch.float32),
            "day_of_week": ((B, L), torch.int64),
            "mask": ((B, L), torch.bool),
            "lengths": ((B,), torch.int64),
            "event_hospital_id": ((B, L), torch.int64),
            "subject_id": ((B,), torch.int64),
            "pathway_id": ((B,), torch.int64),
        }
        for name, (shape, dtype) in expect.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ValueError(f"PathwayBatch.{name}: expected {shape} {dtype}, got {tuple(t.shape)} {t.dtype}")
        for name, t in self.categorical.items():
            if tuple(t.shape) != (B, L) or t.dtype != torch.int64:
                raise ValueError(
                    f"PathwayBatch.categorical[{name!r}]: expected {(B, L)} int64, got {tuple(t.shape)} {t.dtype}"
                )
        for name, t in self.labels.items():
            m = self.label_mask.get(name)
            if m is None or m.shape != t.shape or m.dtype != torch.bool or t.shape not in ((B, L), (B,)):
                raise ValueError(
                    f"PathwayBatch.labels[{name!r}]: shape {tuple(t.shape)} needs (B, L) or (B,) "
                    "and a bool label_mask of the same shape"
                )
        if not torch.equal(self.mask.sum(1), self.lengths):
            raise ValueError("PathwayBatch.lengths: does not equal mask.sum(1)")
        self._check_sites()
        self.check_values()

    def _check_sites(self) -> None:
        site = self.event_site_id
        if site is None:
            return
        if tuple(site.shape) != tuple(self.mask.shape) or site.dtype != torch.int64:
            raise ValueError(
                f"PathwayBatch.event_site_id: expected {tuple(self.mask.shape)} torch.int64, "
                f"got {tuple(site.shape)} {site.dtype}"
            )
        if site.numel() and bool(((site < NO_SITE) | (site >= len(self.site_names))).any()):
            raise ValueError(
                f"PathwayBatch.event_site_id: expected {NO_SITE} (no hospital) or a row of site_names "
                f"(0..{len(self.site_names) - 1}), got [{site.min().item()}, {site.max().item()}]"
            )

    def _values_ok(self) -> bool:
        """The fast path of `check_values`: every numeric value finite, every ranged field's min and max inside
        its range (a NaN fails both comparisons; the ranged float fields must also be finite)."""
        if not bool(torch.isfinite(self.numeric).all()):
            return False
        for name, (low, high) in VALUE_RANGES.items():
            t = getattr(self, name)
            if t.numel():
                lo, hi = (v.item() for v in t.aminmax())
                if not (low <= lo and hi <= high and math.isfinite(hi)):
                    return False
        return True

    def check_values(self) -> None:
        """Raise ValueError naming the first field with a non-finite or out-of-range value. One NaN input makes
        every later output of its pathway NaN (the recurrence carries it, and a streamed one stays in the cache),
        a NaN in a masked slot still poisons the weights' gradients (0 * NaN), and negative gaps mean events out
        of time order. One fused test with a single synchronisation on the fast path (streaming calls this per
        event); the field-by-field search only when it fails."""
        if self._values_ok():
            return
        for name in FINITE_FIELDS:
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ValueError(f"PathwayBatch.{name}: expected finite values, got NaN or inf")
        for name, (low, high) in VALUE_RANGES.items():
            t = getattr(self, name)
            if t.numel() and bool(((t < low) | (t > high)).any()):
                raise ValueError(
                    f"PathwayBatch.{name}: expected values in [{low}, {high}], got [{t.min().item()}, {t.max().item()}]"
                )


# Fields of `PathwayBatch.check_values`: finite, and within closed ranges (a time a microsecond before midnight
# is 24.0 hours in float32).
FINITE_FIELDS = ("numeric", "time_since_prev_h", "time_since_start_h", "hour_of_day")
VALUE_RANGES = {
    "time_since_prev_h": (0.0, math.inf),
    "time_since_start_h": (0.0, math.inf),
    "hour_of_day": (0.0, HOURS_PER_DAY),
    "day_of_week": (0, DAYS_PER_WEEK - 1),
}


def collate(enc, idx: np.ndarray, schema) -> PathwayBatch:
    """Gather pathways `idx` from `EncodedPathways` into a right-padded PathwayBatch (vectorised)."""
    idx = np.asarray(idx, dtype=np.int64)
    start = enc.offsets[idx]
    lengths = enc.offsets[idx + 1] - start  # (B,)
    L = int(lengths.max()) if idx.size else 0
    pos = np.arange(L)[None, :]  # (1, L)
    mask = pos < lengths[:, None]  # (B, L)
    flat = np.where(mask, start[:, None] + pos, 0)  # (B, L) row of each slot, 0 on padding (masked below)

    def take(a, fill=0):
        out = a[flat]  # (B, L, ...)
        out[~mask] = fill
        return torch.from_numpy(np.ascontiguousarray(out))

    cat = take(enc.categorical, PAD_INDEX).to(torch.int64)  # (B, L, C)
    categorical = {f: cat[:, :, j].contiguous() for j, f in enumerate(schema.categorical_vocab)}
    labels, label_mask, oracle = {}, {}, {}
    for task, (val, m, orc) in enc.event_labels.items():
        labels[task] = take(val)
        label_mask[task] = take(m, False)
        if orc is not None:
            oracle[task] = take(orc)
    for task, (val, m, orc) in enc.pathway_labels.items():
        labels[task] = torch.from_numpy(val[idx].copy())
        label_mask[task] = torch.from_numpy(m[idx].copy())
        if orc is not None:
            oracle[task] = torch.from_numpy(orc[idx].copy())
    return PathwayBatch(
        categorical=categorical,
        numeric=take(enc.numeric),
        numeric_missing=take(enc.numeric_missing, True),
        time_since_prev_h=take(enc.time_since_prev_h),
        time_since_start_h=take(enc.time_since_start_h),
        hour_of_day=take(enc.hour_of_day),
        day_of_week=take(enc.day_of_week).to(torch.int64),
        mask=torch.from_numpy(mask),
        lengths=torch.from_numpy(lengths),
        labels=labels,
        label_mask=label_mask,
        event_hospital_id=take(enc.event_hospital_id, PAD_INDEX),
        subject_id=torch.from_numpy(enc.subject_id[idx].copy()),
        pathway_id=torch.from_numpy(enc.pathway_id[idx].copy()),
        oracle=oracle,
        event_site_id=take(enc.event_site_id, NO_SITE),
        site_names=tuple(enc.sites["hospital"]),
    )


# Bucketing sorts pathways by length within windows of this many batches, so padding stays small while
# the order still varies between epochs.
BUCKET_WINDOW_BATCHES = 50


class PathwayBatchSampler:
    """Deterministic batches of pathway indices: same seed and epoch give the same batches.

    shuffle: permute with numpy's generator seeded by (seed, epoch); bucket_by_length: within windows of
    BUCKET_WINDOW_BATCHES batches, sort by length before cutting batches (then shuffle the batch order).
    """

    def __init__(self, indices, lengths, batch_size, shuffle, seed, bucket_by_length, drop_last):
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket, self.drop_last, self.epoch = bucket_by_length, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        idx = rng.permutation(self.indices) if self.shuffle else self.indices.copy()
        if self.bucket:
            w = self.batch_size * BUCKET_WINDOW_BATCHES
            for s in range(0, idx.size, w):
                part = idx[s : s + w]
                idx[s : s + w] = part[np.argsort(self.lengths[part], kind="stable")]
        out = [idx[s : s + self.batch_size] for s in range(0, idx.size, self.batch_size)]
        if self.drop_last and out and out[-1].size < self.batch_size:
            out = out[:-1]
        if self.bucket and self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def __iter__(self):
        return iter(self.batches())

    def __len__(self):
        n = self.indices.size // self.batch_size
        return n if self.drop_last or self.indices.size % self.batch_size == 0 else n + 1


class _Collate:
    """Picklable collate function for DataLoader workers."""

    def __init__(self, data):
        self.data = data

    def __call__(self, items):
        return self.data.batch(np.asarray(items[0] if len(items) == 1 and np.ndim(items[0]) else items))


class _IndexDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def make_dataloader(data, indices, batch_size, shuffle, seed, bucket_by_length, num_workers, drop_last):
    sampler = PathwayBatchSampler(indices, data.encoded.lengths, batch_size, shuffle, seed, bucket_by_length, drop_last)
    return torch.utils.data.DataLoader(
        _IndexDataset(data.encoded.lengths.size),
        batch_sampler=sampler,
        collate_fn=_Collate(data),
        num_workers=num_workers,
    )
