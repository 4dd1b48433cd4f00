"""HamburgHealthcareSafetyMamba: encoder -> backbone -> heads, over typed batches of patient pathways.

Glossary: B batch (pathways), L events, D d_model, S live pathways (streaming).

    batch (PathwayBatch) --HamburgClinicalEncoder--> (B, L, D) --Backbone--> (B, L, D) --heads--> task -> (B, L)

The backbone is Mamba, GRU, causal Transformer or the Mamba/attention hybrid (`config.backbone`); all share
this interface, including `step` for streaming one event per pathway.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from hamburg_mamba.nn.backbones import AttentionBlock, Backbone
from hamburg_mamba.nn.config import TASK_GROUPS, WARNING_LEVELS, HamburgMambaConfig
from hamburg_mamba.nn.encoder import HamburgClinicalEncoder
from hamburg_mamba.nn.heads import HEADS, task_loss
from hamburg_mamba.nn.mamba import SelectiveSSMLayer, check_weights_dtype, event_clock

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Pathways listed per warning as the ones pushing its score up most.
TOP_PATHWAYS = 5
# The vocabularies' padding and "unknown" indices (hamburg_mamba.data.schema.PAD_INDEX, UNKNOWN_INDEX): as a
# hospital, unknown is no hospital known yet (an ambulance before its departure) or one outside the training
# vocabulary (every hospital of a new city).
PAD_HOSPITAL = 0
UNKNOWN_HOSPITAL = 1


@dataclass
class ModelOutput:
    """Per task: logits (binary: log-odds; regression: the value) and predictions (binary: probability;
    regression: the value), per event (B, L) and per pathway at its last real event (B,).

    Outputs at padded events are meaningless (they are never used by the loss or the pathway outputs).
    loss: mean over the tasks that have labels in the batch of each task's masked mean loss; None without labels.
    cache: per-layer recurrent state after each pathway's last real event (with `return_cache=True`), ready
    for `model.step`.
    """

    step_logits: dict[str, Tensor]
    step_predictions: dict[str, Tensor]
    pathway_logits: dict[str, Tensor]
    pathway_predictions: dict[str, Tensor]
    hidden: Tensor
    loss: Tensor | None = None
    task_losses: dict[str, Tensor] = field(default_factory=dict)
    cache: list[dict[str, Tensor]] | None = None


@dataclass
class StepOutput:
    """One new event per pathway: task -> (B,) logits and predictions (as in `ModelOutput`)."""

    logits: dict[str, Tensor]
    predictions: dict[str, Tensor]


@dataclass
class BreakdownWarning:
    """A warning level over a group of pathways (the whole batch or one hospital).

    score: mean predicted probability of `task` (a hospital closure to ambulances) over the group's pathways.
    drivers: (task, mean prediction) for the binary tasks at or above the yellow threshold, highest first,
    then every regression task's mean: what is elevated behind the level.
    top_pathways: (pathway_id, risk of `task`) of the pathways with the highest risk, highest first.
    """

    level: str
    score: float
    task: str
    n_pathways: int
    drivers: list[tuple[str, float]]
    top_pathways: list[tuple[int, float]]


class HospitalWarnings(Mapping):
    """Hospital name -> the warning over its pathways, in name order.

    vocab_id: name -> the hospital's index in the training vocabulary (UNKNOWN_HOSPITAL for one outside it).
    Reading by that index (an int, the key before hospitals were keyed by name) still finds a hospital of the
    training vocabulary, with a DeprecationWarning; a hospital outside it has no index of its own.
    """

    def __init__(self, warnings_by_name: dict[str, BreakdownWarning], vocab_id: dict[str, int]):
        self._warnings = dict(sorted(warnings_by_name.items()))
        self.vocab_id = vocab_id

    def __getitem__(self, key) -> BreakdownWarning:
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            key = self._name_of(int(key))
        return self._warnings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._warnings)

    def __len__(self) -> int:
        return len(self._warnings)

    def __repr__(self) -> str:
        return f"HospitalWarnings({self._warnings!r})"

    def _name_of(self, vocab_id: int) -> str:
        warnings.warn(
            "SystemBreakdown.hospitals is keyed by hospital name; reading it by training vocabulary index is "
            "deprecated (the names' indices are in SystemBreakdown.hospitals.vocab_id)",
            DeprecationWarning,
            stacklevel=3,
        )
        names = [n for n, v in self.vocab_id.items() if v == vocab_id and v != UNKNOWN_HOSPITAL]
        if not names:
            raise KeyError(vocab_id)
        return names[0]


@dataclass
class SystemBreakdown:
    """pathway_risk: task -> (B,) prediction at each pathway's latest event; overall: the warning over all
    pathways; hospitals: hospital name -> the warning over the pathways whose latest event knew that hospital,
    whether the training vocabulary holds it or not (`HospitalWarnings`); unattributed: pathways whose latest
    event knew no hospital yet (an ambulance before its departure): in `overall`, in no hospital's warning."""

    pathway_risk: dict[str, Tensor]
    overall: BreakdownWarning
    hospitals: HospitalWarnings
    unattributed: int = 0


@dataclass
class PathwaySites:
    """The hospital each of B pathways belongs to at its latest event.

    index: (B,) int64 row of `names`, negative where no hospital is known yet.
    vocab_id: (B,) int64 the hospital's training vocabulary index (UNKNOWN_HOSPITAL outside it or where none).
    names: the hospital names `index` points into (`PathwayBatch.site_names`).
    """

    index: Tensor
    vocab_id: Tensor
    names: Sequence[str]


class HamburgHealthcareSafetyMamba(nn.Module):
    """Clinical encoder, sequence backbone and the safety, staff and crisis heads the config's tasks need."""

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        if not config.tasks:
            raise ValueError(
                "HamburgHealthcareSafetyMamba: config.tasks is empty; build the config with "
                "HamburgMambaConfig.from_schema(schema)"
            )
        self.config = config
        self.encoder = HamburgClinicalEncoder(config)
        self.backbone = Backbone(config)
        groups = {spec["group"] for spec in config.tasks.values()}
        self.heads = nn.ModuleDict({g: HEADS[g](config) for g in TASK_GROUPS if g in groups})
        self._scale_residual_outputs()

    @torch.no_grad()
    def _scale_residual_outputs(self) -> None:
        # GPT-2 / Mamba: residual branches' output projections scaled by 1/sqrt(layers) so the residual stream's
        # variance does not grow with depth at initialisation.
        scale = 1.0 / math.sqrt(self.config.n_layers)
        for module in self.modules():
            if isinstance(module, SelectiveSSMLayer):
                module.out_proj.weight.mul_(scale)
            elif isinstance(module, AttentionBlock):
                module.proj.weight.mul_(scale)
                module.mlp_out.weight.mul_(scale)

    # ------------------------------------------------------------------------------------------------
    # Whole pathways

    def forward(self, batch, return_cache: bool = False) -> ModelOutput:
        """batch: `hamburg_mamba.data.PathwayBatch` with B >= 1 pathways, right-padded, each with >= 1 event.

        Labels of tasks the config does not declare are not read (the config picks the tasks).
        """
        check_batch(batch)
        x = self.encoder(batch)  # (B, L, D)
        clock = event_clock(batch.time_since_prev_h, batch.mask, self.config.time_unit_h)  # (B, L)
        out = self.backbone(x, clock, batch.lengths, return_state=return_cache)
        h, cache = out if return_cache else (out, None)  # (B, L, D)
        step_logits = self._apply_heads(h)  # task -> (B, L)
        rows = torch.arange(batch.batch_size, device=h.device)
        last = batch.lengths - 1  # (B,)
        pathway_logits = {t: v[rows, last] for t, v in step_logits.items()}  # task -> (B,)
        output = ModelOutput(
            step_logits=step_logits,
            step_predictions=self._predictions(step_logits),
            pathway_logits=pathway_logits,
            pathway_predictions=self._predictions(pathway_logits),
            hidden=h,
            cache=cache,
        )
        self._loss(batch, output)
        return output

    def _apply_heads(self, h: Tensor) -> dict[str, Tensor]:
        logits = {}
        for head in self.heads.values():
            logits.update(head(h))
        return {name: logits[name] for name in self.config.tasks}  # declaration order

    def _predictions(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        kinds = self.config.tasks
        return {t: torch.sigmoid(v) if kinds[t]["kind"] == "binary" else v for t, v in logits.items()}

    def _loss(self, batch, output: ModelOutput) -> None:
        losses = {}
        for name, spec in self.config.tasks.items():
            if name not in batch.labels:
                continue
            label, valid = batch.labels[name], batch.label_mask[name]
            if spec["level"] == "event":
                if label.shape != batch.mask.shape:
                    raise ValueError(
                        f"batch.labels[{name!r}]: event-level task needs (B, L) = "
                        f"{tuple(batch.mask.shape)}, got {tuple(label.shape)}"
                    )
                prediction, valid = output.step_logits[name], valid & batch.mask
            else:
                if label.shape != batch.lengths.shape:
                    raise ValueError(
                        f"batch.labels[{name!r}]: pathway-level task needs (B,) = "
                        f"{tuple(batch.lengths.shape)}, got {tuple(label.shape)}"
                    )
                prediction = output.pathway_logits[name]
            check_label_values(name, spec["kind"], label, valid)
            losses[name] = task_loss(spec["kind"], prediction, label, valid, self.config.target_stats.get(name))
        output.task_losses = losses
        output.loss = torch.stack(list(losses.values())).mean() if losses else None

    # ------------------------------------------------------------------------------------------------
    # Streaming

    def empty_cache(self, batch_size: int, device=None) -> list[dict[str, Tensor]]:
        """Per-layer recurrent state before the first event of `batch_size` pathways."""
        param = next(self.parameters())
        return self.backbone.empty_cache(batch_size, device=device or param.device, dtype=param.dtype)

    @torch.no_grad()
    def step(self, events, cache: list[dict[str, Tensor]], weights_dtype: torch.dtype | None = None) -> StepOutput:
        """One new event for each of B pathways; advances `cache` (from `empty_cache` or
        `forward(..., return_cache=True)`) in place. O(1) per event for Mamba and GRU layers.

        events: a `PathwayBatch` with L == 1 and every mask True (its time fields describe the new event).
        weights_dtype: None (exact: equals the forward within float32 rounding) or torch.float16 /
        torch.bfloat16: the backbone's projections read half-precision copies of their weights, about half the
        bytes per step (see docs/model.md, Streaming, for the measured speed and deviation). The encoder and
        heads stay exact.
        """
        check_weights_dtype(weights_dtype, "HamburgHealthcareSafetyMamba.step")
        if self.training:
            raise RuntimeError(
                "HamburgHealthcareSafetyMamba.step: call model.eval() first (dropout would make "
                "streaming differ from the forward)"
            )
        if events.mask.shape[1] != 1 or not bool(events.mask.all()):
            raise ValueError(
                f"step: events must be a PathwayBatch of one real event per pathway (mask (B, 1) all "
                f"True), got mask {tuple(events.mask.shape)}"
            )
        events.check_values()  # before the cache advances: a NaN there would stay for good
        x = self.encoder(events)[:, 0]  # (B, D)
        clock = event_clock(events.time_since_prev_h, events.mask, self.config.time_unit_h)[:, 0]  # (B,)
        h = self.backbone.step(x, cache, clock, weights_dtype=weights_dtype)  # (B, D)
        logits = self._apply_heads(h)  # task -> (B,)
        return StepOutput(logits=logits, predictions=self._predictions(logits))

    # ------------------------------------------------------------------------------------------------
    # System breakdown

    @torch.no_grad()
    def predict_system_breakdown(self, batch) -> SystemBreakdown:
        """Per-pathway risks at each pathway's last event and the warning level over the batch and per hospital."""
        was_training = self.training
        self.eval()
        try:
            output = self(batch)
        finally:
            self.train(was_training)
        return summarize_breakdown(self.config, output.pathway_predictions, latest_sites(batch), batch.pathway_id)

    # ------------------------------------------------------------------------------------------------
    # Checkpoints

    def save_pretrained(self, directory: str | Path) -> None:
        """Writes config.json and model.safetensors into `directory` (created if needed)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / CONFIG_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_changes) -> HamburgHealthcareSafetyMamba:
        """Rebuilds the model saved by `save_pretrained`; `config_changes` may switch run-time flags such as
        use_reference_scan or dropout (not sizes)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = HamburgMambaConfig.load(directory / CONFIG_FILE).replace(**config_changes)
        model = cls(config)
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return model


def predict_system_breakdown(model: HamburgHealthcareSafetyMamba, batch) -> SystemBreakdown:
    """Module-level form of `HamburgHealthcareSafetyMamba.predict_system_breakdown`."""
    return model.predict_system_breakdown(batch)


def latest_sites(batch) -> PathwaySites:
    """The hospital known at each pathway's latest real event (`PathwayBatch.event_site_id`): an ambulance
    before its departure belongs to no hospital yet.

    A batch without `event_site_id` (built by hand) falls back to its training vocabulary indices, named
    "hospital <index>" (the config holds no names); hospitals outside the vocabulary then share one index and
    count as unattributed.
    """
    last = (batch.lengths - 1).clamp(min=0)[:, None]  # (B, 1)
    vocab_id = batch.event_hospital_id.gather(1, last)[:, 0]  # (B,)
    if batch.event_site_id is not None:
        return PathwaySites(batch.event_site_id.gather(1, last)[:, 0], vocab_id, batch.site_names)
    index = torch.where((vocab_id == UNKNOWN_HOSPITAL) | (vocab_id == PAD_HOSPITAL), -1, vocab_id)  # (B,)
    names = [f"hospital {i}" for i in range(int(index.max()) + 1 if index.numel() else 0)]
    return PathwaySites(index, vocab_id, names)


def summarize_breakdown(
    config: HamburgMambaConfig, risk: dict[str, Tensor], sites: PathwaySites, pathway_id: Tensor
) -> SystemBreakdown:
    """Warning levels from per-pathway predictions (task -> (B,)) and hospitals; shared by the batch and
    streaming paths."""
    task = config.breakdown_task
    if task is None:
        raise ValueError("predict_system_breakdown: the config has no binary crisis task to set a warning level")
    known = sites.index >= 0  # (B,)
    by_name, vocab_id = {}, {}
    for site in torch.unique(sites.index[known]).tolist():
        members = sites.index == site  # (B,)
        name = sites.names[site]
        by_name[name] = _warning(config, task, risk, pathway_id, members)
        vocab_id[name] = _one_vocab_id(name, sites.vocab_id[members])
    return SystemBreakdown(
        pathway_risk=risk,
        overall=_warning(config, task, risk, pathway_id, torch.ones_like(known)),
        hospitals=HospitalWarnings(by_name, vocab_id),
        unattributed=int((~known).sum()),
    )


def _one_vocab_id(name: str, vocab_id: Tensor) -> int:
    """The training vocabulary index the pathways of hospital `name` share (one name, one index)."""
    ids = torch.unique(vocab_id).tolist()
    if len(ids) != 1:
        raise ValueError(
            f"event_hospital_id: the pathways at hospital {name!r} (event_site_id) carry vocabulary indices {ids}; "
            "expected one per hospital"
        )
    return ids[0]


def _warning(
    config: HamburgMambaConfig, task: str, risk: dict[str, Tensor], pathway_id: Tensor, members: Tensor
) -> BreakdownWarning:
    means = {t: float(v[members].float().mean()) for t, v in risk.items()}  # 0-d reductions, not batch tensors
    score = means[task]
    level = WARNING_LEVELS[sum(score >= t for t in config.warning_thresholds)]
    yellow = config.warning_thresholds[0]
    binary = [(t, m) for t, m in means.items() if config.tasks[t]["kind"] == "binary" and m >= yellow]
    regression = [(t, m) for t, m in means.items() if config.tasks[t]["kind"] == "regression"]
    drivers = sorted(binary, key=lambda tm: -tm[1]) + regression
    task_risk = risk[task][members]
    top = torch.topk(task_risk, k=min(TOP_PATHWAYS, task_risk.shape[0]))
    top_pathways = list(zip(pathway_id[members][top.indices].tolist(), top.values.tolist(), strict=True))
    return BreakdownWarning(
        level=level, score=score, task=task, n_pathways=int(members.sum()), drivers=drivers, top_pathways=top_pathways
    )


def check_batch(batch) -> None:
    """The batch contract (`PathwayBatch.check`) plus what the model relies on: right padding, >= 1 event."""
    if batch.mask.ndim != 2 or batch.mask.shape[0] < 1:
        raise ValueError(f"batch.mask: expected (B, L) with B >= 1 pathways, got {tuple(batch.mask.shape)}")
    batch.check()
    if bool((batch.lengths < 1).any()):
        raise ValueError("batch.lengths: every pathway needs at least one real event")
    steps = torch.arange(batch.mask.shape[1], device=batch.mask.device)
    if not torch.equal(batch.mask, steps[None, :] < batch.lengths[:, None]):
        raise ValueError("batch.mask: expected right padding (each row True for its first `lengths` events)")


def check_label_values(name: str, kind: str, label: Tensor, valid: Tensor) -> None:
    """Labels where `valid`: finite, and 0 or 1 for a binary task (a BCE target of 2 or NaN trains silently)."""
    seen = label[valid].float()
    ok = torch.isfinite(seen) & ((seen == 0) | (seen == 1) if kind == "binary" else True)
    if not bool(ok.all()):
        expected = "0 or 1" if kind == "binary" else "finite values"
        raise ValueError(
            f"batch.labels[{name!r}]: a {kind} task expects {expected} where label_mask is True, got "
            f"{seen[~ok][:5].tolist()}"
        )
