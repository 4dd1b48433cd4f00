"""The work behind each `hamburg-mamba` command, as typed functions: generate a city, train one model, evaluate
runs against the baselines (and on other cities), write the report, replay the monitor, replicate over seeds,
and the demo that chains them. `hamburg_mamba.cli` only parses the command line, converts it and calls these.

Each function takes a settings dataclass or keyword arguments (paths as Path, seeds as int), returns a result
object, prints its progress through `log`, and raises InvalidArgument (a ValueError) naming the setting on bad
input. Heavy modules (torch, pandas, the generator) are imported where used, so `hamburg-mamba --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from hamburg_mamba.nn.config import BACKBONES

if TYPE_CHECKING:
    from hamburg_mamba.data.splits import DataSpec

Log = Callable[[str], None]


def say(text: str) -> None:
    """The default `log`: printed at once, so a piped demo shows each step as it ends."""
    print(text, flush=True)


DEMO_BACKBONES = ("mamba", "hybrid", "gru", "transformer")
# Demo budget (2 CPU cores, docs/experiments.md): four epochs per backbone at peak learning rate 5e-3 (an epoch of
# the training period is 429 steps of 16 pathways; two epochs at 2e-3 left the safety heads under-trained), a
# step cap as a guard, and bootstrap replicates. One torch thread: on the shared 2-core machine two
# intra-op threads made short batches 40x slower (OpenMP threads waiting on each other under load), one thread
# trains at 10-16 k events/s for every backbone (measured, docs/experiments.md).
DEMO_EPOCHS = 4
DEMO_LR = {"mamba": 5e-3, "hybrid": 5e-3, "gru": 5e-3, "transformer": 5e-3}  # per backbone (docs/model.md, sweep)
DEMO_WEIGHT_DECAY = 0.01
DEMO_STEPS = {"mamba": 2000, "hybrid": 2000, "gru": 2000, "transformer": 2000}
DEMO_BATCH = 16
DEMO_BOOT = 100
DEMO_CATBOOST_ITERATIONS = 300
TINY_STEPS = 6
TINY_BOOT = 5  # the tiny demo's bootstrap replicates and CatBoost trees: minutes, not a measurement
TINY_CATBOOST_ITERATIONS = 30
BASELINES = ("catboost", "news2", "oracle")
TASK_WEIGHTINGS = ("baseline", "none")
DEMO_DATA_FILE = "demo_data.json"  # which city the demo generated into its data folder
DEMO_EXTERNAL_FILE = "demo_external.json"  # which city the demo generated into its external folder
# The tiny demo's external city: the tiny city's window and crises with three hospitals of the other city
# (cities.EXTERNAL_HOSPITALS), so --tiny also runs the external validation in seconds.
TINY_EXTERNAL_HOSPITALS = 3
# HamburgMambaConfig fields the data decides (from_schema, regression_target_stats); overrides may not set them.
DATA_FIELDS = ("vocab_sizes", "num_numeric", "tasks", "target_stats")


class InvalidArgument(ValueError):
    """Bad input to a workflow: `argument` names the setting ("tiny/out" when two decide together), `message`
    says what was expected and what was given. The CLI shows it as `--argument: message`."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message

    def __reduce__(self):  # crosses process boundaries with both fields (ValueError pickles only its text)
        return type(self), (self.argument, self.message)


class TrainingFailed(RuntimeError):
    """A training run in a worker process failed; the message names the run and ends with its log's tail."""


def check_number(argument: str, value, kind: type, low: float, low_open: bool = False) -> None:
    """InvalidArgument unless `value` is a finite `kind` (int or float) >= low (> low when low_open)."""
    noun = "an integer" if kind is int else "a number"
    accepted = numbers.Integral if kind is int else numbers.Real
    fits = (
        isinstance(value, accepted)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
    )
    if not fits:
        raise InvalidArgument(argument, f"expected {noun} {'>' if low_open else '>='} {low:g}, got {value!r}")


def _check_numbers(settings, limits: dict[str, tuple[type, float, bool]]) -> None:
    """Check each field named in `limits` (kind, low, low_open); None passes where the field's default is None."""
    for f in fields(settings):
        if f.name in limits and not (getattr(settings, f.name) is None and f.default is None):
            check_number(f.name, getattr(settings, f.name), *limits[f.name])


def _check_choice(argument: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidArgument(argument, f"expected one of {choices}, got {value!r}")


def _check_names(argument: str, names, choices: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(names)
    unknown = sorted(set(names) - set(choices))
    if unknown:
        raise InvalidArgument(argument, f"unknown {unknown}; choose from {choices}")
    return names


# ----------------------------------------------------------------------------------------------------------
# generate


@dataclass
class GenerateResult:
    root: Path  # the MEDS root written
    events: int
    pathways: int
    closures: int
    seconds: float

    def line(self) -> str:
        return (
            f"wrote {self.root}: {self.events:,} events, {self.pathways:,} pathways, "
            f"{self.closures} closures ({self.seconds:.1f} s)"
        )


def generate(config, out: Path, log: Log = say) -> GenerateResult:
    """Write the synthetic city of `config` (a SyntheticConfig) as a MEDS folder at `out`; a crisis dated outside
    the simulated window is not simulated, and said so."""
    from hamburg_mamba.data import SyntheticConfig, generate_synthetic, write_synthetic

    if not isinstance(config, SyntheticConfig):
        raise InvalidArgument("config", f"expected a SyntheticConfig, got {type(config).__name__}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidArgument("out", f"{out} is a file; expected a folder for the MEDS root")
    t0 = time.perf_counter()
    for name in config.outside_window():
        if not crisis_is_off(config, name):
            log(
                f"note: {name} {getattr(config, name)} lies outside [{config.start}, {config.end.date()}): that "
                f"crisis is not simulated (of a flu wave, only the part inside the window)"
            )
    data = generate_synthetic(config)
    root = write_synthetic(out, data)
    return GenerateResult(
        root=Path(root),
        events=len(data.events),
        pathways=len(data.pathways),
        closures=int(data.hospital_hourly["closure_start"].sum()),
        seconds=time.perf_counter() - t0,
    )


def crisis_is_off(config, name: str) -> bool:
    """A crisis of no size has no date to check."""
    return (
        (name == "heat_wave_start" and config.heat_wave_days == 0)
        or (name == "mci_time" and config.mci_casualties == 0)
        or (name == "flu_peak" and config.flu_peak_share == 0)
    )


def city_name(config) -> str:
    """The city a SyntheticConfig's hospitals belong to (one city each, `cities.check_hospital_set`)."""
    from hamburg_mamba.data.cities import HOSPITALS

    return HOSPITALS[config.hospitals[0]].city


# ----------------------------------------------------------------------------------------------------------
# train

# TrainSettings field -> (kind, lowest value, lowest excluded)
TRAIN_LIMITS = {
    "epochs": (int, 1, False),
    "max_steps": (int, 1, False),
    "batch_size": (int, 1, False),
    "lr": (float, 0, True),
    "weight_decay": (float, 0, False),
    "warmup_steps": (int, 0, False),
    "eval_every": (int, 1, False),
    "eval_max_pathways": (int, 1, False),
    "patience": (int, 1, False),
    "seed": (int, 0, False),
    "threads": (int, 1, False),
}


@dataclass
class TrainSettings:
    """One training run: its data and split, its run folder, the model and how it is trained."""

    data: DataSpec  # MEDS root and split; the root is made absolute so the run folder works from anywhere
    out: Path  # run folder (weights, config, schema, checkpoints)
    backbone: str = "mamba"
    preset: str = "small"  # model size (hamburg_mamba.train.PRESETS)
    overrides: dict = field(default_factory=dict)  # HamburgMambaConfig fields replacing the preset's
    task_weighting: str = "baseline"  # per-task loss scale (TrainConfig.task_weighting)
    epochs: int = 5
    max_steps: int | None = None  # cap on optimizer steps (None: the epochs decide)
    batch_size: int = 32  # pathways per step over all processes
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW, on weight matrices only
    warmup_steps: int = 50
    eval_every: int | None = None  # steps between tuning evaluations (None: once per epoch)
    eval_max_pathways: int | None = None  # tuning pathways early stopping reads, drawn with seed (None: all)
    patience: int = 3  # tuning evaluations without improvement before stopping
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str | None = None  # cpu or cuda (None: cuda when available)
    overwrite: bool = False  # discard a run with other settings in `out` instead of refusing it
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self):
        from hamburg_mamba.data.splits import DataSpec

        self.out = Path(self.out)
        if not isinstance(self.data, DataSpec):
            raise InvalidArgument("data", f"expected a DataSpec, got {type(self.data).__name__}")
        self.data = replace(self.data, root=str(Path(self.data.root).resolve()))
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("task_weighting", self.task_weighting, TASK_WEIGHTINGS)
        _check_numbers(self, TRAIN_LIMITS)
        check_overrides(self.overrides)

    def train_config(self):
        from hamburg_mamba.train import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            eval_every=self.eval_every,
            eval_max_pathways=self.eval_max_pathways,
            patience=self.patience,
            seed=self.seed,
            progress=self.progress,
            num_threads=self.threads,
            task_weighting=self.task_weighting,
        )


def overridable_fields() -> list[str]:
    """The HamburgMambaConfig fields TrainSettings.overrides may set: all but those the data decides."""
    from hamburg_mamba.nn import HamburgMambaConfig

    return [f.name for f in fields(HamburgMambaConfig) if f.name not in DATA_FIELDS]


def check_overrides(overrides: dict) -> None:
    """InvalidArgument naming the field, the value and what was expected, for the first override that cannot be."""
    from hamburg_mamba.nn import HamburgMambaConfig

    if not isinstance(overrides, dict):
        raise InvalidArgument("overrides", f"expected a dict of field -> value, got {type(overrides).__name__}")
    allowed = overridable_fields()
    for name, value in overrides.items():
        if name not in allowed:
            raise InvalidArgument("overrides", f"expected fields from {allowed}, got {name!r}")
        try:
            HamburgMambaConfig.check_field(name, value)
        except ValueError as e:
            raise InvalidArgument("overrides", str(e)) from None


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict  # Trainer.fit's summary (steps, best tuning loss, ...), also in run_dir/train_summary.json
    rank: int  # this process's rank in a torchrun job (0 alone); only rank 0 reports


def train(settings: TrainSettings, log: Log = say) -> TrainResult:
    """Train one model into `settings.out`, resuming the folder's run when its settings are these. Under torchrun
    (WORLD_SIZE > 1) every process calls this and trains data-parallel: gloo on CPU, nccl on GPU."""
    import torch
    import torch.distributed as dist

    from hamburg_mamba.train import Trainer, build_model, build_model_config
    from hamburg_mamba.train.checkpoint import RunSettingsMismatch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    data = settings.data.connect()
    rank = dist.get_rank() if world > 1 else 0
    if rank == 0:
        log(data.report())
    try:
        config = build_model_config(data, backbone=settings.backbone, preset=settings.preset, **settings.overrides)
    except ValueError as e:
        raise InvalidArgument("preset/overrides", str(e)) from None
    model = build_model(config, seed=settings.seed)
    tc = settings.train_config()
    trainer = Trainer(model, data, tc, settings.out, device=device, data_spec=settings.data.as_dict())
    try:
        summary = trainer.fit(overwrite=settings.overwrite)
    except RunSettingsMismatch as e:
        raise InvalidArgument("out", str(e)) from None
    if world > 1:
        dist.destroy_process_group()
    return TrainResult(run_dir=settings.out, summary=summary, rank=rank)


def train_in_parallel(
    runs: dict[str, TrainSettings], jobs: int, log_dir: Path, on_done: Callable[[str, float], None]
) -> dict[str, TrainResult]:
    """Train each run in its own spawned process, `jobs` at a time, its output in log_dir/<name>.log; calls
    on_done(name, seconds) as each ends. Each run is seeded and single-process, so where it runs changes no
    weight. TrainingFailed names the first run that failed and ends with its log's tail."""
    check_number("jobs", jobs, int, 1)
    if not runs:
        return {}
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = {name: log_dir / f"{name}.log" for name in runs}
    results = {}
    # spawn, not fork: a child forked after torch started its OpenMP threads can hang in its first parallel op
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_logged, name, settings, logs[name]): name for name, settings in runs.items()}
        for future in as_completed(futures):
            name = futures[future]
            try:
                results[name], seconds = future.result()
            except Exception as e:
                for queued in futures:  # runs not yet started are not started; running ones end first
                    queued.cancel()
                tail = logs[name].read_text()[-3000:] if logs[name].is_file() else "(no log)"
                raise TrainingFailed(f"training {name} failed ({e}); end of {logs[name]}:\n{tail}") from None
            on_done(name, seconds)
    return results


def _train_logged(name: str, settings: TrainSettings, log_file: Path) -> tuple[TrainResult, float]:
    """A worker process's training run with everything it writes (Python's and the C++ libraries') in log_file;
    a failure leaves its traceback there and comes back as a RuntimeError carrying only text (some exceptions
    do not survive pickling)."""
    print(f"[demo] train {name}: started (log {log_file})", flush=True)
    t0 = time.perf_counter()
    with _output_to(log_file):
        try:
            result = train(settings, log=print)
            print(json.dumps(result.summary, indent=1))
        except Exception as e:
            traceback.print_exc()
            raise RuntimeError(f"{type(e).__name__}: {e}") from None
    return result, time.perf_counter() - t0


@contextlib.contextmanager
def _output_to(path: Path):
    """Send file descriptors 1 and 2 (so print, warnings and C++ output alike) to `path`, then restore them."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ----------------------------------------------------------------------------------------------------------
# evaluate

EVALUATE_LIMITS = {"n_boot": (int, 1, False), "catboost_iterations": (int, 1, False), "threads": (int, 1, False)}


@dataclass
class EvaluateSettings:
    """Trained runs and the baselines scored on the held-out split of `data`, and on every external city whole."""

    data: DataSpec  # the development data and split (the runs' data_spec.json: `run_data_spec`)
    runs: dict[str, Path]  # model name -> run folder written by `train`
    out: Path  # evaluation folder (metrics.json, predictions, figures' data)
    baselines: tuple[str, ...] = BASELINES
    n_boot: int = 200  # bootstrap replicates for the 95 % intervals
    catboost_iterations: int = 400
    primary: str | None = None  # model drawn on the closure timeline (None: the first run)
    timeline: bool = True  # the whole-window closure timeline
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # city name -> MEDS root of another city, scored whole with the models and baselines as fitted on `data`
    external: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self):
        from hamburg_mamba.data.splits import MEDS_MARKER, DataSpec

        if not isinstance(self.data, DataSpec):
            raise InvalidArgument("data", f"expected a DataSpec, got {type(self.data).__name__}")
        self.out = Path(self.out)
        self.runs = {name: Path(path) for name, path in self.runs.items()}
        for name, path in self.runs.items():
            if not path.is_dir():
                raise InvalidArgument("runs", f"{name}={path}: no such run folder")
        self.baselines = _check_names("baselines", self.baselines, BASELINES)
        _check_numbers(self, EVALUATE_LIMITS)
        self.external = {name: Path(root) for name, root in self.external.items()}
        development = Path(self.data.root).resolve()
        for name, root in self.external.items():
            if not (root / MEDS_MARKER).is_file():
                raise InvalidArgument("external", f"{name}={root}: not a MEDS root (no {MEDS_MARKER} there)")
            if root.resolve() == development:
                raise InvalidArgument("external", f"{name}={root}: the development data itself, not another city")


@dataclass
class EvaluateResult:
    out: Path
    metrics: dict  # run_comparison's results, as written to out/metrics.json


def evaluate(settings: EvaluateSettings) -> EvaluateResult:
    """Score the runs and baselines (run_comparison) into `settings.out`."""
    from hamburg_mamba.eval.baselines import CatBoostSettings
    from hamburg_mamba.eval.experiment import run_comparison

    for path in settings.runs.values():  # read by run_comparison; a malformed one is named here, not in a traceback
        run_schema(path, "runs")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    metrics = run_comparison(
        settings.data,
        {name: str(path) for name, path in settings.runs.items()},
        settings.out,
        baselines=settings.baselines,
        n_boot=settings.n_boot,
        catboost=CatBoostSettings(iterations=settings.catboost_iterations),
        primary=settings.primary,
        timeline=settings.timeline,
        external=settings.external or None,
    )
    return EvaluateResult(out=settings.out, metrics=metrics)


def run_data_spec(run: Path, argument: str = "run", resolve_root: bool = True) -> DataSpec:
    """The run folder's data spec, or InvalidArgument naming the argument, the file and what is wrong with it."""
    from hamburg_mamba.data.splits import DataSpec

    try:
        return DataSpec.load(run, resolve_root=resolve_root)
    except (OSError, ValueError) as e:
        raise InvalidArgument(argument, str(e)) from None


def run_schema(run: Path, argument: str = "run"):
    """The run folder's fitted DatasetSchema, or InvalidArgument naming the argument and the file."""
    from hamburg_mamba.data import DatasetSchema

    path = Path(run) / "schema.json"
    try:
        return DatasetSchema.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgument(argument, f"{path} is missing or malformed ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------------------------------------
# report


@dataclass
class ReportResult:
    path: Path  # the report's README.md (report.html and the figures beside it)
    table: str  # the summary table (Markdown)
    goal_check: list[str]  # one line per goal

    def text(self) -> str:
        return "\n".join([self.table, "", *self.goal_check, f"\nreport: {self.path}"])


def report(eval_dir: Path, out: Path, primary: str = "mamba", command: str | None = None) -> ReportResult:
    """Markdown summary, report.html and PNG figures from an evaluation folder; `command` is the command line the
    report names as its origin."""
    from hamburg_mamba.eval.report import goal_check, summary_table, write_report

    metrics_file = Path(eval_dir) / "metrics.json"
    if not metrics_file.is_file():
        raise InvalidArgument("eval", f"{metrics_file}: missing (is {eval_dir} written by `hamburg-mamba evaluate`?)")
    path = write_report(eval_dir, out, primary=primary, command=command)
    metrics = json.loads(metrics_file.read_text())
    return ReportResult(path=Path(path), table=summary_table(metrics), goal_check=goal_check(metrics, primary))


# ----------------------------------------------------------------------------------------------------------
# monitor

MONITOR_LIMITS = {"hours": (float, 0, True), "every": (float, 0, True), "threads": (int, 1, False)}


@dataclass
class MonitorSettings:
    run: Path  # trained run folder
    start: str  # start of the replayed window, e.g. "2023-11-20 06:00"
    hours: float = 24.0
    every: float = 1.0  # hours between warning checks
    hospitals: tuple[str, ...] | None = None  # only these hospitals (None: all)
    threads: int = 1  # torch CPU threads
    data: Path | None = None  # MEDS root (None: the run's data_spec.json)

    def __post_init__(self):
        self.run = Path(self.run)
        self.data = None if self.data is None else Path(self.data)
        parse_time("start", self.start)
        _check_numbers(self, MONITOR_LIMITS)
        if not self.run.is_dir():
            raise InvalidArgument("run", f"no such run folder {self.run}")


@dataclass
class MonitorResult:
    changes: list  # eval.monitor's warning changes, in time order
    seconds: float


def monitor(settings: MonitorSettings, on_change: Callable | None = None, log: Log = say) -> MonitorResult:
    """Replay the window event by event with the run's model; on_change(change) as each warning changes."""
    import torch

    from hamburg_mamba.eval.monitor import replay
    from hamburg_mamba.nn import HamburgHealthcareSafetyMamba

    torch.set_num_threads(settings.threads)
    spec = run_data_spec(settings.run, resolve_root=settings.data is None)
    if settings.data is not None:
        spec.root = str(settings.data.resolve())
    data = spec.connect(schema=run_schema(settings.run))
    try:
        model = HamburgHealthcareSafetyMamba.from_pretrained(settings.run)
    except (OSError, ValueError) as e:
        raise InvalidArgument("run", str(e)) from None
    t0 = time.perf_counter()
    log(
        f"replaying {settings.hours:g} h from {settings.start} (levels: green < yellow < orange < red; "
        f"thresholds {model.config.warning_thresholds} on {model.config.breakdown_task})"
    )
    hospitals = list(settings.hospitals) if settings.hospitals is not None else None
    changes = replay(
        model, data, settings.start, settings.hours, hospitals=hospitals, every_h=settings.every, on_change=on_change
    )
    return MonitorResult(changes=changes, seconds=time.perf_counter() - t0)


def parse_time(argument: str, text: str):
    """The pandas Timestamp of `text`, or InvalidArgument naming the argument."""
    import pandas as pd

    try:
        return pd.Timestamp(text)
    except (ValueError, TypeError):
        raise InvalidArgument(
            argument, f'expected a date such as 2023-11-20 or "2023-11-20 06:00", got {text!r}'
        ) from None


# ----------------------------------------------------------------------------------------------------------
# replicate


@dataclass
class ReplicateResult:
    out: Path  # replicates.json and README.md (the summary tables) are here
    replicates: list[dict]  # per (generator seed, training seed): the held-out AUROCs
    summary: dict
    seconds: float


def replicate(
    out: Path,
    generator_seeds: tuple[int, ...] = (0, 1, 2),
    training_seeds: tuple[int, ...] = (0, 1, 2),
    backbones: tuple[str, ...] = DEMO_BACKBONES,
    primary: str = "mamba",
    jobs: int | None = None,
    tiny: bool = False,
    log: Log = say,
) -> ReplicateResult:
    """The demo's models (replicate_recipe) over training seeds x generator seeds (eval.replicate); jobs:
    trainings at once, one process each (None: the CPU cores)."""
    from hamburg_mamba.eval.replicate import ReplicateConfig, run_replicates

    try:
        config = ReplicateConfig(
            out=Path(out),
            recipe=replicate_recipe(tiny),
            generator_seeds=tuple(generator_seeds),
            training_seeds=tuple(training_seeds),
            backbones=tuple(backbones),
            tiny=tiny,
            jobs=jobs or os.cpu_count() or 1,
            primary=primary,
        )
    except ValueError as e:
        name, _, message = str(e).partition(":")  # ReplicateConfig names its field first
        raise InvalidArgument(name, message.strip()) from None
    result = run_replicates(config, log=log)
    return ReplicateResult(
        out=config.out, replicates=result["replicates"], summary=result["summary"], seconds=result["seconds"]
    )


def replicate_recipe(tiny: bool):
    """The demo's training and evaluation settings (DEMO_*, TINY_*), for every replicate."""
    from hamburg_mamba.eval.replicate import Recipe

    steps = {bb: TINY_STEPS if tiny else DEMO_STEPS[bb] for bb in DEMO_BACKBONES}
    return Recipe(
        preset="tiny" if tiny else "demo",
        epochs=1 if tiny else DEMO_EPOCHS,
        max_steps=steps,
        lr=dict(DEMO_LR),
        warmup_steps={bb: max(n // 10, 1) for bb, n in steps.items()},
        batch_size=DEMO_BATCH,
        weight_decay=DEMO_WEIGHT_DECAY,
        catboost_iterations=TINY_CATBOOST_ITERATIONS if tiny else DEMO_CATBOOST_ITERATIONS,
    )


# ----------------------------------------------------------------------------------------------------------
# demo

DEMO_LIMITS = {"steps": (int, 1, False), "n_boot": (int, 1, False), "threads": (int, 1, False), "jobs": (int, 1, False)}


@dataclass
class DemoSettings:
    """The demo: the synthetic Hamburg and the external city generated, every backbone trained, all evaluated
    against the baselines (on Hamburg's held-out period and on the whole external city), and the report."""

    out: Path = Path("runs/demo")  # data, external city, runs, evaluation and report
    backbones: tuple[str, ...] = DEMO_BACKBONES
    steps: int | None = None  # optimizer steps per backbone (None: DEMO_STEPS; TINY_STEPS with tiny)
    n_boot: int = DEMO_BOOT  # bootstrap replicates (tiny: TINY_BOOT)
    threads: int = 1  # torch intra-op threads per training (CatBoost always uses 2)
    jobs: int | None = None  # trainings at once, each in its own process (None: CPU cores // threads)
    tiny: bool = False  # the two-week test cities and a few steps (minutes)
    overwrite: bool = False  # regenerate the cities and retrain every run when `out` holds other settings
    progress: bool = True  # tqdm bars of in-process trainings

    def __post_init__(self):
        self.out = Path(self.out)
        self.backbones = _check_names("backbones", self.backbones, BACKBONES)
        _check_numbers(self, DEMO_LIMITS)


@dataclass
class DemoResult:
    out: Path
    timings: dict[str, float]  # step -> seconds, also in out/timings.json
    report: ReportResult


def demo(settings: DemoSettings, command: str | None = None, log: Log = say) -> DemoResult:
    """Run the whole demo into `settings.out`; `command` is the command line the report names as its origin.
    Every step resumes: cities already generated and runs already trained with the same settings are kept."""
    clock = _Clock(log)
    spec, external = _demo_cities(settings, clock, log)
    runs = {bb: demo_train_settings(settings, bb, spec) for bb in settings.backbones}
    _demo_train(runs, settings, clock, log)
    t = time.perf_counter()
    evaluate(
        EvaluateSettings(
            data=spec,
            runs={bb: run.out for bb, run in runs.items()},
            out=settings.out / "eval",
            n_boot=TINY_BOOT if settings.tiny else settings.n_boot,
            catboost_iterations=TINY_CATBOOST_ITERATIONS if settings.tiny else DEMO_CATBOOST_ITERATIONS,
            threads=settings.threads,
            external=external,
        )
    )
    clock.stamp("evaluate", t)
    t = time.perf_counter()
    primary = settings.backbones[0] if settings.backbones else "catboost"
    result = report(settings.out / "eval", settings.out / "report", primary=primary, command=command)
    log(result.text())
    clock.stamp("report", t)
    timings = {**clock.timings, "total": clock.total()}
    (settings.out / "timings.json").write_text(json.dumps(timings, indent=1))
    log(f"\n[demo] finished in {timings['total'] / 60:.1f} min; report in {result.path}")
    return DemoResult(out=settings.out, timings=timings, report=result)


def _demo_cities(settings: DemoSettings, clock: _Clock, log: Log) -> tuple[DataSpec, dict[str, Path]]:
    """Generate (or keep) the development city and the external one: the development data's spec and the
    external city as {name: MEDS root}."""
    from hamburg_mamba.data.splits import DEMO_CUTOFFS, TINY_CUTOFFS, DataSpec

    out, tiny = settings.out, settings.tiny
    t = time.perf_counter()
    wanted = {"tiny": tiny, "seed": 0}  # the record demos have always written beside their data
    root = _demo_city(out / "data", out / DEMO_DATA_FILE, demo_city_config(tiny), wanted, settings.overwrite, log)
    clock.stamp("generate", t)
    t = time.perf_counter()
    config = demo_external_config(tiny)
    name = city_name(config)
    wanted = {"city": name, "tiny": tiny, "seed": config.seed, "scale": config.scale}
    external = _demo_city(out / "external", out / DEMO_EXTERNAL_FILE, config, wanted, settings.overwrite, log)
    clock.stamp("generate external", t)
    cutoffs = TINY_CUTOFFS if tiny else DEMO_CUTOFFS
    return DataSpec(root=str(root.resolve()), split="temporal", temporal_cutoffs=cutoffs), {name: external}


def _demo_train(runs: dict[str, TrainSettings], settings: DemoSettings, clock: _Clock, log: Log) -> None:
    """Train every run: in this process when one job at a time, else in `jobs` worker processes."""
    t = time.perf_counter()
    jobs = settings.jobs or max(1, (os.cpu_count() or 1) // settings.threads)
    if jobs == 1 or len(runs) == 1:
        for bb, run in runs.items():
            started = time.perf_counter()
            log(json.dumps(train(run, log=log).summary, indent=1))
            clock.stamp(f"train {bb}", started)
    else:
        quiet = {bb: replace(run, progress=False) for bb, run in runs.items()}  # a progress bar in a log file
        train_in_parallel(quiet, jobs, settings.out / "runs", lambda bb, seconds: clock.record(f"train {bb}", seconds))
    clock.stamp("train (all)", t)


def demo_city_config(tiny: bool):
    """The demo's development city: the default synthetic Hamburg, or the two-week test city."""
    from hamburg_mamba.data import SyntheticConfig
    from hamburg_mamba.data.splits import tiny_synthetic_config

    return tiny_synthetic_config(0) if tiny else SyntheticConfig(seed=0)


def demo_external_config(tiny: bool):
    """The demo's external city: the external preset (`generate --preset external`), or for --tiny the tiny
    city's window with the first TINY_EXTERNAL_HOSPITALS hospitals of the other city."""
    from hamburg_mamba.data import SyntheticConfig
    from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS
    from hamburg_mamba.data.splits import tiny_synthetic_config

    if not tiny:
        return SyntheticConfig.external(seed=0)
    hospitals = tuple(h.name for h in EXTERNAL_HOSPITALS[:TINY_EXTERNAL_HOSPITALS])
    return replace(tiny_synthetic_config(0), hospitals=hospitals)


def demo_train_settings(settings: DemoSettings, backbone: str, spec: DataSpec) -> TrainSettings:
    """How the demo trains `backbone` (DEMO_* or, with tiny, TINY_STEPS and the tiny preset) on `spec`."""
    steps = settings.steps or (TINY_STEPS if settings.tiny else DEMO_STEPS.get(backbone, 200))
    return TrainSettings(
        data=spec,
        out=settings.out / "runs" / backbone,
        backbone=backbone,
        preset="tiny" if settings.tiny else "demo",
        max_steps=steps,
        epochs=1 if settings.tiny else DEMO_EPOCHS,
        batch_size=DEMO_BATCH,
        lr=DEMO_LR.get(backbone, 5e-3),
        weight_decay=DEMO_WEIGHT_DECAY,
        warmup_steps=max(steps // 10, 1),
        threads=settings.threads,
        device="cpu",
        overwrite=settings.overwrite,
        progress=settings.progress,
    )


def _demo_city(root: Path, record: Path, config, wanted: dict, overwrite: bool, log: Log) -> Path:
    """The city of `config` at `root`, generated unless the folder already holds the one asked for (`wanted`,
    recorded in `record`); a folder holding another city is refused, or regenerated with overwrite."""
    if root.exists() and not overwrite:
        held = json.loads(record.read_text()) if record.is_file() else "an unrecorded dataset"
        if held == wanted:
            return root
        raise InvalidArgument(
            "tiny/out",
            f"{root} holds {held}, this demo needs {wanted}; pass --overwrite to regenerate it (and retrain "
            "every run), or choose another --out",
        )
    shutil.rmtree(root, ignore_errors=True)
    log(generate(config, root, log).line())
    record.write_text(json.dumps(wanted))
    return root


class _Clock:
    """The demo's step timings, each logged as it ends with the running total."""

    def __init__(self, log: Log):
        self.log = log
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    def stamp(self, name: str, since: float) -> None:
        self.record(name, time.perf_counter() - since)

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = seconds
        self.log(f"[demo] {name}: {seconds:.1f} s (total {self.total():.1f} s)")

    def total(self) -> float:
        return time.perf_counter() - self.started
