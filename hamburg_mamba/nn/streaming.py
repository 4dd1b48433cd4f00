"""PathwayMonitor: live risks for thousands of pathways, updated after every new event.

Glossary: S slots (capacity), K pathways with a new event in one update, T attention cache capacity.

The monitor keeps one row of recurrent state per live pathway in a pool (per layer: the conv inputs and SSM
state of Mamba layers, the hidden state of GRU layers, keys and values of attention layers). An update
gathers the K rows of the pathways that had an event, advances them with `model.step` and scatters them
back: O(K) work per update, independent of how long the pathways are (for Mamba and GRU layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hamburg_mamba.nn.mamba import check_weights_dtype
from hamburg_mamba.nn.model import (
    HamburgHealthcareSafetyMamba,
    PathwaySites,
    SystemBreakdown,
    latest_sites,
    summarize_breakdown,
)

DEFAULT_CAPACITY = 256


class PathwayMonitor:
    """Streaming risks per live pathway. Pathways join on their first event (or with their history via
    `join`), leave with `close`, and any subset may have an event in an update.

    weights_dtype: passed to every `model.step` of `update` (None: exact; torch.float16 / torch.bfloat16:
    half-precision projection weights, see `HamburgHealthcareSafetyMamba.step`); `join` runs the exact forward.
    """

    def __init__(
        self,
        model: HamburgHealthcareSafetyMamba,
        capacity: int = DEFAULT_CAPACITY,
        weights_dtype: torch.dtype | None = None,
    ):
        if capacity < 1:
            raise ValueError(f"PathwayMonitor.capacity: expected >= 1, got {capacity}")
        check_weights_dtype(weights_dtype, "PathwayMonitor")
        self.weights_dtype = weights_dtype
        model.eval()
        self.model = model
        self.pool = model.empty_cache(capacity)  # per layer: name -> (S, ...)
        self.slots: dict[int, int] = {}  # pathway_id -> slot
        self.free = list(range(capacity - 1, -1, -1))
        device = next(model.parameters()).device
        self.latest = {t: torch.full((capacity,), float("nan"), device=device) for t in model.config.tasks}
        self.hospital = torch.zeros(capacity, dtype=torch.int64, device=device)  # training vocabulary index
        # the monitor's own hospital table, by name: pathways of several data sets may be live at once, and each
        # data set numbers its hospitals (`PathwayBatch.site_names`) on its own
        self.site_names: list[str] = []
        self._site_of: dict[str, int] = {}
        self.site = torch.full((capacity,), -1, dtype=torch.int64, device=device)  # row of site_names, -1: none
        self.events_seen = torch.zeros(capacity, dtype=torch.int64, device=device)

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, pathway_id: int) -> bool:
        return pathway_id in self.slots

    @torch.no_grad()
    def update(self, events) -> dict[str, Tensor]:
        """events: a `PathwayBatch` with one new event per pathway (L == 1), identified by `pathway_id`;
        unseen pathway ids join with an empty history. Returns task -> (K,) predictions in events' order."""
        ids = events.pathway_id.tolist()
        if len(set(ids)) != len(ids):
            raise ValueError(
                "PathwayMonitor.update: events.pathway_id has duplicates; send one event per pathway "
                "per update (in time order)"
            )
        slots = self._slots_for(ids)  # (K,)
        cache = [{name: t[slots] for name, t in layer.items()} for layer in self.pool]
        out = self.model.step(events, cache, weights_dtype=self.weights_dtype)
        self._write(slots, cache)
        self._record(slots, out.predictions, latest_sites(events), increment=1)
        return out.predictions

    @torch.no_grad()
    def join(self, history) -> dict[str, Tensor]:
        """Admit pathways with the events they already have: history is a `PathwayBatch` (right-padded, any
        length); their state is the full forward's cache at each pathway's last event. Returns task -> (K,)."""
        ids = history.pathway_id.tolist()
        already = [i for i in ids if i in self.slots]
        if already or len(set(ids)) != len(ids):
            raise ValueError(f"PathwayMonitor.join: pathway ids must be new and distinct; already live: {already}")
        slots = self._slots_for(ids)
        out = self.model(history, return_cache=True)
        self._write(slots, out.cache)
        self._record(slots, out.pathway_predictions, latest_sites(history), increment=history.lengths)
        return out.pathway_predictions

    def close(self, pathway_ids) -> None:
        """The pathways left (discharge, transfer, death); their slots are reused."""
        for pid in pathway_ids.tolist() if isinstance(pathway_ids, Tensor) else pathway_ids:
            if pid not in self.slots:
                raise KeyError(f"PathwayMonitor.close: pathway {pid} is not live")
            slot = self.slots.pop(pid)
            self.free.append(slot)
            for t in self.latest.values():
                t[slot] = float("nan")

    def risks(self) -> tuple[Tensor, dict[str, Tensor]]:
        """(pathway ids (S_live,), task -> (S_live,) latest predictions) of the live pathways."""
        pids, slots = self._live()
        return pids, {t: v[slots] for t, v in self.latest.items()}

    def system_breakdown(self) -> SystemBreakdown:
        """Warning level over all live pathways and per hospital (see `predict_system_breakdown`)."""
        if not self.slots:
            raise ValueError("PathwayMonitor.system_breakdown: no live pathway")
        pids, slots = self._live()
        sites = PathwaySites(self.site[slots], self.hospital[slots], self.site_names)
        return summarize_breakdown(self.model.config, {t: v[slots] for t, v in self.latest.items()}, sites, pids)

    # ------------------------------------------------------------------------------------------------

    def _live(self) -> tuple[Tensor, Tensor]:
        device = self.hospital.device
        pids = torch.tensor(list(self.slots), dtype=torch.int64, device=device)
        slots = torch.tensor(list(self.slots.values()), dtype=torch.int64, device=device)
        return pids, slots

    def _slots_for(self, ids: list[int]) -> Tensor:
        new = [i for i in ids if i not in self.slots]
        while len(new) > len(self.free):
            self._grow()
        fresh = []
        for pid in new:
            self.slots[pid] = self.free.pop()
            fresh.append(self.slots[pid])
        slots = torch.tensor([self.slots[i] for i in ids], dtype=torch.int64, device=self.hospital.device)
        if fresh:
            self._reset(torch.tensor(fresh, dtype=torch.int64, device=self.hospital.device))
        return slots

    def _reset(self, slots: Tensor) -> None:
        for layer in self.pool:
            for t in layer.values():
                t[slots] = 0
        self.events_seen[slots] = 0

    def _grow(self) -> None:
        """Double the number of slots."""
        capacity = self.hospital.shape[0]
        self.pool = [{n: torch.cat([t, torch.zeros_like(t)]) for n, t in layer.items()} for layer in self.pool]
        self.latest = {n: torch.cat([t, torch.full_like(t, float("nan"))]) for n, t in self.latest.items()}
        self.hospital = torch.cat([self.hospital, torch.zeros_like(self.hospital)])
        self.site = torch.cat([self.site, torch.full_like(self.site, -1)])
        self.events_seen = torch.cat([self.events_seen, torch.zeros_like(self.events_seen)])
        self.free.extend(range(2 * capacity - 1, capacity - 1, -1))

    def _write(self, slots: Tensor, cache: list[dict[str, Tensor]]) -> None:
        for layer, new in zip(self.pool, cache, strict=True):
            for name, t in new.items():
                pool = layer[name]
                if pool.shape[1:] != t.shape[1:]:
                    # Attention caches grow along their event dimension: pad the smaller side to the larger.
                    size = [max(a, b) for a, b in zip(pool.shape[1:], t.shape[1:], strict=True)]
                    pool = layer[name] = _pad_to(pool, size)
                    t = _pad_to(t, size)
                pool[slots] = t.to(pool.dtype)

    def _record(self, slots: Tensor, predictions: dict[str, Tensor], sites: PathwaySites, increment) -> None:
        for t, v in predictions.items():
            self.latest[t][slots] = v.to(self.latest[t].dtype)
        self.hospital[slots] = sites.vocab_id
        self.site[slots] = self._own_sites(sites)
        self.events_seen[slots] += increment

    def _own_sites(self, sites: PathwaySites) -> Tensor:
        """(K,) rows of `site_names` for the batch's `sites.index` (-1 stays -1), adding unseen names."""
        index, inverse = torch.unique(sites.index, return_inverse=True)  # a few hospitals among K pathways
        own = []
        for i in index.tolist():
            if i < 0:
                own.append(-1)
                continue
            name = sites.names[i]
            if name not in self._site_of:
                self._site_of[name] = len(self.site_names)
                self.site_names.append(name)
            own.append(self._site_of[name])
        return torch.tensor(own, dtype=torch.int64, device=self.site.device)[inverse]


def _pad_to(t: Tensor, size: list[int]) -> Tensor:
    """Zero-pad every non-batch dimension of t at its end up to `size`."""
    pad = []
    for have, want in reversed(list(zip(t.shape[1:], size, strict=True))):
        pad += [0, want - have]
    return F.pad(t, pad)
