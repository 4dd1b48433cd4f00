"""hamburg-mamba: generate data, train, evaluate, report, replay the monitor, or run the whole demo.

    hamburg-mamba demo                          everything on the default synthetic Hamburg (2 CPU cores, < 15 min)
    hamburg-mamba generate --out runs/data
    hamburg-mamba train --data runs/data --out runs/mamba --backbone mamba
    torchrun --nproc_per_node 2 -m hamburg_mamba.cli train ...     data-parallel (gloo on CPU, nccl on GPU)
    hamburg-mamba evaluate --runs mamba=runs/mamba gru=runs/gru --out runs/eval
    hamburg-mamba report --eval runs/eval --out runs/report
    hamburg-mamba monitor --run runs/mamba --start "2023-11-20 06:00" --hours 24

See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
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
DEMO_LR = 5e-3
DEMO_STEPS = {"mamba": 2000, "hybrid": 2000, "gru": 2000, "transformer": 2000}
DEMO_BATCH = 16
DEMO_BOOT = 100
DEMO_CATBOOST_ITERATIONS = 300
TINY_STEPS = 6


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hamburg-mamba", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(title="commands")

    g = sub.add_parser("generate", help="write the synthetic Hamburg as a MEDS folder")
    g.add_argument("--out", required=True, help="MEDS root folder to write")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--days", type=int, default=None, help="simulated days (default: the demo's 122)")
    g.add_argument("--scale", type=float, default=None, help="fraction of the 2016 ED volume (default 0.1)")
    g.add_argument("--tiny", action="store_true", help="the two-week, three-hospital test city (seconds)")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", help="train one model (resumes from the run folder's last checkpoint)")
    t.add_argument("--data", required=True, help="MEDS root folder")
    t.add_argument("--out", required=True, help="run folder (weights, config, schema, checkpoints)")
    t.add_argument("--backbone", choices=BACKBONES, default="mamba")
    t.add_argument("--preset", default="small", help="model size: tiny, small, demo, base (hamburg_mamba.train)")
    t.add_argument("--task-weighting", choices=("baseline", "none"), default="baseline",
                   help="per-task loss scale: divide by the best constant prediction's loss (default) or none")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a HamburgMambaConfig field of the preset, e.g. --set d_model=96 --set n_layers=4 "
                        "(VALUE parsed as JSON, else a string); repeatable")
    _split_args(t)
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=32, help="pathways per step over all processes")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup-steps", type=int, default=50)
    t.add_argument("--eval-every", type=int, default=None, help="steps between tuning evaluations (default: epoch)")
    t.add_argument("--eval-max-pathways", type=int, default=None, help="tuning pathways used for early stopping")
    t.add_argument("--patience", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="compare trained runs with CatBoost, NEWS2 and the oracle on held-out data")
    e.add_argument("--runs", nargs="*", default=[], help="NAME=RUN_DIR pairs (e.g. mamba=runs/mamba)")
    e.add_argument("--out", required=True, help="evaluation folder")
    e.add_argument("--data", default=None, help="MEDS root (default: the first run's data_spec.json)")
    _split_args(e, defaults=None)
    e.add_argument("--baselines", default="catboost,news2,oracle", help="comma-separated subset")
    e.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for the 95 %% intervals")
    e.add_argument("--catboost-iterations", type=int, default=400)
    e.add_argument("--primary", default=None, help="model drawn on the closure timeline (default: first run)")
    e.add_argument("--no-timeline", action="store_true", help="skip the whole-window closure timeline")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("report", help="Markdown summary and PNG plots from an evaluation folder")
    r.add_argument("--eval", required=True, help="evaluation folder")
    r.add_argument("--out", required=True, help="report folder")
    r.add_argument("--primary", default="mamba", help="model the goal check is about")
    r.set_defaults(func=cmd_report)

    m = sub.add_parser("monitor", help="replay a period event by event and print the warnings as they appeared")
    m.add_argument("--run", required=True, help="trained run folder")
    m.add_argument("--data", default=None, help="MEDS root (default: the run's data_spec.json)")
    m.add_argument("--start", required=True, help='start of the window, e.g. "2023-11-20 06:00"')
    m.add_argument("--hours", type=float, default=24.0)
    m.add_argument("--every", type=float, default=1.0, help="hours between warning checks")
    m.add_argument("--hospital", action="append", default=None, help="restrict to this hospital (repeatable)")
    m.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    m.set_defaults(func=cmd_monitor)

    d = sub.add_parser("demo", help="generate, train every backbone, evaluate, report; prints the summary table")
    d.add_argument("--out", default="runs/demo", help="folder for data, runs, evaluation and report")
    d.add_argument("--backbones", default=",".join(DEMO_BACKBONES), help="comma-separated backbones to train")
    d.add_argument("--steps", type=int, default=None, help="optimizer steps per backbone (default: DEMO_STEPS)")
    d.add_argument("--n-boot", type=int, default=DEMO_BOOT)
    d.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CatBoost always uses 2)")
    d.add_argument("--jobs", type=int, default=None,
                   help="backbones trained at once, each in its own process with --threads threads (default: CPU "
                        "cores // threads); every run is seeded and single-process, so the results do not change")
    d.add_argument("--tiny", action="store_true", help="the two-week test city and a few steps (about a minute)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def _split_args(p, defaults="temporal"):
    p.add_argument("--split", choices=("temporal", "file", "subject", "crisis"), default=defaults,
                   help="how subjects are split (default: temporal, flu wave held out)")
    p.add_argument("--cutoffs", nargs=2, default=None, metavar=("TUNING_FROM", "HELD_OUT_FROM"),
                   help="temporal split cut-offs (default 2023-10-20 2023-11-06)")
    p.add_argument("--holdout-window", nargs=2, default=None, metavar=("FROM", "TO"), help="crisis split window")


def _spec_from_args(args, root):
    from hamburg_mamba.train.data_setup import DEMO_CUTOFFS, DataSpec

    return DataSpec(root=str(root), split=args.split or "temporal",
                    temporal_cutoffs=tuple(args.cutoffs) if args.cutoffs else DEMO_CUTOFFS,
                    holdout_window=tuple(args.holdout_window) if args.holdout_window else None)


# ----------------------------------------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from hamburg_mamba.data import SyntheticConfig, generate_synthetic, write_synthetic
    from hamburg_mamba.train.data_setup import tiny_synthetic_config

    t0 = time.perf_counter()
    cfg = tiny_synthetic_config(args.seed) if args.tiny else SyntheticConfig(seed=args.seed)
    if args.days is not None:
        cfg.days = args.days
    if args.scale is not None:
        cfg.scale = args.scale
    data = generate_synthetic(cfg)
    root = write_synthetic(args.out, data)
    print(f"wrote {root}: {len(data.events):,} events, {len(data.pathways):,} pathways, "
          f"{int(data.hospital_hourly['closure_start'].sum())} closures ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_train(args) -> int:
    import torch
    import torch.distributed as dist

    from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

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
    config = build_model_config(data, backbone=args.backbone, preset=args.preset, **_overrides(args.overrides))
    tc = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                     warmup_steps=args.warmup_steps, eval_every=args.eval_every,
                     eval_max_pathways=args.eval_max_pathways, patience=args.patience, seed=args.seed,
                     progress=not args.no_progress, num_threads=args.threads, task_weighting=args.task_weighting)
    trainer = Trainer(build_model(config, seed=args.seed), data, tc, args.out, device=device,
                      data_spec=spec.as_dict())
    summary = trainer.fit(resume=not args.no_resume)
    if rank == 0:
        print(json.dumps(summary, indent=1))
    if world > 1:
        dist.destroy_process_group()
    return 0


def _overrides(items: list[str]) -> dict:
    """--set FIELD=VALUE items -> {field: value}; unknown fields are refused by name."""
    import dataclasses

    from hamburg_mamba.nn import HamburgMambaConfig

    fields = {f.name for f in dataclasses.fields(HamburgMambaConfig)}
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set: expected FIELD=VALUE with FIELD a HamburgMambaConfig field, got {item!r}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def cmd_evaluate(args) -> int:
    from hamburg_mamba.eval.baselines import CatBoostSettings
    from hamburg_mamba.eval.experiment import run_comparison
    from hamburg_mamba.train.data_setup import DataSpec

    runs = {}
    for item in args.runs:
        if "=" not in item:
            raise SystemExit(f"--runs: expected NAME=RUN_DIR, got {item!r}")
        name, path = item.split("=", 1)
        runs[name] = path
    if args.data is None and not runs:
        raise SystemExit("evaluate: pass --data when no --runs are given")
    if args.data is None:
        spec = DataSpec.from_dict(json.loads((Path(next(iter(runs.values()))) / "data_spec.json").read_text()))
    else:
        spec = _spec_from_args(args, args.data)
    baselines = tuple(b for b in args.baselines.split(",") if b)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_comparison(spec, runs, args.out, baselines=baselines, n_boot=args.n_boot,
                   catboost=CatBoostSettings(iterations=args.catboost_iterations), primary=args.primary,
                   timeline=not args.no_timeline)
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
    from hamburg_mamba.data import DatasetSchema
    from hamburg_mamba.eval.monitor import replay
    from hamburg_mamba.nn import HamburgHealthcareSafetyMamba
    from hamburg_mamba.train.data_setup import DataSpec

    import torch

    torch.set_num_threads(args.threads)
    spec = DataSpec.from_dict(json.loads((Path(args.run) / "data_spec.json").read_text()))
    if args.data:
        spec.root = args.data
    data = spec.connect(schema=DatasetSchema.load(Path(args.run) / "schema.json"))
    model = HamburgHealthcareSafetyMamba.from_pretrained(args.run)
    t0 = time.perf_counter()
    print(f"replaying {args.hours:g} h from {args.start} (levels: green < yellow < orange < red; "
          f"thresholds {model.config.warning_thresholds} on {model.config.breakdown_task})")
    changes = replay(model, data, args.start, args.hours, hospitals=args.hospital, every_h=args.every,
                     on_change=lambda c: print(c.line(), flush=True))
    print(f"{len(changes)} warning changes ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_demo(args) -> int:
    t_start = time.perf_counter()
    out = Path(args.out)
    data_root = out / "data"
    backbones = [b for b in args.backbones.split(",") if b]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        raise SystemExit(f"--backbones: unknown {unknown}; choose from {BACKBONES}")
    timings = {}

    def stamp(name, t):
        timings[name] = time.perf_counter() - t
        print(f"[demo] {name}: {timings[name]:.1f} s (total {time.perf_counter() - t_start:.1f} s)", flush=True)

    t = time.perf_counter()
    gen = ["generate", "--out", str(data_root)] + (["--tiny"] if args.tiny else [])
    if not (data_root / "metadata" / "dataset.json").exists():
        main(gen)
    stamp("generate", t)
    split = ["--split", "temporal"] + (["--cutoffs", *_tiny_cutoffs()] if args.tiny else [])
    commands = {}
    for bb in backbones:
        steps = args.steps or (TINY_STEPS if args.tiny else DEMO_STEPS.get(bb, 200))
        commands[bb] = ["train", "--data", str(data_root), "--out", str(out / "runs" / bb), "--backbone", bb,
                        "--preset", "tiny" if args.tiny else "demo", "--max-steps", str(steps), "--epochs",
                        "1" if args.tiny else str(DEMO_EPOCHS),
                        "--batch-size", str(DEMO_BATCH), "--lr", str(DEMO_LR),
                        "--warmup-steps", str(max(steps // 10, 1)),
                        "--eval-every", str(max(steps // 3, 1)), "--eval-max-pathways", "300", "--threads",
                        str(args.threads), "--device", "cpu", *split]
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"--jobs: expected >= 1, got {args.jobs}")
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
    evaluate = ["evaluate", "--runs", *runs, "--out", str(out / "eval"), "--n-boot",
                str(5 if args.tiny else args.n_boot), "--catboost-iterations",
                str(30 if args.tiny else DEMO_CATBOOST_ITERATIONS), "--threads", str(args.threads)]
    if not runs:
        evaluate += ["--data", str(data_root), *split]
    main(evaluate)
    stamp("evaluate", t)
    t = time.perf_counter()
    command = "hamburg-mamba demo" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[2:] if sys.argv[1:2] == [
        "demo"] else []))
    r = build_parser().parse_args(["report", "--eval", str(out / "eval"), "--out", str(out / "report"),
                                   "--primary", backbones[0] if backbones else "catboost"])
    cmd_report(r, command=command)
    stamp("report", t)
    total = time.perf_counter() - t_start
    (out / "timings.json").write_text(json.dumps({**timings, "total": total}, indent=1))
    print(f"\n[demo] finished in {total / 60:.1f} min; report in {out / 'report' / 'README.md'}")
    return 0


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
            rc = subprocess.run([sys.executable, "-m", "hamburg_mamba.cli", *command, "--no-progress"], stdout=f,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = log.read_text()[-3000:]
            raise SystemExit(f"demo: training {bb} failed (exit {rc}); end of {log}:\n{tail}")
        stamp(f"train {bb}", t)

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(run, bb, command) for bb, command in commands.items()]:
            future.result()


def _tiny_cutoffs():
    from hamburg_mamba.train.data_setup import TINY_CUTOFFS

    return list(TINY_CUTOFFS)


if __name__ == "__main__":
    sys.exit(main())
