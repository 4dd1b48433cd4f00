"""hamburg-mamba: generate data, train, evaluate, report, replay the monitor, or run the whole demo.

    hamburg-mamba demo                          everything on the default synthetic Hamburg, validated on the
                                                external city Emscherstadt too (2 CPU cores, < 15 min)
    hamburg-mamba generate --out runs/data
    hamburg-mamba generate --preset external --out runs/emscherstadt     another city, for external validation
    hamburg-mamba train --data runs/data --out runs/mamba --backbone mamba
    torchrun --nproc_per_node 2 -m hamburg_mamba.cli train ...     data-parallel (gloo on CPU, nccl on GPU)
    hamburg-mamba evaluate --runs mamba=runs/mamba gru=runs/gru --out runs/eval
    hamburg-mamba evaluate --runs ... --out runs/eval --external Emscherstadt=runs/emscherstadt   + that city whole
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
import shlex
import sys
from pathlib import Path

from hamburg_mamba import workflows
from hamburg_mamba.nn.config import BACKBONES
from hamburg_mamba.workflows import BASELINES, DEMO_BACKBONES, DEMO_BOOT, InvalidArgument, TrainingFailed

# The demo's recipe lives in workflows; replicate_recipe stays importable from here for its earlier callers.
replicate_recipe = workflows.replicate_recipe

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
# Workflow settings whose option is not --<the setting's name with dashes>.
OPTION_OF_SETTING = {"overrides": "--set"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.check:
            args.check(args, args.parser)
        return int(args.func(args) or 0)
    except InvalidArgument as e:
        args.parser.error(f"{setting_option(e.argument)}: {e.message}")


def setting_option(setting: str) -> str:
    """The option of a workflow setting: overrides -> --set, batch_size -> --batch-size, tiny/out -> --tiny/--out."""
    return "/".join(OPTION_OF_SETTING.get(s, "--" + s.replace("_", "-")) for s in setting.split("/"))


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
    e.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="NAME=ROOT",
        help="another city's MEDS root (e.g. from generate --preset external), scored whole with the models "
        "and baselines as fitted on the development data, nothing refitted; repeatable",
    )
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
    m.set_defaults(func=cmd_monitor, check=None, parser=m)

    d = sub.add_parser(
        "demo",
        help="generate Hamburg and the external city, train every backbone, evaluate on both, report; prints the "
        "summary table",
    )
    d.add_argument("--out", default="runs/demo", help="folder for the two cities, runs, evaluation and report")
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
    d.add_argument(
        "--tiny",
        action="store_true",
        help="the two-week test city, as external city its window with three of the other city's hospitals, and "
        "a few steps (a minute or two)",
    )
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate the data and retrain every run when the folder holds a demo with other settings",
    )
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo, check=None, parser=d)

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
    try:
        return workflows.parse_time(name, text)
    except InvalidArgument as e:
        parser.error(f"{name}: {e.message}")


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
        if workflows.crisis_is_off(config, field):
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


def _check_train_args(args, parser) -> None:
    _check_split_args(args, parser)
    try:
        args.overrides = _overrides(args.overrides)
    except ValueError as e:
        parser.error(f"--set: {e}")


def _overrides(items: list[str]) -> dict:
    """--set FIELD=VALUE items -> {field: value}, VALUE parsed as JSON, else kept as text (ValueError naming the
    item when FIELD is not one --set may change; the values are checked by workflows.TrainSettings)."""
    fields = workflows.overridable_fields()
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"expected FIELD=VALUE with FIELD one of {fields}, got {item!r}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def _check_evaluate_args(args, parser) -> None:
    _check_split_args(args, parser)
    args.runs = _named_paths(parser, "--runs", "RUN_DIR", args.runs)
    for name, path in args.runs.items():
        if not path.is_dir():
            parser.error(f"--runs: {name}={path}: no such run folder")
    args.external = _named_paths(parser, "--external", "ROOT", args.external)
    if args.data is None and not args.runs:
        parser.error("--data: required when no --runs are given")


def _named_paths(parser, option: str, what: str, items: list[str]) -> dict[str, Path]:
    """NAME=PATH items -> {name: Path}; parser.error naming the option for a malformed item or a repeated name."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"{option}: expected NAME={what}, got {item!r}")
        if name in out:
            parser.error(f"{option}: the name {name!r} is given twice")
        out[name] = Path(path)
    return out


# ----------------------------------------------------------------------------------------------------------
# Commands: convert the parsed arguments, call the workflow, print its result. A workflow's InvalidArgument
# becomes parser.error naming the option (main).


def cmd_generate(args) -> int:
    print(workflows.generate(args.config, Path(args.out)).line())  # args.config: built by _check_generate_args
    return 0


def cmd_train(args) -> int:
    settings = workflows.TrainSettings(
        data=_spec_from_args(args, args.data),
        out=Path(args.out),
        backbone=args.backbone,
        preset=args.preset,
        overrides=args.overrides,
        task_weighting=args.task_weighting,
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
        threads=args.threads,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    result = workflows.train(settings)
    if result.rank == 0:
        print(json.dumps(result.summary, indent=1))
    return 0


def cmd_evaluate(args) -> int:
    runs = args.runs  # name -> Path, parsed by _check_evaluate_args
    if args.data is not None:
        spec = _spec_from_args(args, args.data)
    else:
        spec = workflows.run_data_spec(next(iter(runs.values())), "runs")
        if args.split:  # evaluate the run on another split of its data
            spec = _spec_from_args(args, spec.root)
    settings = workflows.EvaluateSettings(
        data=spec,
        runs=runs,
        out=Path(args.out),
        baselines=tuple(b for b in args.baselines.split(",") if b),
        n_boot=args.n_boot,
        catboost_iterations=args.catboost_iterations,
        primary=args.primary,
        timeline=not args.no_timeline,
        threads=args.threads,
        external=args.external,
    )
    workflows.evaluate(settings)
    print(f"wrote {args.out}")
    return 0


def cmd_report(args) -> int:
    print(workflows.report(Path(args.eval), Path(args.out), primary=args.primary).text())
    return 0


def cmd_monitor(args) -> int:
    settings = workflows.MonitorSettings(
        run=Path(args.run),
        start=args.start,
        hours=args.hours,
        every=args.every,
        hospitals=tuple(args.hospital) if args.hospital else None,
        threads=args.threads,
        data=Path(args.data) if args.data else None,
    )
    result = workflows.monitor(settings, on_change=lambda c: print(c.line(), flush=True))
    print(f"{len(result.changes)} warning changes ({result.seconds:.1f} s)")
    return 0


def cmd_demo(args) -> int:
    settings = workflows.DemoSettings(
        out=Path(args.out),
        backbones=tuple(b for b in args.backbones.split(",") if b),
        steps=args.steps,
        n_boot=args.n_boot,
        threads=args.threads,
        jobs=args.jobs,
        tiny=args.tiny,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    # the report names the command that made it, as typed
    typed = sys.argv[2:] if sys.argv[1:2] == ["demo"] else []
    command = "hamburg-mamba demo" + "".join(f" {shlex.quote(a)}" for a in typed)
    try:
        workflows.demo(settings, command=command)
    except TrainingFailed as e:
        raise SystemExit(f"demo: {e}") from None
    return 0


def cmd_replicate(args) -> int:
    result = workflows.replicate(
        Path(args.out),
        generator_seeds=tuple(args.generator_seeds),
        training_seeds=tuple(args.training_seeds),
        backbones=tuple(b for b in args.backbones.split(",") if b),
        primary=args.primary,
        jobs=args.jobs,
        tiny=args.tiny,
    )
    print((result.out / "README.md").read_text())
    summary = result.out / "replicates.json"
    print(f"[replicate] {len(result.replicates)} replicates in {result.seconds / 60:.1f} min; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
