"""Replication: every backbone and CatBoost over training seeds on several generated cities, so that a
difference between models can be told apart from the luck of one seed.

A replicate is one (generator seed, training seed) pair: the city generated with the generator seed, every
backbone trained and CatBoost fitted with the training seed, all evaluated by `experiment.run_comparison` on
that city's held-out period. Over the replicates the summary gives, per task and model, the held-out AUROC's
mean, SD and range, and per replicate the primary model's AUROC minus each other model's (paired: same city,
same seed, same rows), with their mean and the number of replicates where the primary model is ahead.

It also checks that no warning model saturates: per replicate, model and binary task whose held-out prevalence is
below `robustness.RARE_PREVALENCE` (5 %), the share of held-out predictions above `robustness.SATURATION_P`
(0.9), read from the evaluation's prediction files. The criterion reads the raw probability the model emits (that
is what saturates; the tuning-split recalibration is reported beside it): a model passes when at most
`SATURATION_MAX_SHARE` (1 %) of the rows are above 0.9, or no more than the fair bound puts there on the same rows
(P(label | simulator state at t), data/fair_bound.py; the closure and staffing tasks have none, so 1 % is their
limit).

    OUT/city-<g>/data                  the city of generator seed g (city.json records which one it is)
    OUT/city-<g>/seed-<s>/runs/<bb>    backbone bb trained with seed s
    OUT/city-<g>/seed-<s>/eval         run_comparison's folder (metrics.json, predictions.parquet, ...)
    OUT/replicates.json                per-replicate AUROCs and saturation checks, the summary
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
import pandas as pd

from hamburg_mamba.eval.robustness import RARE_PREVALENCE, SATURATION_P

BACKBONES = ("mamba", "hybrid", "gru", "transformer")
BASELINES = ("catboost", "news2", "oracle")  # oracle brings the fair bound where the city has one
# Intervals come from the spread over replicates; each evaluation's own bootstrap only costs time, so it runs
# with the fewest replicates the metrics module gives an interval for.
REPLICATE_BOOT = 10
CITY_FILE = "city.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
PREDICTION_FILES = ("predictions.parquet", "pathway_predictions.parquet")  # event rows, pathway rows
# The saturation criterion: at most this share of a rare task's held-out predictions above SATURATION_P, unless
# the fair bound has as many there (a calibrated model may then follow it).
SATURATION_MAX_SHARE = 0.01
REFERENCES = ("oracle", "fair_bound")  # not models: the generator's probabilities (experiment.ORACLE, FAIR_BOUND)
FAIR_BOUND = "fair_bound"


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
            replicate(
                config,
                root,
                g,
                s,
                log=lambda m, g=g, s=s: log(f"[replicate {time.perf_counter() - t0:7.1f}s] city {g} seed {s}: {m}"),
            )
            records.append(replicate_record(config, g, s))
    return write_summary(config, records, time.perf_counter() - t0)


def replicate_record(config: ReplicateConfig, generator_seed: int, training_seed: int) -> dict:
    """One finished replicate, read back from its evaluation folder: held-out AUROCs and the saturation check."""
    eval_dir = config.out / f"city-{generator_seed}" / f"seed-{training_seed}" / "eval"
    metrics = json.loads((eval_dir / METRICS_FILE).read_text())
    return {
        "generator_seed": generator_seed,
        "training_seed": training_seed,
        "auroc": replicate_aurocs(metrics),
        "saturation": saturation_check(eval_dir, metrics),
    }


def write_summary(config: ReplicateConfig, records: list[dict], seconds: float) -> dict:
    """Summarise the records; write replicates.json and README.md under `config.out`; return what was written."""
    summary = summarise(records, config.primary)
    result = {
        "settings": _settings(config),
        "replicates": records,
        "summary": summary,
        "saturation": saturation_verdict(records, config.backbones),
        "seconds": seconds,
    }
    (config.out / "replicates.json").write_text(json.dumps(result, indent=1))
    (config.out / "README.md").write_text(
        summary_markdown(summary, config, seconds) + saturation_markdown(records, result["saturation"])
    )
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


def replicate(config: ReplicateConfig, root: Path, generator_seed: int, training_seed: int, log=print) -> None:
    """Train every backbone with `training_seed` on the city at `root` and evaluate them with the baselines
    (CatBoost seeded the same) into the replicate's eval folder; both steps keep what is already current."""
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


# ----------------------------------------------------------------------------------------------------------
# Saturation on rare tasks


def saturation_check(eval_dir: Path, metrics: dict) -> dict:
    """The saturation check of one evaluation, from its prediction files: `checked` task -> its held-out rows
    (label mask), prevalence, the fair bound's share above SATURATION_P (None without a bound) and per model
    (every evaluated model but the references) `task_saturation`'s entry; `not_checked` task -> prevalence for
    the binary tasks at or above RARE_PREVALENCE (None: no labelled held-out row)."""
    models = [m for m in metrics["models"] if m not in REFERENCES]
    out = {"checked": {}, "not_checked": {}}
    for name in PREDICTION_FILES:
        table = pd.read_parquet(Path(eval_dir) / name)
        for task, r in metrics["tasks"].items():
            if r["kind"] != "binary" or f"{task}|label" not in table:
                continue
            entry = task_saturation(table, task, models)
            if entry["prevalence"] is not None and entry["prevalence"] < RARE_PREVALENCE:
                out["checked"][task] = entry
            else:
                out["not_checked"][task] = entry["prevalence"]
    for task, r in metrics["tasks"].items():
        if r["kind"] == "binary" and task not in out["checked"]:
            out["not_checked"].setdefault(task, None)  # in no prediction file: nothing to check
    return out


def task_saturation(table: pd.DataFrame, task: str, models: list[str]) -> dict:
    """One task's check on the rows of `table` whose `<task>|mask` is set (the held-out rows with a label).

    A model's entry: `raw` and `recalibrated` (the `|recal` column) share of rows above SATURATION_P, `max` raw
    prediction, and `passes` (read from `raw`): raw share <= SATURATION_MAX_SHARE or <= the fair bound's share.
    A row where the bound is missing counts as not above (the stricter reading) and is counted in
    `fair_bound_missing`; a row where a model has no prediction counts as not above and is counted in its
    `missing`.
    """
    mask = table[f"{task}|mask"].to_numpy(dtype=bool)
    y = table[f"{task}|label"].to_numpy(dtype=np.float64)[mask]
    entry = {"rows": int(mask.sum()), "prevalence": float(y.mean()) if y.size else None, "models": {}}
    bound = None
    if f"{task}|{FAIR_BOUND}" in table:
        b = table[f"{task}|{FAIR_BOUND}"].to_numpy(dtype=np.float64)[mask]
        bound = _share_above(np.nan_to_num(b, nan=0.0))
        entry["fair_bound_missing"] = int(np.isnan(b).sum())
    entry["fair_bound"] = bound
    limit = max(SATURATION_MAX_SHARE, bound or 0.0)
    for m in models:
        if f"{task}|{m}" not in table:
            continue
        raw, missing = _predictions(table, f"{task}|{m}", mask)
        recal = _predictions(table, f"{task}|{m}|recal", mask)[0] if f"{task}|{m}|recal" in table else None
        share = _share_above(raw)
        entry["models"][m] = {
            "raw": share,
            "recalibrated": _share_above(recal) if recal is not None else None,
            "max": float(raw.max()) if raw.size else None,
            "passes": share is None or share <= limit,
        }
        if missing:
            entry["models"][m]["missing"] = missing
    return entry


def _predictions(table: pd.DataFrame, column: str, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The column on the labelled rows, a missing value (NEWS2 without the vital signs it scores) as 0, and the
    number of missing values; anything else outside [0, 1] is refused."""
    p = table[column].to_numpy(dtype=np.float64)[mask]
    missing = np.isnan(p)
    bad = ~missing & ~((p >= 0.0) & (p <= 1.0))
    if bad.any():
        raise ValueError(
            f"predictions: column {column!r} has {int(bad.sum())} values outside [0, 1] on labelled rows; "
            f"expected probabilities"
        )
    return np.where(missing, 0.0, p), int(missing.sum())


def _share_above(p: np.ndarray) -> float | None:
    return float((p > SATURATION_P).mean()) if p.size else None


def saturation_verdict(records: list[dict], backbones: tuple[str, ...]) -> dict:
    """Over all replicates: the criterion's settings, every (replicate, task, model) that fails, and whether the
    criterion holds for the backbones (the warning models; other models' failures are listed, not counted)."""
    failures = [
        {
            "generator_seed": r["generator_seed"],
            "training_seed": r["training_seed"],
            "task": task,
            "model": m,
            "raw": e["raw"],
            "fair_bound": entry["fair_bound"],
            "prevalence": entry["prevalence"],
        }
        for r in records
        for task, entry in r["saturation"]["checked"].items()
        for m, e in entry["models"].items()
        if not e["passes"]
    ]
    checked = {m for r in records for e in r["saturation"]["checked"].values() for m in e["models"]}
    return {
        "threshold": SATURATION_P,
        "rare_prevalence": RARE_PREVALENCE,
        "max_share": SATURATION_MAX_SHARE,
        "criterion_reads": "raw",
        "backbones_checked": [b for b in backbones if b in checked],
        "holds": not any(f["model"] in backbones for f in failures),
        "failures": failures,
    }


def saturation_markdown(records: list[dict], verdict: dict) -> str:
    p, share = verdict["threshold"], 100 * verdict["max_share"]
    holds = "holds" if verdict["holds"] else "does NOT hold"
    lines = [
        f"## Saturation: share of held-out predictions above {p:g} on tasks with prevalence "
        f"< {100 * verdict['rare_prevalence']:g} %",
        "",
        f"A model passes when at most {share:g} % of its raw predictions are above {p:g}, or no more than the fair "
        f"bound's share on the same rows ('-': no bound for the task, the {share:g} % limit alone). The "
        f"recalibrated share (Platt on the tuning split) is shown beside it, not judged. Criterion over the "
        f"backbones {verdict['backbones_checked']}: **{holds}** ({len(verdict['failures'])} failing rows of any "
        f"model).",
        "",
        "| city | seed | task | prevalence | rows | fair bound > 0.9 | model | > 0.9 raw | > 0.9 recal. | max raw | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for task, entry in r["saturation"]["checked"].items():
            for m, e in entry["models"].items():
                lines.append(
                    f"| {r['generator_seed']} | {r['training_seed']} | {task} | {entry['prevalence']:.4f} | "
                    f"{entry['rows']} | {_pct(entry['fair_bound'])} | {m} | {_pct(e['raw'])}{_missing(e)} | "
                    f"{_pct(e['recalibrated'])} | {_num(e['max'])} | {'pass' if e['passes'] else 'FAIL'} |"
                )
    skipped: dict[str, list[float | None]] = {}
    for r in records:
        for task, prevalence in r["saturation"]["not_checked"].items():
            skipped.setdefault(task, []).append(prevalence)
    listed = [f"{t} ({', '.join(_num(v) for v in values)})" for t, values in skipped.items()]
    lines += [
        "",
        f"Binary tasks not checked, with their held-out prevalence in each replicate where they were not "
        f"('-': no labelled row): {', '.join(listed) or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def _missing(entry: dict) -> str:
    return f" ({entry['missing']} rows without one)" if entry.get("missing") else ""


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


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
