"""Replication: every backbone and CatBoost over training seeds on several generated cities, so that a
difference between models can be told apart from the luck of one seed.

A replicate is one (generator seed, training seed) pair: the city generated with the generator seed, every
backbone trained and CatBoost fitted with the training seed, all evaluated by `experiment.run_comparison` on
that city's held-out period. Over the replicates the summary gives, per task and model, the held-out AUROC's
mean, SD and range, and per replicate the primary model's AUROC minus each other model's (paired: same city,
same seed, same rows), with their mean and the number of replicates where the primary model is ahead.

    OUT/city-<g>/data                  the city of generator seed g (city.json records which one it is)
    OUT/city-<g>/seed-<s>/runs/<bb>    backbone bb trained with seed s
    OUT/city-<g>/seed-<s>/eval         run_comparison's folder (metrics.json)
    OUT/replicates.json                per-replicate AUROCs and the summary
    OUT/README.md                      the summary tables

Every step resumes: a city already generated, a run already trained with the same settings and an evaluation
newer than its runs are kept, so an interrupted replication picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

BACKBONES = ("mamba", "hybrid", "gru", "transformer")
BASELINES = ("catboost", "news2", "oracle")  # oracle brings the fair bound where the city has one
# Intervals come from the spread over replicates; each evaluation's own bootstrap only costs time, so it runs
# with the fewest replicates the metrics module gives an interval for.
REPLICATE_BOOT = 10
CITY_FILE = "city.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class Recipe:
    """How each model of a replicate is trained and evaluated (the CLI passes the demo's settings)."""

    preset: str  # model size (train.PRESETS)
    epochs: int
    max_steps: dict[str, int]  # backbone -> optimizer steps (a cap; early stopping may end a run sooner)
    lr: dict[str, float]  # backbone -> peak learning rate
    warmup_steps: dict[str, int]  # backbone -> warmup steps
    batch_size: int
    weight_decay: float
    catboost_iterations: int
    eval_every: int | None = None  # steps between tuning evaluations (None: once per epoch)
    eval_max_pathways: int | None = None  # tuning pathways read by early stopping (None: all)
    threads: int = 1  # torch threads per training process


@dataclass
class ReplicateConfig:
    out: Path
    recipe: Recipe
    generator_seeds: tuple[int, ...] = (0, 1, 2)
    training_seeds: tuple[int, ...] = (0, 1, 2)
    backbones: tuple[str, ...] = BACKBONES
    tiny: bool = False  # the two-week test city instead of the default Hamburg
    jobs: int = 1  # trainings at once, each in its own process (1: in this process)
    primary: str = "mamba"  # the model whose paired differences are reported
    baselines: tuple[str, ...] = field(default=BASELINES)

    def __post_init__(self):
        self.out = Path(self.out)
        for name in ("generator_seeds", "training_seeds"):
            seeds = tuple(getattr(self, name))
            if not seeds or len(set(seeds)) != len(seeds) or any(int(s) != s or s < 0 for s in seeds):
                raise ValueError(f"{name}: expected distinct non-negative integers, got {list(seeds)}")
            setattr(self, name, seeds)
        unknown = sorted(set(self.backbones) - set(BACKBONES))
        if unknown or not self.backbones:
            raise ValueError(f"backbones: expected some of {BACKBONES}, got {list(self.backbones)}")
        if self.jobs < 1:
            raise ValueError(f"jobs: expected >= 1, got {self.jobs}")
        missing = sorted(
            b
            for b in self.backbones
            for d in (self.recipe.max_steps, self.recipe.lr, self.recipe.warmup_steps)
            if b not in d
        )
        if missing:
            raise ValueError(f"recipe: no steps, learning rate or warmup for the backbones {sorted(set(missing))}")
        if self.primary not in (*self.backbones, *self.baselines):
            raise ValueError(
                f"primary: expected one of the models {[*self.backbones, *self.baselines]}, got {self.primary!r}"
            )


@dataclass
class TrainJob:
    """One training run: everything a worker process needs, nothing that does not pickle."""

    data_root: str
    cutoffs: tuple[str, str]
    run_dir: str
    backbone: str
    seed: int
    recipe: Recipe


def run_replicates(config: ReplicateConfig, log=print) -> dict:
    """Generate, train, evaluate every replicate, then summarise; writes replicates.json and README.md."""
    t0 = time.perf_counter()
    records = []
    for g in config.generator_seeds:
        root = city(config.out / f"city-{g}", g, config.tiny)
        log(f"[replicate {time.perf_counter() - t0:7.1f}s] city {g}: {root}")
        for s in config.training_seeds:
            metrics = replicate(
                config,
                root,
                g,
                s,
                log=lambda m, g=g, s=s: log(f"[replicate {time.perf_counter() - t0:7.1f}s] city {g} seed {s}: {m}"),
            )
            records.append({"generator_seed": g, "training_seed": s, "auroc": replicate_aurocs(metrics)})
    summary = summarise(records, config.primary)
    result = {
        "settings": _settings(config),
        "replicates": records,
        "summary": summary,
        "seconds": time.perf_counter() - t0,
    }
    (config.out / "replicates.json").write_text(json.dumps(result, indent=1))
    (config.out / "README.md").write_text(summary_markdown(summary, config, result["seconds"]))
    return result


def city(folder: Path, seed: int, tiny: bool) -> Path:
    """The MEDS root of the city of this generator seed under `folder`, generated unless already there; a
    folder holding another city is refused."""
    from hamburg_mamba.data import SyntheticConfig, generate_synthetic, write_synthetic
    from hamburg_mamba.data.splits import tiny_synthetic_config

    root, record = folder / "data", folder / CITY_FILE
    wanted = {"tiny": tiny, "seed": seed}
    if record.is_file():
        held = json.loads(record.read_text())
        if held != wanted:
            raise ValueError(
                f"out: {folder} holds the city {held}, this replication needs {wanted}; choose "
                f"another --out or remove the folder"
            )
        return root
    folder.mkdir(parents=True, exist_ok=True)
    write_synthetic(root, generate_synthetic(tiny_synthetic_config(seed) if tiny else SyntheticConfig(seed=seed)))
    record.write_text(json.dumps(wanted))
    return root


def replicate(config: ReplicateConfig, root: Path, generator_seed: int, training_seed: int, log=print) -> dict:
    """Train every backbone with `training_seed` on the city at `root`, evaluate them with the baselines (CatBoost
    seeded the same), and return the evaluation's metrics (read back from its metrics.json)."""
    from hamburg_mamba.data.splits import DEMO_CUTOFFS, TINY_CUTOFFS, DataSpec
    from hamburg_mamba.eval.baselines import CatBoostSettings
    from hamburg_mamba.eval.experiment import run_comparison

    folder = config.out / f"city-{generator_seed}" / f"seed-{training_seed}"
    cutoffs = TINY_CUTOFFS if config.tiny else DEMO_CUTOFFS
    jobs = [
        TrainJob(str(root), tuple(cutoffs), str(folder / "runs" / bb), bb, training_seed, config.recipe)
        for bb in config.backbones
    ]
    train_all(jobs, config.jobs)
    log(f"trained {', '.join(config.backbones)}")
    eval_dir = folder / "eval"
    if not _is_current(eval_dir / METRICS_FILE, [Path(j.run_dir) / WEIGHTS_FILE for j in jobs]):
        spec = DataSpec(root=str(Path(root).resolve()), split="temporal", temporal_cutoffs=tuple(cutoffs))
        run_comparison(
            spec,
            {j.backbone: j.run_dir for j in jobs},
            eval_dir,
            baselines=config.baselines,
            n_boot=REPLICATE_BOOT,
            primary=config.primary,
            timeline=False,
            catboost=CatBoostSettings(iterations=config.recipe.catboost_iterations, seed=training_seed),
        )
        log("evaluated")
    return json.loads((eval_dir / METRICS_FILE).read_text())


def _is_current(result: Path, inputs: list[Path]) -> bool:
    return result.is_file() and all(p.is_file() and p.stat().st_mtime <= result.stat().st_mtime for p in inputs)


def train_all(jobs: list[TrainJob], processes: int) -> None:
    """Run every job: in this process when `processes` is 1, else that many spawned worker processes (each run
    is seeded and single-threaded, so where it runs changes no weight)."""
    if processes == 1 or len(jobs) == 1:
        for job in jobs:
            train(job)
        return
    with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=get_context("spawn")) as pool:
        for future in [pool.submit(train, job) for job in jobs]:
            future.result()


def train(job: TrainJob) -> dict:
    """Train one backbone (resuming or keeping a finished run with the same settings); returns its summary."""
    from hamburg_mamba.data.splits import DataSpec
    from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

    spec = DataSpec(root=str(Path(job.data_root).resolve()), split="temporal", temporal_cutoffs=job.cutoffs)
    data = spec.connect()
    r = job.recipe
    config = build_model_config(data, backbone=job.backbone, preset=r.preset)
    bb = job.backbone
    tc = TrainConfig(
        epochs=r.epochs,
        max_steps=r.max_steps[bb],
        batch_size=r.batch_size,
        lr=r.lr[bb],
        weight_decay=r.weight_decay,
        warmup_steps=r.warmup_steps[bb],
        eval_every=r.eval_every,
        eval_max_pathways=r.eval_max_pathways,
        seed=job.seed,
        progress=False,
        num_threads=r.threads,
    )
    trainer = Trainer(build_model(config, seed=job.seed), data, tc, job.run_dir, device="cpu", data_spec=spec.as_dict())
    return trainer.fit()


# ----------------------------------------------------------------------------------------------------------
# Aggregation over replicates


def replicate_aurocs(metrics: dict) -> dict[str, dict[str, float]]:
    """task -> model -> held-out AUROC of one evaluation, for the binary tasks; a model without an AUROC on a
    task (one class in the held-out rows, not fitted) is absent."""
    out = {}
    for task, r in metrics["tasks"].items():
        if r["kind"] != "binary":
            continue
        values = {m: e["auroc"]["value"] for m, e in r["models"].items() if e.get("auroc", {}).get("value") is not None}
        if values:
            out[task] = values
    return out


def summarise(records: list[dict], primary: str) -> dict:
    """Per task: each model's AUROC over the replicates (n, mean, SD with n - 1, min, max) and the paired
    differences primary minus each other model (per replicate, mean, SD, n, and how many are > 0). A replicate
    where either model has no AUROC for the task is left out of that pair and counted in `n`."""
    tasks = sorted({t for r in records for t in r["auroc"]}, key=_first_seen(records))
    out = {}
    for task in tasks:
        per_model: dict[str, list[float]] = {}
        for r in records:
            for m, v in r["auroc"].get(task, {}).items():
                per_model.setdefault(m, []).append(v)
        entry = {"models": {m: spread(v) for m, v in per_model.items()}, "differences": {}}
        for other in per_model:
            if other == primary or primary not in per_model:
                continue
            diffs = [
                r["auroc"][task][primary] - r["auroc"][task][other]
                for r in records
                if primary in r["auroc"].get(task, {}) and other in r["auroc"].get(task, {})
            ]
            entry["differences"][other] = {
                **spread(diffs),
                "per_replicate": diffs,
                "positive": int(sum(d > 0 for d in diffs)),
            }
        out[task] = entry
    return out


def _first_seen(records: list[dict]):
    order = {}
    for r in records:
        for t in r["auroc"]:
            order.setdefault(t, len(order))
    return order.__getitem__


def spread(values: list[float]) -> dict:
    """n, mean, sample SD (n - 1; None for one value), min and max of a list of floats."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else None,
        "min": float(x.min()),
        "max": float(x.max()),
    }


def summary_markdown(summary: dict, config: ReplicateConfig, seconds: float) -> str:
    n = len(config.generator_seeds) * len(config.training_seeds)
    lines = [
        "# hamburg-mamba: replication",
        "",
        f"{n} replicates: generator seeds {list(config.generator_seeds)} x training seeds "
        f"{list(config.training_seeds)} ({'tiny city' if config.tiny else 'default Hamburg'}); each replicate "
        f"trains {', '.join(config.backbones)} and fits CatBoost with its training seed on its city, and "
        f"evaluates them with NEWS2 and the references on the city's held-out period. Run time "
        f"{seconds / 60:.1f} min.",
        "",
        "## Held-out AUROC over the replicates: mean (SD) [min-max], n",
        "",
    ]
    models = _models(summary)
    lines += ["| task | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    for task, entry in summary.items():
        lines.append(f"| {task} | " + " | ".join(_spread_cell(entry["models"].get(m)) for m in models) + " |")
    lines += [
        "",
        f"## Paired differences: {config.primary} minus each model, per replicate",
        "",
        f"Mean (SD) of the difference; 'ahead' = replicates where {config.primary} has the higher AUROC, of "
        f"those where both have one.",
        "",
    ]
    others = [m for m in models if m != config.primary]
    lines += ["| task | " + " | ".join(others) + " |", "|" + "---|" * (len(others) + 1)]
    for task, entry in summary.items():
        cells = []
        for m in others:
            d = entry["differences"].get(m)
            cells.append(
                "-" if not d or not d["n"] else f"{d['mean']:+.3f} ({_num(d['sd'])}); ahead {d['positive']}/{d['n']}"
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def _models(summary: dict) -> list[str]:
    from hamburg_mamba.eval.report import _ordered

    return _ordered(list(dict.fromkeys(m for e in summary.values() for m in e["models"])))


def _spread_cell(s: dict | None) -> str:
    if not s or not s["n"]:
        return "-"
    return f"{s['mean']:.3f} ({_num(s['sd'])}) [{s['min']:.3f}-{s['max']:.3f}], {s['n']}"


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _settings(config: ReplicateConfig) -> dict:
    out = asdict(config)
    out["out"] = str(config.out)
    return out
