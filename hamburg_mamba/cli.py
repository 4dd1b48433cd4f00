"""hamburg-mamba: generate data, train, evaluate, report, replay the monitor, or run the whole demo.

    hamburg-mamba demo                          everything on the default synthetic Hamburg (2 CPU cores, < 15 min)
    hamburg-mamba generate --out runs/data
    hamburg-mamba train --data runs/data --out runs/mamba --backbone mamba
    torchrun --nproc_per_node 2 -m hamburg_mamba.cli train ...     data-parallel (gloo on CPU, nccl on GPU)
    hamburg-mamba evaluate --runs mamba=runs/mamba gru=runs/gru --out runs/eval
    hamburg-mamba report --eval runs/eval --out runs/report
    hamburg-mamba monitor --run runs/mamba --start "2023-11-20 06:00" --hours 24
    hamburg-mamba replicate --out runs/replicate     every model over 3 training x 3 generator seeds (hours)

See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

from hamburg_mamba.nn.config import BACKBONES

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
BASELINES = ("catboost", "news2", "oracle")
DEMO_DATA_FILE = "demo_data.json"  # which city the demo generated into its data folder
GENERATE_PRESETS = ("hamburg", "tiny", "external")
HEAT_WAVE_LEVELS = ("low", "severe", "extreme")  # hamburg_mamba.data.synthetic.HEAT_WAVE_UPLIFT
# `generate` option -> the SyntheticConfig field it sets (the dates among them are checked against the window).
GENERATE_FIELDS = {
    "--seed": "seed",
    "--hospitals": "hospitals",
    "--scale": "scale",
    "--start": "start",
    "--days": "days",
    "--heat-wave-start": "heat_wave_start",
    "--heat-wave-days": "heat_wave_days",
    "--heat-wave-level": "heat_wave_level",
    "--flu-peak": "flu_peak",
    "--mci-time": "mci_time",
    "--mci-casualties": "mci_casualties",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.check:
        args.check(args, args.parser)
    return int(args.func(args) or 0)


# ----------------------------------------------------------------------------------------------------------
# Argument types: argparse reports a failure as "argument --NAME: <message>" and exits with status 2.


def _number(kind: type, low: float, low_open: bool = False):
    """An argparse type: `kind` (int or float), finite, >= low (> low when low_open)."""
    noun = "an integer" if kind is int else "a number"
    bound = f"{'>' if low_open else '>='} {low:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {bound}"
    return parse


POSITIVE_INT = _number(int, 1)
COUNT = _number(int, 0)
POSITIVE = _number(float, 0, low_open=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hamburg-mamba",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(title="commands")

    g = sub.add_parser(
        "generate",
        help="write a synthetic city (Hamburg, or another) as a MEDS folder",
        description="Write a synthetic city as a MEDS folder. A preset gives every setting; the "
        "options below replace single ones. Crisis dates given must lie in the simulated "
        "window; with --start, every crisis date must (another season needs its own).",
    )
    g.add_argument("--out", required=True, help="MEDS root folder to write")
    g.add_argument(
        "--preset",
        choices=GENERATE_PRESETS,
        default="hamburg",
        help="hamburg: the demo city (6 EDs, Aug-Nov 2023); tiny: its two-week, three-hospital test city; "
        "external: Emscherstadt, another city for external validation (6 other EDs, spring 2024)",
    )
    g.add_argument("--tiny", action="store_true", help="the same as --preset tiny")
    g.add_argument("--seed", type=COUNT, default=None, help="random seed (default 0)")
    g.add_argument(
        "--hospitals",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the EDs, all of one city of hamburg_mamba.data.cities (quote names with spaces)",
    )
    g.add_argument("--scale", type=POSITIVE, default=None, help="fraction of the hospitals' annual ED visits")
    g.add_argument("--start", default=None, help="first simulated day: the season (e.g. 2024-02-15)")
    g.add_argument("--days", type=_number(int, 2), default=None, help="simulated days")
    g.add_argument("--heat-wave-start", default=None, help="first day of the heat wave")
    g.add_argument("--heat-wave-days", type=COUNT, default=None, help="heat-wave length in days (0: none)")
    g.add_argument("--heat-wave-level", choices=HEAT_WAVE_LEVELS, default=None, help="heat-wave level")
    g.add_argument("--flu-peak", default=None, help="day the influenza wave peaks")
    g.add_argument("--mci-time", default=None, help='time of the mass-casualty incident, e.g. "2024-04-26 08:30"')
    g.add_argument("--mci-casualties", type=COUNT, default=None, help="casualties of the incident (0: none)")
    g.set_defaults(func=cmd_generate, check=_check_generate_args, parser=g)

    t = sub.add_parser("train", help="train one model (resumes the run folder's run if its settings are these)")
    t.add_argument("--data", required=True, help="MEDS root folder")
    t.add_argument("--out", required=True, help="run folder (weights, config, schema, checkpoints)")
    t.add_argument("--backbone", choices=BACKBONES, default="mamba")
    t.add_argument("--preset", default="small", help="model size: tiny, small, demo, base (hamburg_mamba.train)")
    t.add_argument(
        "--task-weighting",
        choices=("baseline", "none"),
        default="baseline",
        help="per-task loss scale: divide by the best constant prediction's loss (default) or none",
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a HamburgMambaConfig field of the preset, e.g. --set d_model=96 --set n_layers=4 "
        "(VALUE parsed as JSON, else a string); repeatable",
    )
    _split_args(t)
    t.add_argument("--epochs", type=POSITIVE_INT, default=5)
    t.add_argument("--max-steps", type=POSITIVE_INT, default=None)
    t.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="pathways per step over all processes")
    t.add_argument("--lr", type=POSITIVE, default=2e-3)
    t.add_argument(
        "--weight-decay",
        type=_number(float, 0),
        default=0.01,
        help="AdamW weight decay on weight matrices (default 0.01)",
    )
    t.add_argument("--warmup-steps", type=COUNT, default=50)
    t.add_argument(
        "--eval-every", type=POSITIVE_INT, default=None, help="steps between tuning evaluations (default: epoch)"
    )
    t.add_argument(
        "--eval-max-pathways",
        type=POSITIVE_INT,
        default=None,
        help="tuning pathways used for early stopping and the kept checkpoint: a fixed subset drawn "
        "with --seed (default: the whole tuning split)",
    )
    t.add_argument("--patience", type=POSITIVE_INT, default=3)
    t.add_argument("--seed", type=COUNT, default=0)
    t.add_argument("--threads", type=POSITIVE_INT, default=None, help="torch CPU threads")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the run folder's earlier run and train afresh; without it, a folder holding a run "
        "with other settings (a finished run asked for more steps included) is refused",
    )
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train, check=_check_train_args, parser=t)

    e = sub.add_parser("evaluate", help="compare trained runs with CatBoost, NEWS2 and the oracle on held-out data")
    e.add_argument("--runs", nargs="*", default=[], help="NAME=RUN_DIR pairs (e.g. mamba=runs/mamba)")
    e.add_argument("--out", required=True, help="evaluation folder")
    e.add_argument("--data", default=None, help="MEDS root (default: the first run's data_spec.json)")
    _split_args(e, defaults=None)
    e.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated subset (may be empty)")
    e.add_argument("--n-boot", type=POSITIVE_INT, default=200, help="bootstrap replicates for the 95 %% intervals")
    e.add_argument("--catboost-iterations", type=POSITIVE_INT, default=400)
    e.add_argument("--primary", default=None, help="model drawn on the closure timeline (default: first run)")
    e.add_argument("--no-timeline", action="store_true", help="skip the whole-window closure timeline")
    e.add_argument("--threads", type=POSITIVE_INT, default=None, help="torch CPU threads")
    e.set_defaults(func=cmd_evaluate, check=_check_evaluate_args, parser=e)

    r = sub.add_parser("report", help="Markdown summary and PNG plots from an evaluation folder")
    r.add_argument("--eval", required=True, help="evaluation folder")
    r.add_argument("--out", required=True, help="report folder")
    r.add_argument("--primary", default="mamba", help="model the goal check is about")
    r.set_defaults(func=cmd_report, check=None, parser=r)

    m = sub.add_parser("monitor", help="replay a period event by event and print the warnings as they appeared")
    m.add_argument("--run", required=True, help="trained run folder")
    m.add_argument("--data", default=None, help="MEDS root (default: the run's data_spec.json)")
    m.add_argument("--start", required=True, help='start of the window, e.g. "2023-11-20 06:00"')
    m.add_argument("--hours", type=POSITIVE, default=24.0)
    m.add_argument("--every", type=POSITIVE, default=1.0, help="hours between warning checks")
    m.add_argument("--hospital", action="append", default=None, help="restrict to this hospital (repeatable)")
    m.add_argument("--threads", type=POSITIVE_INT, default=1, help="torch CPU threads")
    m.set_defaults(func=cmd_monitor, check=_check_monitor_args, parser=m)

    d = sub.add_parser("demo", help="generate, train every backbone, evaluate, report; prints the summary table")
    d.add_argument("--out", default="runs/demo", help="folder for data, runs, evaluation and report")
    d.add_argument("--backbones", default=",".join(DEMO_BACKBONES), help="comma-separated backbones to train")
    d.add_argument(
        "--steps", type=POSITIVE_INT, default=None, help="optimizer steps per backbone (default: DEMO_STEPS)"
    )
    d.add_argument("--n-boot", type=POSITIVE_INT, default=DEMO_BOOT)
    d.add_argument("--threads", type=POSITIVE_INT, default=1, help="torch intra-op threads (CatBoost always uses 2)")
    d.add_argument(
        "--jobs",
        type=POSITIVE_INT,
        default=None,
        help="backbones trained at once, each in its own process with --threads threads (default: CPU "
        "cores // threads); every run is seeded and single-process, so the results do not change",
    )
    d.add_argument("--tiny", action="store_true", help="the two-week test city and a few steps (about a minute)")
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate the data and retrain every run when the folder holds a demo with other settings",
    )
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo, check=_check_demo_args, parser=d)

    rp = sub.add_parser(
        "replicate",
        help="the demo's models over training seeds x generator seeds: mean, spread "
        "and paired differences of held-out AUROC (hours; --tiny: minutes)",
    )
    rp.add_argument("--out", default="runs/replicate", help="folder for the cities, runs, evaluations and summary")
    rp.add_argument("--generator-seeds", type=COUNT, nargs="+", default=[0, 1, 2], metavar="SEED")
    rp.add_argument("--training-seeds", type=COUNT, nargs="+", default=[0, 1, 2], metavar="SEED")
    rp.add_argument("--backbones", default=",".join(DEMO_BACKBONES), help="comma-separated backbones to train")
    rp.add_argument("--primary", default="mamba", help="model whose paired differences are reported")
    rp.add_argument(
        "--jobs",
        type=POSITIVE_INT,
        default=None,
        help="trainings at once, one process each (default: CPU cores); results do not change",
    )
    rp.add_argument("--tiny", action="store_true", help="the two-week test city and the tiny demo's settings")
    rp.set_defaults(func=cmd_replicate, check=None, parser=rp)
    return p


def _split_args(p, defaults="temporal"):
    p.add_argument(
        "--split",
        choices=("temporal", "file", "subject", "crisis"),
        default=defaults,
        help="how subjects are split (default: temporal, flu wave held out)",
    )
    p.add_argument(
        "--cutoffs",
        nargs=2,
        default=None,
        metavar=("TUNING_FROM", "HELD_OUT_FROM"),
        help="temporal split cut-offs (default 2023-10-20 2023-11-06)",
    )
    p.add_argument("--holdout-window", nargs=2, default=None, metavar=("FROM", "TO"), help="crisis split window")


def _spec_from_args(args, root):
    from hamburg_mamba.data.splits import DEMO_CUTOFFS, DataSpec

    return DataSpec(
        root=str(Path(root).resolve()),
        split=args.split or "temporal",
        temporal_cutoffs=tuple(args.cutoffs) if args.cutoffs else DEMO_CUTOFFS,
        holdout_window=tuple(args.holdout_window) if args.holdout_window else None,
    )


# ----------------------------------------------------------------------------------------------------------
# Checks that need more than one argument; each ends in parser.error naming the argument (exit status 2).


def _check_split_args(args, parser) -> None:
    if args.split == "crisis" and not args.holdout_window:
        parser.error("--holdout-window: required with --split crisis")
    if args.holdout_window and args.split != "crisis":
        parser.error(f"--holdout-window: only used with --split crisis, got --split {args.split}")
    if args.cutoffs and args.split not in (None, "temporal"):
        parser.error(f"--cutoffs: only used with --split temporal, got --split {args.split}")
    for name, pair in (("--cutoffs", args.cutoffs), ("--holdout-window", args.holdout_window)):
        if pair:
            first, second = (_timestamp(parser, name, text) for text in pair)
            if not first < second:
                parser.error(
                    f"{name}: expected the first date before the second, got {pair[0]} {pair[1]}"
                    + (" (the tuning period would be empty)" if name == "--cutoffs" else "")
                )


def _timestamp(parser, name: str, text: str):
    import pandas as pd

    try:
        return pd.Timestamp(text)
    except ValueError:
        parser.error(f'{name}: expected a date such as 2023-11-20 or "2023-11-20 06:00", got {text!r}')


def _check_generate_args(args, parser) -> None:
    """Build the city's SyntheticConfig into args.config; every failure names the option."""
    if args.tiny and args.preset not in ("hamburg", "tiny"):
        parser.error(f"--tiny: the same as --preset tiny, which --preset {args.preset} contradicts")
    given = {
        option: getattr(args, field) for option, field in GENERATE_FIELDS.items() if getattr(args, field) is not None
    }
    option_of = {field: option for option, field in GENERATE_FIELDS.items()}
    for option in ("--start", "--heat-wave-start", "--flu-peak", "--mci-time"):
        if option in given:
            _timestamp(parser, option, given[option])
    preset = "tiny" if args.tiny else args.preset
    try:
        config = dataclasses.replace(_preset_config(preset), **{GENERATE_FIELDS[o]: v for o, v in given.items()})
    except ValueError as e:
        text = str(e)
        field = text.split(":")[0].removeprefix("SyntheticConfig.")
        parser.error(f"{option_of[field]}:{text.split(':', 1)[1]}" if field in option_of else text)
    for field in config.outside_window():
        if _crisis_is_off(config, field):
            continue
        option, when = option_of[field], getattr(config, field)
        window = f"the simulated window [{config.start}, {config.end.date()})"
        if option in given:
            parser.error(f"{option}: {when} lies outside {window}")
        if "--start" in given:
            parser.error(
                f"{option}: the {preset} preset's {when} lies outside {window}; a city in another season "
                f"needs its own crisis dates: give {option} inside it"
            )
    args.config = config


def _preset_config(preset: str):
    from hamburg_mamba.data import SyntheticConfig
    from hamburg_mamba.data.splits import tiny_synthetic_config

    return {"hamburg": SyntheticConfig, "tiny": tiny_synthetic_config, "external": SyntheticConfig.external}[preset]()


def _crisis_is_off(config, field: str) -> bool:
    """A crisis of no size has no date to check."""
    return (
        (field == "heat_wave_start" and config.heat_wave_days == 0)
        or (field == "mci_time" and config.mci_casualties == 0)
        or (field == "flu_peak" and config.flu_peak_share == 0)
    )


def _check_train_args(args, parser) -> None:
    _check_split_args(args, parser)
    try:
        args.overrides = _overrides(args.overrides)
    except ValueError as e:
        parser.error(f"--set: {e}")


def _check_evaluate_args(args, parser) -> None:
    _check_split_args(args, parser)
    unknown = sorted(set(b for b in args.baselines.split(",") if b) - set(BASELINES))
    if unknown:
        parser.error(f"--baselines: unknown {unknown}; choose from {BASELINES}")
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--runs: expected NAME=RUN_DIR, got {item!r}")
        if name in runs:
            parser.error(f"--runs: the name {name!r} is given twice")
        if not Path(path).is_dir():
            parser.error(f"--runs: {name}={path}: no such run folder")
        runs[name] = path
    args.runs = runs
    if args.data is None and not runs:
        parser.error("--data: required when no --runs are given")


def _check_monitor_args(args, parser) -> None:
    _timestamp(parser, "--start", args.start)
    if not Path(args.run).is_dir():
        parser.error(f"--run: no such run folder {args.run}")


def _check_demo_args(args, parser) -> None:
    unknown = sorted(set(b for b in args.backbones.split(",") if b) - set(BACKBONES))
    if unknown:
        parser.error(f"--backbones: unknown {unknown}; choose from {BACKBONES}")


# ----------------------------------------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from hamburg_mamba.data import generate_synthetic, write_synthetic

    t0 = time.perf_counter()
    cfg = args.config  # built and checked by _check_generate_args
    for field in cfg.outside_window():
        if not _crisis_is_off(cfg, field):
            print(
                f"note: {field} {getattr(cfg, field)} lies outside [{cfg.start}, {cfg.end.date()}): that crisis "
                f"is not simulated (of a flu wave, only the part inside the window)"
            )
    data = generate_synthetic(cfg)
    root = write_synthetic(args.out, data)
    print(
        f"wrote {root}: {len(data.events):,} events, {len(data.pathways):,} pathways, "
        f"{int(data.hospital_hourly['closure_start'].sum())} closures ({time.perf_counter() - t0:.1f} s)"
    )
    return 0


def cmd_train(args) -> int:
    import torch
    import torch.distributed as dist

    from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config
    from hamburg_mamba.train.checkpoint import RunSettingsMismatch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world > 1:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    spec = _spec_from_args(args, args.data)
    data = spec.connect()
    rank = dist.get_rank() if world > 1 else 0
    if rank == 0:
        print(data.report())
    try:
        config = build_model_config(data, backbone=args.backbone, preset=args.preset, **args.overrides)
    except ValueError as e:
        args.parser.error(f"--preset/--set: {e}")
    tc = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        eval_every=args.eval_every,
        eval_max_pathways=args.eval_max_pathways,
        patience=args.patience,
        seed=args.seed,
        progress=not args.no_progress,
        num_threads=args.threads,
        task_weighting=args.task_weighting,
    )
    trainer = Trainer(build_model(config, seed=args.seed), data, tc, args.out, device=device, data_spec=spec.as_dict())
    try:
        summary = trainer.fit(overwrite=args.overwrite)
    except RunSettingsMismatch as e:
        args.parser.error(f"--out: {e}")
    if rank == 0:
        print(json.dumps(summary, indent=1))
    if world > 1:
        dist.destroy_process_group()
    return 0


# Config fields the data decides (from_schema, regression_target_stats); --set may not change them.
DATA_FIELDS = ("vocab_sizes", "num_numeric", "tasks", "target_stats")


def _overrides(items: list[str]) -> dict:
    """--set FIELD=VALUE items -> {field: value}, each value checked against its field (ValueError naming the
    field, the value and what was expected)."""
    from hamburg_mamba.nn import HamburgMambaConfig

    fields = [f.name for f in dataclasses.fields(HamburgMambaConfig) if f.name not in DATA_FIELDS]
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"expected FIELD=VALUE with FIELD one of {fields}, got {item!r}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
        HamburgMambaConfig.check_field(name, out[name])
    return out


def cmd_evaluate(args) -> int:
    from hamburg_mamba.eval.baselines import CatBoostSettings
    from hamburg_mamba.eval.experiment import run_comparison

    runs = args.runs
    if args.data is None:
        first = next(iter(runs.values()))
        spec = _run_data_spec(args.parser, first, "--runs")
        if args.split:  # evaluate the run on another split of its data
            spec = _spec_from_args(args, spec.root)
    else:
        spec = _spec_from_args(args, args.data)
    for path in runs.values():  # read by run_comparison; a malformed one is named here, not in a traceback
        _run_schema(args.parser, path, "--runs")
    baselines = tuple(b for b in args.baselines.split(",") if b)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_comparison(
        spec,
        runs,
        args.out,
        baselines=baselines,
        n_boot=args.n_boot,
        catboost=CatBoostSettings(iterations=args.catboost_iterations),
        primary=args.primary,
        timeline=not args.no_timeline,
    )
    print(f"wrote {args.out}")
    return 0


def cmd_report(args, command: str | None = None) -> int:
    from hamburg_mamba.eval.report import goal_check, summary_table, write_report

    path = write_report(args.eval, args.out, primary=args.primary, command=command)
    metrics = json.loads((Path(args.eval) / "metrics.json").read_text())
    print(summary_table(metrics))
    print()
    print("\n".join(goal_check(metrics, args.primary)))
    print(f"\nreport: {path}")
    return 0


def cmd_monitor(args) -> int:
    import torch

    from hamburg_mamba.eval.monitor import replay
    from hamburg_mamba.nn import HamburgHealthcareSafetyMamba

    torch.set_num_threads(args.threads)
    spec = _run_data_spec(args.parser, args.run, resolve_root=not args.data)
    if args.data:
        spec.root = str(Path(args.data).resolve())
    data = spec.connect(schema=_run_schema(args.parser, args.run))
    try:
        model = HamburgHealthcareSafetyMamba.from_pretrained(args.run)
    except (OSError, ValueError) as e:
        args.parser.error(f"--run: {e}")
    t0 = time.perf_counter()
    print(
        f"replaying {args.hours:g} h from {args.start} (levels: green < yellow < orange < red; "
        f"thresholds {model.config.warning_thresholds} on {model.config.breakdown_task})"
    )
    changes = replay(
        model,
        data,
        args.start,
        args.hours,
        hospitals=args.hospital,
        every_h=args.every,
        on_change=lambda c: print(c.line(), flush=True),
    )
    print(f"{len(changes)} warning changes ({time.perf_counter() - t0:.1f} s)")
    return 0


def _run_data_spec(parser, run: str, argument: str = "--run", resolve_root: bool = True):
    """The run folder's data spec, or parser.error naming the argument, the file and what is wrong with it."""
    from hamburg_mamba.data.splits import DataSpec

    try:
        return DataSpec.load(run, resolve_root=resolve_root)
    except (OSError, ValueError) as e:
        parser.error(f"{argument}: {e}")


def _run_schema(parser, run: str, argument: str = "--run"):
    """The run folder's fitted DatasetSchema, or parser.error naming the argument and the file."""
    from hamburg_mamba.data import DatasetSchema

    path = Path(run) / "schema.json"
    try:
        return DatasetSchema.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        parser.error(f"{argument}: {path} is missing or malformed ({type(e).__name__}: {e})")


def cmd_demo(args) -> int:
    t_start = time.perf_counter()
    out = Path(args.out)
    data_root = out / "data"
    backbones = [b for b in args.backbones.split(",") if b]
    timings = {}

    def stamp(name, t):
        timings[name] = time.perf_counter() - t
        print(f"[demo] {name}: {timings[name]:.1f} s (total {time.perf_counter() - t_start:.1f} s)", flush=True)

    t = time.perf_counter()
    _demo_data(args, data_root)
    stamp("generate", t)
    split = ["--split", "temporal"] + (["--cutoffs", *_tiny_cutoffs()] if args.tiny else [])
    commands = {}
    for bb in backbones:
        steps = args.steps or (TINY_STEPS if args.tiny else DEMO_STEPS.get(bb, 200))
        commands[bb] = [
            "train",
            "--data",
            str(data_root),
            "--out",
            str(out / "runs" / bb),
            "--backbone",
            bb,
            "--preset",
            "tiny" if args.tiny else "demo",
            "--max-steps",
            str(steps),
            "--epochs",
            "1" if args.tiny else str(DEMO_EPOCHS),
            "--batch-size",
            str(DEMO_BATCH),
            "--lr",
            str(DEMO_LR.get(bb, 5e-3)),
            "--weight-decay",
            str(DEMO_WEIGHT_DECAY),
            "--warmup-steps",
            str(max(steps // 10, 1)),
            "--threads",
            str(args.threads),
            "--device",
            "cpu",
            *split,
        ] + (["--overwrite"] if args.overwrite else [])
    jobs = args.jobs or max(1, (os.cpu_count() or 1) // max(args.threads, 1))
    t_train = time.perf_counter()
    if jobs == 1 or len(commands) == 1:
        for bb, command in commands.items():
            t = time.perf_counter()
            main(command + (["--no-progress"] if args.no_progress else []))
            stamp(f"train {bb}", t)
    else:
        _train_in_parallel(commands, jobs, out / "runs", stamp)
    stamp("train (all)", t_train)
    runs = [f"{bb}={out / 'runs' / bb}" for bb in backbones]
    t = time.perf_counter()
    evaluate = [
        "evaluate",
        "--runs",
        *runs,
        "--out",
        str(out / "eval"),
        "--n-boot",
        str(5 if args.tiny else args.n_boot),
        "--catboost-iterations",
        str(30 if args.tiny else DEMO_CATBOOST_ITERATIONS),
        "--threads",
        str(args.threads),
    ]
    if not runs:
        evaluate += ["--data", str(data_root), *split]
    main(evaluate)
    stamp("evaluate", t)
    t = time.perf_counter()
    command = "hamburg-mamba demo" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[2:] if sys.argv[1:2] == ["demo"] else [])
    )
    r = build_parser().parse_args(
        [
            "report",
            "--eval",
            str(out / "eval"),
            "--out",
            str(out / "report"),
            "--primary",
            backbones[0] if backbones else "catboost",
        ]
    )
    cmd_report(r, command=command)
    stamp("report", t)
    total = time.perf_counter() - t_start
    (out / "timings.json").write_text(json.dumps({**timings, "total": total}, indent=1))
    print(f"\n[demo] finished in {total / 60:.1f} min; report in {out / 'report' / 'README.md'}")
    return 0


def _demo_data(args, data_root: Path) -> None:
    """Generate the demo's city unless the folder already holds the one asked for (recorded beside it); a
    folder holding the other city is refused, or regenerated with --overwrite."""
    import shutil

    from hamburg_mamba.data import SyntheticConfig, generate_synthetic, write_synthetic
    from hamburg_mamba.data.splits import tiny_synthetic_config

    record = data_root.parent / DEMO_DATA_FILE
    wanted = {"tiny": bool(args.tiny), "seed": 0}
    if data_root.exists() and not args.overwrite:
        held = json.loads(record.read_text()) if record.is_file() else "an unrecorded dataset"
        if held == wanted:
            return
        args.parser.error(
            f"--tiny/--out: {data_root} holds {held}, this demo needs {wanted}; pass --overwrite to "
            "regenerate it (and retrain every run), or choose another --out"
        )
    shutil.rmtree(data_root, ignore_errors=True)
    config = tiny_synthetic_config(wanted["seed"]) if args.tiny else SyntheticConfig(seed=wanted["seed"])
    write_synthetic(data_root, generate_synthetic(config))
    record.write_text(json.dumps(wanted))


def _train_in_parallel(commands: dict[str, list[str]], jobs: int, log_dir: Path, stamp) -> None:
    """Run `hamburg-mamba train` for each backbone in its own process, `jobs` at a time; each writes its output
    to log_dir/<backbone>.log. Fails with the log's tail if a run fails."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    log_dir.mkdir(parents=True, exist_ok=True)

    def run(bb: str, command: list[str]) -> None:
        t = time.perf_counter()
        log = log_dir / f"{bb}.log"
        print(f"[demo] train {bb}: started (log {log})", flush=True)
        with open(log, "w") as f:
            rc = subprocess.run(
                [sys.executable, "-m", "hamburg_mamba.cli", *command, "--no-progress"],
                stdout=f,
                stderr=subprocess.STDOUT,
            ).returncode
        if rc != 0:
            tail = log.read_text()[-3000:]
            raise SystemExit(f"demo: training {bb} failed (exit {rc}); end of {log}:\n{tail}")
        stamp(f"train {bb}", t)

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(run, bb, command) for bb, command in commands.items()]:
            future.result()


def cmd_replicate(args) -> int:
    from hamburg_mamba.eval.replicate import ReplicateConfig, run_replicates

    try:
        config = ReplicateConfig(
            out=Path(args.out),
            recipe=replicate_recipe(args.tiny),
            generator_seeds=tuple(args.generator_seeds),
            training_seeds=tuple(args.training_seeds),
            backbones=tuple(b for b in args.backbones.split(",") if b),
            tiny=args.tiny,
            jobs=args.jobs or os.cpu_count() or 1,
            primary=args.primary,
        )
    except ValueError as e:
        field, _, message = str(e).partition(":")  # ReplicateConfig names its field first
        args.parser.error(f"--{field.replace('_', '-')}:{message}")
    result = run_replicates(config)
    print((Path(args.out) / "README.md").read_text())
    print(
        f"[replicate] {len(result['replicates'])} replicates in {result['seconds'] / 60:.1f} min; "
        f"{Path(args.out) / 'replicates.json'}"
    )
    return 0


def replicate_recipe(tiny: bool):
    """The demo's training and evaluation settings (DEMO_*, TINY_STEPS), for every replicate."""
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
        catboost_iterations=30 if tiny else DEMO_CATBOOST_ITERATIONS,
    )


def _tiny_cutoffs():
    from hamburg_mamba.data.splits import TINY_CUTOFFS

    return list(TINY_CUTOFFS)


if __name__ == "__main__":
    sys.exit(main())
