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


# The CPU size that trains on 2 cores in minutes (tests, the end-to-end sample); the training presets build on it.
SMALL_PRESET = dict(
    d_model=64,
    n_layers=2,
    d_state=16,
    d_conv=4,
    expand=2,
    n_heads=4,
    attn_every=2,
    cat_embed_dim=16,
    numeric_embed_dim=8,
    dropout=0.0,
)


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
    # embed the hospital's name (the `hospital` field) as well as its descriptors (numeric `hospital:<column>`)?
    # Off: a hospital is what its descriptors say, so one never seen in training is not the one "unknown" vector
    # (docs/model.md, "Hospitals the model never saw"); configs saved before the option existed load as on.
    hospital_identity: bool = False
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
        for f in dataclasses.fields(self):
            self.check_field(f.name, getattr(self, f.name))
        if self.dt_min >= self.dt_max:
            raise ValueError(f"HamburgMambaConfig.dt_max: expected > dt_min={self.dt_min!r}, got {self.dt_max!r}")
        if self.backbone in ("transformer", "hybrid") and self.d_model % self.n_heads:
            raise ValueError(
                f"HamburgMambaConfig.n_heads: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.backbone == "hybrid" and not 1 <= self.attn_every <= self.n_layers:
            raise ValueError(
                f"HamburgMambaConfig.attn_every: expected 1..n_layers={self.n_layers}, got {self.attn_every}"
            )
        for name in self.target_stats:
            if name not in self.tasks or self.tasks[name]["kind"] != "regression":
                raise ValueError(f"HamburgMambaConfig.target_stats[{name!r}]: not a regression task of the config")
        if self.warning_task is not None and self.warning_task not in self.crisis_tasks:
            raise ValueError(
                f"HamburgMambaConfig.warning_task: {self.warning_task!r} is not a binary crisis task "
                f"of the config ({self.crisis_tasks})"
            )

    @classmethod
    def check_field(cls, name: str, value) -> None:
        """Raise ValueError naming the field, the value and what was expected, if `value` cannot be field `name`
        (checks that need other fields, such as n_heads dividing d_model, are in __post_init__)."""
        if name in SCALAR_RULES:
            rule = SCALAR_RULES[name]
            if not rule.accepts(value):
                raise ValueError(
                    f"HamburgMambaConfig.{name}: expected {rule.expected()}, got {value!r} ({type(value).__name__})"
                )
        elif name in STRUCTURED_CHECKS:
            STRUCTURED_CHECKS[name](value)
        else:
            raise ValueError(f"HamburgMambaConfig: unknown field {name!r}")

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
        tasks = {
            n: {"kind": t.kind, "level": t.level, "horizon_h": t.horizon_h, "group": t.group}
            for n, t in schema.tasks.items()
        }
        data = dict(vocab_sizes=dict(schema.vocab_sizes), num_numeric=schema.num_numeric, tasks=tasks)
        return cls.small(**data, **overrides) if preset == "small" else cls(**data, **overrides)

    @classmethod
    def small(cls, **kwargs) -> HamburgMambaConfig:
        """A preset that trains on a 2-core CPU in minutes (tests, the end-to-end sample)."""
        return cls(**{**SMALL_PRESET, **kwargs})

    def replace(self, **changes) -> HamburgMambaConfig:
        return dataclasses.replace(self, **changes)

    # --- JSON ---
    def to_json(self) -> str:
        """JSON with `vocab_sizes` and `tasks` as lists of [name, value] pairs: their order decides the encoder's
        input layout and the heads' output columns, and a JSON object's key order is not preserved by tools that
        re-serialise JSON (sort_keys), whereas an array's order is."""
        blob = dataclasses.asdict(self)
        for name in ORDERED_FIELDS:
            blob[name] = [[key, value] for key, value in blob[name].items()]
        return json.dumps(blob, indent=1)

    @classmethod
    def from_json(cls, text: str, trust_key_order: bool = False) -> HamburgMambaConfig:
        """Inverse of `to_json`. Every field must be present, but those added after the file was written
        (LEGACY_VALUES) take the value its weights were trained with; unknown fields are refused.

        trust_key_order: accept `vocab_sizes` and `tasks` written as JSON objects (configs saved before they
        became lists of pairs) and take their keys' order as written. Only for a file known never to have been
        re-serialised by another tool: a sorted or reordered object silently permutes the heads' outputs.
        """
        try:
            blob = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"HamburgMambaConfig.from_json: not valid JSON ({e})") from None
        if not isinstance(blob, dict):
            raise ValueError(f"HamburgMambaConfig.from_json: expected a JSON object, got {type(blob).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(blob) - set(names))
        if unknown:
            raise ValueError(f"HamburgMambaConfig.from_json: unknown fields {unknown}")
        blob = {**LEGACY_VALUES, **blob}
        missing = [n for n in names if n not in blob]
        if missing:
            raise ValueError(
                f"HamburgMambaConfig.from_json: missing fields {missing} (every field is saved; a "
                "missing one means the file was edited or written by another program)"
            )
        for name in ORDERED_FIELDS:
            blob[name] = _ordered_mapping(name, blob[name], trust_key_order)
        return cls(**blob)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path, trust_key_order: bool = False) -> HamburgMambaConfig:
        try:
            return cls.from_json(Path(path).read_text(), trust_key_order=trust_key_order)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------------------------------------
# Field checks

# Fields added after configs were first saved -> the behaviour of the configs saved before them: the encoder
# embedded every categorical field, the hospital's name included.
LEGACY_VALUES = {"hospital_identity": True}
# Fields whose order is meaning (encoder input layout, head output columns); saved as [name, value] pairs.
ORDERED_FIELDS = ("vocab_sizes", "tasks")


def _ordered_mapping(name: str, value, trust_key_order: bool) -> dict:
    if isinstance(value, dict):
        if trust_key_order:
            return value
        raise ValueError(
            f"HamburgMambaConfig.{name}: stored as a JSON object, whose key order decides the weights' layout but "
            "is not kept by tools that re-serialise JSON; this format is not trusted. If the file was never "
            "rewritten by another tool, convert it once with HamburgMambaConfig.load(path, trust_key_order=True)"
            ".save(path)"
        )
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value
    ):
        raise ValueError(f"HamburgMambaConfig.{name}: expected a list of [name, value] pairs, got {value!r}")
    keys = [p[0] for p in value]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"HamburgMambaConfig.{name}: names listed more than once: {repeated}")
    return {key: item for key, item in value}


@dataclass(frozen=True)
class _Range:
    """A scalar field's type and bounds; ints are accepted where floats are expected, bools never as numbers."""

    kind: type
    low: float | None = None
    low_open: bool = False  # low itself excluded
    below: float | None = None  # exclusive upper bound

    def accepts(self, value) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        if self.kind is float and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.below is None or value < self.below

    def expected(self) -> str:
        text = {bool: "true or false", int: "an int", float: "a finite number"}[self.kind]
        if self.low is not None:
            text += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.below is not None:
            text += f" and < {self.below:g}"
        return text


SCALAR_RULES = {
    "num_numeric": _Range(int, 0),
    "cat_embed_dim": _Range(int, 1),
    "numeric_embed_dim": _Range(int, 1),
    "numeric_clip": _Range(float, 0, low_open=True),
    "time_unit_h": _Range(float, 0, low_open=True),
    "d_model": _Range(int, 1),
    "n_layers": _Range(int, 1),
    "d_state": _Range(int, 1),
    "d_conv": _Range(int, 1),
    "expand": _Range(int, 1),
    "dt_min": _Range(float, 0, low_open=True),
    "dt_max": _Range(float, 0, low_open=True),
    "dt_init_floor": _Range(float, 0, low_open=True),
    "dropout": _Range(float, 0, below=1),
    "n_heads": _Range(int, 1),
    "mlp_ratio": _Range(int, 1),
    "attn_every": _Range(int, 1),
    "norm_eps": _Range(float, 0, low_open=True),
    "head_hidden": _Range(int, 0),
    "use_reference_scan": _Range(bool),
    "hospital_identity": _Range(bool),
}


def _fail(name: str, expected: str, value) -> None:
    raise ValueError(f"HamburgMambaConfig.{name}: expected {expected}, got {value!r}")


def _check_vocab_sizes(value) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and SIZE.accepts(v) for k, v in value.items()):
        _fail("vocab_sizes", "a mapping of field name -> table size (an int >= 1)", value)


def _check_tasks(value) -> None:
    if not isinstance(value, dict):
        _fail("tasks", "a mapping of task name -> {kind, level, horizon_h, group}", value)
    allowed = {"kind": TASK_KINDS, "level": TASK_LEVELS, "group": TASK_GROUPS}
    for name, spec in value.items():
        if not isinstance(spec, dict) or set(spec) != {*allowed, "horizon_h"}:
            _fail(f"tasks[{name!r}]", "a mapping with exactly the keys kind, level, horizon_h, group", spec)
        for key, choices in allowed.items():
            if spec[key] not in choices:
                _fail(f"tasks[{name!r}]['{key}']", f"one of {choices}", spec[key])
        if spec["horizon_h"] is not None and not HORIZON.accepts(spec["horizon_h"]):
            _fail(f"tasks[{name!r}]['horizon_h']", f"null or {HORIZON.expected()}", spec["horizon_h"])


def _check_target_stats(value) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(v, (list, tuple)) and len(v) == 2 and FINITE.accepts(v[0]) and HORIZON.accepts(v[1])
        for v in value.values()
    ):
        _fail("target_stats", "a mapping of regression task -> [mean, std > 0]", value)


def _check_backbone(value) -> None:
    if value not in BACKBONES:
        _fail("backbone", f"one of {BACKBONES}", value)


def _check_dt_rank(value) -> None:
    if value != "auto" and not SIZE.accepts(value):
        _fail("dt_rank", "'auto' or a positive int", value)


def _check_warning_task(value) -> None:
    if value is not None and not isinstance(value, str):
        _fail("warning_task", "null or a task name", value)


def _check_warning_thresholds(value) -> None:
    t = list(value) if isinstance(value, (list, tuple)) else None
    if t is None or len(t) != 3 or not all(FINITE.accepts(v) and 0.0 < v < 1.0 for v in t) or sorted(t) != t:
        _fail("warning_thresholds", "3 ascending probabilities in (0, 1) for yellow, orange, red", value)


SIZE = _Range(int, 1)
FINITE = _Range(float)
HORIZON = _Range(float, 0, low_open=True)
STRUCTURED_CHECKS = {
    "vocab_sizes": _check_vocab_sizes,
    "tasks": _check_tasks,
    "target_stats": _check_target_stats,
    "backbone": _check_backbone,
    "dt_rank": _check_dt_rank,
    "warning_task": _check_warning_task,
    "warning_thresholds": _check_warning_thresholds,
}
