"""Model configuration: one dataclass, saved as JSON beside the weights.

Sizes that describe the data (vocabularies, numeric features, tasks) come from the training split's
`DatasetSchema` through `HamburgMambaConfig.from_schema`; they are never hard-coded here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKBONES = ("mamba", "gru", "transformer", "hybrid")
TASK_KINDS = ("binary", "regression")
TASK_LEVELS = ("event", "pathway")
# Each task group has its own head (SafetyOutcomePredictor, StaffWellbeingPredictor, CrisisEarlyWarningSystem).
TASK_GROUPS = ("safety", "staff", "crisis")
WARNING_LEVELS = ("green", "yellow", "orange", "red")


@dataclass
class HamburgMambaConfig:
    """Everything needed to rebuild the model. Defaults are the prototype's seed size.

    tasks: name -> {"kind": binary|regression, "level": event|pathway, "horizon_h": float|None,
    "group": safety|staff|crisis}, the data's task declarations (`DatasetSchema.tasks`).
    """

    # --- from the data (DatasetSchema) ---
    vocab_sizes: dict[str, int] = field(default_factory=dict)  # categorical field -> table size (pad, unk included)
    num_numeric: int = 0  # numeric features per event, F of PathwayBatch.numeric
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # the heads; see class docstring
    target_stats: dict[str, list[float]] = field(default_factory=dict)  # regression task -> [mean, std] of train
    # labels, so the head predicts a z-score; a task absent here is predicted on its own scale.

    # --- encoder ---
    cat_embed_dim: int = 64  # per categorical field; 6 Hamburg fields x 64 + 2 x 16 + 6 time = 422 (prototype: 416)
    numeric_embed_dim: int = 16  # per numeric feature: value * w + b when present, a learned vector when missing
    numeric_clip: float = 8.0  # z-scores beyond this are unit errors or outliers; clipping keeps one value from
    # saturating the state
    time_unit_h: float = 1.0  # the SSM clock: dt_scale = 1 + log1p(elapsed_h / time_unit_h) (see SelectiveSSMLayer)

    # --- backbone ---
    backbone: str = "mamba"  # one of BACKBONES
    d_model: int = 512  # residual stream width
    n_layers: int = 12  # residual blocks
    d_state: int = 64  # N, SSM state size per channel
    d_conv: int = 4  # causal depthwise convolution width
    expand: int = 2  # d_inner = expand * d_model
    dt_rank: int | str = "auto"  # rank of the dt projection; "auto" = ceil(d_model / 16) (Mamba paper)
    dt_min: float = 0.001  # initial softplus(dt) is log-uniform in [dt_min, dt_max] (Mamba's dt init)
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4  # lower bound of the initial dt
    dropout: float = 0.1  # after the encoder projection, on attention/MLP outputs and in the heads
    n_heads: int = 8  # attention heads (transformer, hybrid)
    mlp_ratio: int = 4  # attention blocks' MLP width = mlp_ratio * d_model
    attn_every: int = 4  # hybrid: every attn_every-th layer is attention, the rest Mamba (Jamba-style interleave)
    norm_eps: float = 1e-5  # RMSNorm epsilon
    head_hidden: int = 0  # width of the heads' hidden layer; 0 means d_model
    use_reference_scan: bool = False  # run the pure-PyTorch reference scan instead of the compiled op (tests)

    # --- system breakdown warning ---
    warning_task: str | None = None  # crisis task that sets the warning level; None = the shortest horizon
    warning_thresholds: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6])  # mean risk at which the
    # level turns yellow, orange, red (ascending)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"HamburgMambaConfig.backbone: expected one of {BACKBONES}, got {self.backbone!r}")
        if self.dt_rank != "auto" and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"HamburgMambaConfig.dt_rank: expected 'auto' or a positive int, got {self.dt_rank!r}")
        if self.backbone in ("transformer", "hybrid") and self.d_model % self.n_heads:
            raise ValueError(f"HamburgMambaConfig.n_heads: d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}")
        if self.backbone == "hybrid" and not 1 <= self.attn_every <= self.n_layers:
            raise ValueError(f"HamburgMambaConfig.attn_every: expected 1..n_layers={self.n_layers}, "
                             f"got {self.attn_every}")
        for name, spec in self.tasks.items():
            if spec.get("kind") not in TASK_KINDS:
                raise ValueError(f"HamburgMambaConfig.tasks[{name!r}]['kind']: expected one of {TASK_KINDS}, "
                                 f"got {spec.get('kind')!r}")
            if spec.get("level") not in TASK_LEVELS:
                raise ValueError(f"HamburgMambaConfig.tasks[{name!r}]['level']: expected one of {TASK_LEVELS}, "
                                 f"got {spec.get('level')!r}")
            if spec.get("group") not in TASK_GROUPS:
                raise ValueError(f"HamburgMambaConfig.tasks[{name!r}]['group']: expected one of {TASK_GROUPS}, "
                                 f"got {spec.get('group')!r}")
        for name in self.target_stats:
            if name not in self.tasks or self.tasks[name]["kind"] != "regression":
                raise ValueError(f"HamburgMambaConfig.target_stats[{name!r}]: not a regression task of the config")
        t = list(self.warning_thresholds)
        if len(t) != 3 or sorted(t) != t or not all(0.0 < v < 1.0 for v in t):
            raise ValueError("HamburgMambaConfig.warning_thresholds: expected 3 ascending probabilities in (0, 1) "
                             f"for yellow, orange, red, got {self.warning_thresholds!r}")
        if self.warning_task is not None and self.warning_task not in self.crisis_tasks:
            raise ValueError(f"HamburgMambaConfig.warning_task: {self.warning_task!r} is not a binary crisis task "
                             f"of the config ({self.crisis_tasks})")

    # --- derived ---
    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def dt_rank_value(self) -> int:
        # Resolved on use, not in __post_init__, so that replace(d_model=...) keeps "auto" meaning auto.
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else self.dt_rank

    @property
    def crisis_tasks(self) -> list[str]:
        """Binary crisis tasks, shortest horizon first."""
        names = [n for n, s in self.tasks.items() if s["group"] == "crisis" and s["kind"] == "binary"]
        return sorted(names, key=lambda n: (self.tasks[n]["horizon_h"] is None, self.tasks[n]["horizon_h"] or 0.0))

    @property
    def breakdown_task(self) -> str | None:
        if self.warning_task is not None:
            return self.warning_task
        return self.crisis_tasks[0] if self.crisis_tasks else None

    def layer_kinds(self) -> list[str]:
        """The mixer of each residual layer: "mamba", "attention" or "gru"."""
        if self.backbone == "mamba":
            return ["mamba"] * self.n_layers
        if self.backbone == "gru":
            return ["gru"] * self.n_layers
        if self.backbone == "transformer":
            return ["attention"] * self.n_layers
        return ["attention" if (i + 1) % self.attn_every == 0 else "mamba" for i in range(self.n_layers)]

    # --- construction ---
    @classmethod
    def from_schema(cls, schema, preset: str = "seed", **overrides) -> HamburgMambaConfig:
        """Config with the data sizes and tasks of a fitted `hamburg_mamba.data.DatasetSchema`.

        preset: "seed" (the prototype's defaults) or "small" (see `small`); overrides win over both.
        """
        if preset not in ("seed", "small"):
            raise ValueError(f"HamburgMambaConfig.from_schema: preset must be 'seed' or 'small', got {preset!r}")
        tasks = {n: {"kind": t.kind, "level": t.level, "horizon_h": t.horizon_h, "group": t.group}
                 for n, t in schema.tasks.items()}
        data = dict(vocab_sizes=dict(schema.vocab_sizes), num_numeric=schema.num_numeric, tasks=tasks)
        return cls.small(**data, **overrides) if preset == "small" else cls(**data, **overrides)

    @classmethod
    def small(cls, **kwargs) -> HamburgMambaConfig:
        """A preset that trains on a 2-core CPU in minutes (tests, the end-to-end sample)."""
        preset = dict(d_model=64, n_layers=2, d_state=16, d_conv=4, expand=2, n_heads=4, attn_every=2,
                      cat_embed_dim=16, numeric_embed_dim=8, dropout=0.0)
        preset.update(kwargs)
        return cls(**preset)

    def replace(self, **changes) -> HamburgMambaConfig:
        return dataclasses.replace(self, **changes)

    # --- JSON ---
    def to_json(self) -> str:
        # Key order is meaning here (encoder fields and head outputs follow it): never sort_keys.
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> HamburgMambaConfig:
        blob = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(blob) - known)
        if unknown:
            raise ValueError(f"HamburgMambaConfig.from_json: unknown fields {unknown}")
        return cls(**blob)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> HamburgMambaConfig:
        return cls.from_json(Path(path).read_text())
