"""What the model may know about a dataset: vocabularies, numeric features, task declarations.

The model never sees pandas (data and model stay apart): `DatasetSchema` is the only object that
crosses from `hamburg_mamba.data` to the model config. It is fitted on the training split only and saved as
JSON beside the model weights, so inference re-uses the training vocabularies and normalisation.

Index conventions for every categorical field:
    0 = padding (never a real event), 1 = unknown / missing, 2.. = the fitted vocabulary in sorted order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

PAD_INDEX = 0
UNKNOWN_INDEX = 1
RESERVED_TOKENS = ("<pad>", "<unk>")

# Extra (non-MEDS-core) event columns the connector turns into categorical fields, in batch order.
# `code` is MEDS core; the others are the typed extra columns of the Hamburg pathway files.
CATEGORICAL_FIELDS = ("code", "stage", "hospital", "unit", "triage_group", "arrival_mode")

# Pathway stages in the order a patient passes them. "static" marks subject facts (null time, MEDS_BIRTH)
# that the connector places at the head of every pathway of that subject.
STAGES = ("static", "EMS", "ED", "ward", "ICU", "discharge")

# Numeric features of the batch, in channel order of `PathwayBatch.numeric` (B, L, F):
#   value     numeric_value z-scored with the training mean/std of that event's code
#   age_years age at pathway start from MEDS_BIRTH, z-scored with the training mean/std (missing without birth)
NUMERIC_FEATURES = ("value", "age_years")

TaskKind = Literal["binary", "regression"]
TaskLevel = Literal["event", "pathway"]


@dataclass(frozen=True)
class TaskSpec:
    """One prediction target, declared as data so the model picks loss and head width from it.

    horizon_h: the label looks this many hours past the prediction time; None means "until the pathway ends"
    (in_hospital_death). Event-level labels exist per event time (B, L); pathway-level labels are read at the
    pathway's last event (B,).
    """

    name: str
    kind: TaskKind
    level: TaskLevel
    horizon_h: float | None
    group: Literal["safety", "staff", "crisis"]
    description: str

    def __post_init__(self):
        if self.kind not in ("binary", "regression"):
            raise ValueError(f"TaskSpec {self.name!r}: kind must be 'binary' or 'regression', got {self.kind!r}")
        if self.level not in ("event", "pathway"):
            raise ValueError(f"TaskSpec {self.name!r}: level must be 'event' or 'pathway', got {self.level!r}")


# The heads the model needs. Label definitions are in docs/data.md ("Labels").
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "adverse_event",
            "binary",
            "event",
            24.0,
            "safety",
            "an adverse event (cardiac arrest, rapid-response call) within 24 h after the event",
        ),
        TaskSpec(
            "icu_transfer",
            "binary",
            "event",
            24.0,
            "safety",
            "ICU admission within 24 h after the event; missing once the patient is in the ICU",
        ),
        TaskSpec(
            "in_hospital_death",
            "binary",
            "event",
            None,
            "safety",
            "death before the pathway ends; missing at and after the death",
        ),
        TaskSpec(
            "readmission_30d",
            "binary",
            "pathway",
            720.0,
            "safety",
            "a new pathway of the same subject within 30 days after discharge; "
            "missing if dead or not discharged in the data",
        ),
        TaskSpec(
            "unit_workload",
            "regression",
            "event",
            12.0,
            "staff",
            "patients per nurse present in the event's unit during the next shift",
        ),
        TaskSpec(
            "ratio_violation_next_shift",
            "binary",
            "event",
            12.0,
            "staff",
            "the event's unit breaks its PpUGV minimum nurse ratio in the next shift; missing outside PpUGV units",
        ),
        TaskSpec(
            "closure_6h",
            "binary",
            "event",
            6.0,
            "crisis",
            "the pathway's hospital starts a closure to ambulances within 6 h",
        ),
        TaskSpec(
            "closure_12h",
            "binary",
            "event",
            12.0,
            "crisis",
            "the pathway's hospital starts a closure to ambulances within 12 h",
        ),
        TaskSpec(
            "closure_24h",
            "binary",
            "event",
            24.0,
            "crisis",
            "the pathway's hospital starts a closure to ambulances within 24 h",
        ),
    )
}


@dataclass
class NumericStats:
    """Training-split mean and standard deviation; std falls back to 1 where it is 0 or undefined."""

    mean: float
    std: float
    count: int

    def __post_init__(self):
        if not math.isfinite(self.std) or self.std <= 0.0:
            self.std = 1.0
        if not math.isfinite(self.mean):
            self.mean = 0.0


# Quantile knots of a `BoundedRank`: rank resolution 1/256 is finer than any status feature needs, and 257 knot
# pairs per feature keep the schema JSON small (20 status features: about 10 k numbers).
RANK_KNOTS = 256
# Bound of `BoundedRank`'s term beyond the training range. Training inputs span [0, 1]; out of range a feature
# moves at most half that span further, so a unit's pre-activation leaves its training range by at most half its
# training swing, however extreme the value (a z-score has no such bound: 12 in a flu wave against a training
# 99th percentile of 5.9 saturated units that never fired in training).
EXCESS_MAX = 0.5


@dataclass
class BoundedRank:
    """A feature's training-split empirical CDF, made monotone and bounded: inputs that cannot run away.

    x -> F(x) + E(x), in the open interval (-EXCESS_MAX, 1 + EXCESS_MAX):
      F  linear interpolation through (knots[k], ranks[k]); knots are distinct training values at RANK_KNOTS + 1
         evenly spaced ranks (the minimum and maximum among them), ranks their mid-rank CDF (share of training
         values below plus half the share equal: the middle of an atom's jump, so tied counts and 0/1 flags
         get one well-defined rank each), rescaled to 0 at the minimum and 1 at the maximum (0.5 for a feature
         with a single training value). Knots are data values, so each has mass and F is strictly increasing
         from the training minimum to the maximum, constant outside.
      E  EXCESS_MAX * d / (d + spread) past the maximum (minus that past the minimum), d the distance beyond
         the training range and spread the training interquartile range (the std, then 1, where it is 0). It
         keeps the order of out-of-range values (strictly increasing: half of EXCESS_MAX one spread beyond, 90 %
         of it nine spreads beyond, distinct in float32 to about 1e7 spreads) where a capped log1p would tie all
         values past its cap, and it is bounded where log1p is not.
    Missing values (NaN) stay NaN; a feature without training values maps everything to NaN (missing).
    """

    knots: list[float]
    ranks: list[float]
    spread: float
    count: int

    @classmethod
    def fit(cls, values: np.ndarray) -> BoundedRank:
        """Fitted on `values` (NaN ignored): the training split's values of one feature."""
        v = np.sort(np.asarray(values, dtype=np.float64)[~np.isnan(values)])
        n = v.size
        if n == 0:
            return cls(knots=[], ranks=[], spread=1.0, count=0)
        knots = np.unique(v[np.round(np.linspace(0, n - 1, RANK_KNOTS + 1)).astype(np.int64)])
        mid = (np.searchsorted(v, knots, "left") + np.searchsorted(v, knots, "right")) / (2.0 * n)
        ranks = (mid - mid[0]) / (mid[-1] - mid[0]) if knots.size > 1 else np.array([0.5])
        q1, q3 = v[int(round(0.25 * (n - 1)))], v[int(round(0.75 * (n - 1)))]
        spread = q3 - q1 if q3 > q1 else (float(v.std()) if v.std() > 0 else 1.0)
        return cls(knots=knots.tolist(), ranks=ranks.tolist(), spread=float(spread), count=int(n))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(...) float64 of the same shape as x; NaN where x is NaN."""
        x = np.asarray(x, dtype=np.float64)
        if not self.knots:
            return np.full(x.shape, np.nan)
        above = np.maximum(x - self.knots[-1], 0.0)
        below = np.maximum(self.knots[0] - x, 0.0)
        out = np.interp(x, self.knots, self.ranks) + EXCESS_MAX * (
            above / (above + self.spread) - below / (below + self.spread)
        )
        return np.where(np.isnan(x), np.nan, out)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """(...) bool: x lies outside the training range [min, max] (False where x is NaN)."""
        x = np.asarray(x, dtype=np.float64)
        if not self.knots:
            return np.zeros(x.shape, dtype=bool)
        return (x < self.knots[0]) | (x > self.knots[-1])


@dataclass
class DatasetSchema:
    """Vocabularies, numeric normalisation and tasks, fitted on the training split.

    categorical_vocab: field -> tokens; index i of a token in the batch is its position in this list, with
        "<pad>" at 0 and "<unk>" at 1 (see module docstring).
    code_stats: code -> NumericStats of its numeric_value (codes without numeric values are absent).
    age_stats: NumericStats of age at pathway start (years).
    tasks: the TaskSpecs whose labels this dataset provides; `missing_tasks` lists the declared heads it lacks.
    numeric_features: "value", "age_years", then the system-state features (`system_state.feature_names`), then
        the hospital descriptors (`hospitals.feature_names`).
    status_columns: hospital status columns attached to every event (empty: no status feed);
        status_transforms: feature name -> the `BoundedRank` that turns its raw values into model inputs;
        status_lag_h / status_max_age_h: when a status row becomes available and how old it may be (see
        `hamburg_mamba.data.system_state`).
    hospital_columns: hospital table columns attached to every event as descriptors (empty: none);
        hospital_transforms: feature name -> its `BoundedRank`, fitted on the training split's events like the
        status features, so a hospital larger than any seen in training gets a bounded input beyond 1
        (`hamburg_mamba.data.hospitals`).
    """

    categorical_vocab: dict[str, list[str]]
    code_stats: dict[str, NumericStats]
    age_stats: NumericStats
    tasks: dict[str, TaskSpec]
    numeric_features: tuple[str, ...] = NUMERIC_FEATURES
    missing_tasks: tuple[str, ...] = ()
    max_len: int | None = None
    status_columns: tuple[str, ...] = ()
    status_transforms: dict[str, BoundedRank] = field(default_factory=dict)
    status_lag_h: float = 1.0
    status_max_age_h: float = 6.0
    hospital_columns: tuple[str, ...] = ()
    hospital_transforms: dict[str, BoundedRank] = field(default_factory=dict)
    lookup: dict[str, dict[str, int]] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        for name, tokens in self.categorical_vocab.items():
            if tuple(tokens[:2]) != RESERVED_TOKENS:
                raise ValueError(f"categorical_vocab[{name!r}] must start with {RESERVED_TOKENS}, got {tokens[:2]}")
        self.lookup = {name: {t: i for i, t in enumerate(tokens)} for name, tokens in self.categorical_vocab.items()}

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Embedding table size per categorical field (padding and unknown included)."""
        return {name: len(tokens) for name, tokens in self.categorical_vocab.items()}

    @property
    def num_numeric(self) -> int:
        return len(self.numeric_features)

    @property
    def context_transforms(self) -> dict[str, BoundedRank]:
        """The numeric features after NUMERIC_FEATURES (status, then hospital descriptors), in input order, each
        with the `BoundedRank` that turns its raw value into a model input."""
        both = {**self.status_transforms, **self.hospital_transforms}
        return {name: both[name] for name in self.numeric_features[len(NUMERIC_FEATURES) :]}

    def task_declarations(self) -> dict[str, dict]:
        """name -> {"kind", "level", "horizon_h"}: what a model config needs to build its heads."""
        return {n: {"kind": t.kind, "level": t.level, "horizon_h": t.horizon_h} for n, t in self.tasks.items()}

    def to_json(self) -> str:
        blob = {
            "categorical_vocab": self.categorical_vocab,
            "code_stats": {c: asdict(s) for c, s in self.code_stats.items()},
            "age_stats": asdict(self.age_stats),
            "tasks": {n: asdict(t) for n, t in self.tasks.items()},
            "numeric_features": list(self.numeric_features),
            "missing_tasks": list(self.missing_tasks),
            "max_len": self.max_len,
            "status_columns": list(self.status_columns),
            "status_transforms": {f: asdict(t) for f, t in self.status_transforms.items()},
            "status_lag_h": self.status_lag_h,
            "status_max_age_h": self.status_max_age_h,
            "hospital_columns": list(self.hospital_columns),
            "hospital_transforms": {f: asdict(t) for f, t in self.hospital_transforms.items()},
        }
        return json.dumps(blob, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetSchema:
        blob = json.loads(text)
        if blob.get("status_columns") and "status_transforms" not in blob:
            raise ValueError(
                "schema: its status features were z-scored (status_stats), which models trained "
                "since read as bounded ranks (status_transforms); refit the schema and retrain"
            )
        return cls(
            categorical_vocab=blob["categorical_vocab"],
            code_stats={c: NumericStats(**s) for c, s in blob["code_stats"].items()},
            age_stats=NumericStats(**blob["age_stats"]),
            tasks={n: TaskSpec(**t) for n, t in blob["tasks"].items()},
            numeric_features=tuple(blob["numeric_features"]),
            missing_tasks=tuple(blob["missing_tasks"]),
            max_len=blob["max_len"],
            # schemas written before the status feed existed have none
            status_columns=tuple(blob.get("status_columns", ())),
            status_transforms={f: BoundedRank(**t) for f, t in blob.get("status_transforms", {}).items()},
            status_lag_h=float(blob.get("status_lag_h", 1.0)),
            status_max_age_h=float(blob.get("status_max_age_h", 6.0)),
            # schemas written before hospital descriptors existed have none
            hospital_columns=tuple(blob.get("hospital_columns", ())),
            hospital_transforms={f: BoundedRank(**t) for f, t in blob.get("hospital_transforms", {}).items()},
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> DatasetSchema:
        return cls.from_json(Path(path).read_text())
