"""Replay a period event by event through `PathwayMonitor` and report the hospital warnings as they changed.

Every pathway present in the window is replayed from its first event (so its state is what a live monitor
would hold), but warnings are reported only from the window's start. Events sharing a timestamp in one pathway
go in successive updates (the monitor takes one event per pathway per update), in their recorded order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hamburg_mamba.data.batch import PathwayBatch
from hamburg_mamba.data.splits import event_times_us
from hamburg_mamba.nn import PathwayMonitor


@dataclass
class WarningChange:
    time: pd.Timestamp
    hospital: str
    old: str
    new: str
    score: float
    n_pathways: int
    drivers: list

    def line(self) -> str:
        drivers = ", ".join(f"{t} {v:.2f}" for t, v in self.drivers[:3])
        return (
            f"{self.time:%Y-%m-%d %H:%M}  {self.hospital:<22} {self.old:>6} -> {self.new:<6} "
            f"risk {self.score:.2f} over {self.n_pathways} pathways  [{drivers}]"
        )


def event_batch(data, flat: np.ndarray) -> PathwayBatch:
    """One event per pathway (L = 1) from the flat encoded arrays."""
    enc = data.encoded
    pathway = np.repeat(np.arange(enc.lengths.size), enc.lengths)[flat]
    col = lambda a, dtype=None: torch.from_numpy(np.ascontiguousarray(a[flat][:, None])).to(dtype)
    K = flat.size
    return PathwayBatch(
        categorical={f: col(enc.categorical[:, j], torch.int64) for j, f in enumerate(data.schema.categorical_vocab)},
        numeric=torch.from_numpy(np.ascontiguousarray(enc.numeric[flat][:, None, :])),
        numeric_missing=torch.from_numpy(np.ascontiguousarray(enc.numeric_missing[flat][:, None, :])),
        time_since_prev_h=col(enc.time_since_prev_h),
        time_since_start_h=col(enc.time_since_start_h),
        hour_of_day=col(enc.hour_of_day),
        day_of_week=col(enc.day_of_week, torch.int64),
        mask=torch.ones(K, 1, dtype=torch.bool),
        lengths=torch.ones(K, dtype=torch.int64),
        labels={},
        label_mask={},
        event_hospital_id=col(enc.event_hospital_id, torch.int64),
        subject_id=torch.from_numpy(enc.subject_id[pathway]),
        pathway_id=torch.from_numpy(enc.pathway_id[pathway]),
        event_site_id=col(enc.event_site_id, torch.int64),
        site_names=tuple(enc.sites["hospital"]),
    )


def replay(
    model, data, start: str, hours: float, hospitals: list[str] | None = None, every_h: float = 1.0, on_change=None
) -> list[WarningChange]:
    """Stream every event of pathways active in [start, start + hours) and check the warning levels each
    `every_h` hours from `start`; returns the changes (and calls on_change(change) as they happen).

    hospitals: names in the data set's hospital table (`EncodedPathways.sites`), seen in training or not; only
    pathways known at one of them join. Warnings are per hospital name.
    """
    for name, value in (("hours", hours), ("every_h", every_h)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"replay: {name} must be a finite number of hours > 0, got {value!r}")
    enc = data.encoded
    t0 = pd.Timestamp(start).to_datetime64().astype("datetime64[us]").astype(np.int64)
    t1 = t0 + int(hours * 3.6e9)
    times = event_times_us(data)
    pathway_of = np.repeat(np.arange(enc.lengths.size), enc.lengths)
    first = np.full(enc.lengths.size, np.iinfo(np.int64).max)
    np.minimum.at(first, pathway_of, times)
    last = np.zeros(enc.lengths.size, dtype=np.int64)
    np.maximum.at(last, pathway_of, times)
    names = list(enc.sites["hospital"])
    active = (first < t1) & (last >= t0)
    if hospitals:
        wanted = [names.index(h) for h in hospitals if h in names]
        if len(wanted) != len(hospitals):
            raise ValueError(f"hospitals: unknown names {sorted(set(hospitals) - set(names))}; known {names}")
        # a pathway joins once it is known at one of them (departure or ED arrival) within the period
        at_wanted = np.zeros(enc.lengths.size, dtype=bool)
        at_wanted[pathway_of[np.isin(enc.event_site_id, wanted) & (times < t1)]] = True
        active &= at_wanted
    flat = np.flatnonzero(active[pathway_of] & (times < t1))
    flat = flat[np.lexsort((flat, times[flat]))]  # time order; ties keep the recorded order
    monitor = PathwayMonitor(model)
    levels: dict[str, str] = {}
    changes: list[WarningChange] = []
    check_at = t0
    i = 0
    step_us = int(every_h * 3.6e9)
    while check_at < t1:
        # feed every event up to the check time
        j = np.searchsorted(times[flat], check_at, "right")
        pending = flat[i:j]
        i = j
        while pending.size:
            pw = pathway_of[pending]
            _, first_of = np.unique(pw, return_index=True)
            take = np.zeros(pending.size, dtype=bool)
            take[first_of] = True
            monitor.update(event_batch(data, pending[take]))
            done = pending[take][enc.offsets[pathway_of[pending[take]] + 1] - 1 == pending[take]]
            if done.size:
                monitor.close(enc.pathway_id[pathway_of[done]].tolist())
            pending = pending[~take]
        if len(monitor):
            sb = monitor.system_breakdown()
            for hospital, w in sb.hospitals.items():
                old = levels.get(hospital, "green")
                if w.level != old:
                    ch = WarningChange(
                        pd.Timestamp(np.datetime64(int(check_at), "us")),
                        hospital,
                        old,
                        w.level,
                        w.score,
                        w.n_pathways,
                        w.drivers,
                    )
                    changes.append(ch)
                    if on_change:
                        on_change(ch)
                levels[hospital] = w.level
        check_at += step_us
    return changes
