"""Model benchmarks on the CPU, all ratios measured in one run.

1. Training-step throughput (events/s, forward + backward) of HamburgHealthcareSafetyMamba at the seed size
   (d_model 512, 12 layers, d_state 64) and the small preset: with the compiled selective scan, with the
   pure-PyTorch reference scan, and Hugging Face transformers' MambaModel of the same size (its CPU paths:
   plain sequential scan and use_mambapy=True). Also ours under bf16 autocast (matmuls in bfloat16, the scan
   state in float32), for CPUs with AVX512-BF16.
2. Streaming: one `model.step` for a new event (the 257th, 258th, ...) against recomputing the whole 256-event
   pathway with `model(batch)` under no_grad, for 1 pathway and for --stream-pathways pathways in one call; the
   step exact (float32 weights) and with half-precision streaming weights (weights_dtype float16, bfloat16).

    .venv/bin/python bench/bench_model.py                     # everything (several minutes on 2 cores)
    .venv/bin/python bench/bench_model.py --sizes small --json out.json
    .venv/bin/python bench/bench_model.py --only streaming --threads 1   # streaming alone (~40 s)

Each figure is the fastest of --repeats timed runs after one warm-up run (the minimum: on a shared machine the
noise is other processes' time, which only ever adds). Our model's step includes the
clinical encoder and all nine heads with their losses; the peer's includes its mixer stack and a mean-square
loss on the last hidden state, on the same (batch, events) input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time

import torch

from hamburg_mamba.data.batch import PathwayBatch
from hamburg_mamba.data.schema import CATEGORICAL_FIELDS, NUMERIC_FEATURES, TASKS
from hamburg_mamba.data.system_state import DEFAULT_STATUS_COLUMNS, feature_names
from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig

# Table sizes of a realistic Hamburg schema (codes ~ ICD chapters x event kinds; 21 hospitals).
VOCAB_SIZES = {"code": 400, "stage": 8, "hospital": 23, "unit": 40, "triage_group": 7, "arrival_mode": 6}
# Each event's value and age, and the hospital status feed (docs/data.md, "System state"): 22 numeric features.
NUMERIC = NUMERIC_FEATURES + feature_names(DEFAULT_STATUS_COLUMNS)
SIZES = {
    "seed": dict(d_model=512, n_layers=12, d_state=64, d_conv=4, expand=2),
    "small": dict(d_model=64, n_layers=2, d_state=16, d_conv=4, expand=2),
}
# A method whose first timed run exceeds this many seconds is timed once (the peer's plain scan at seed size).
SLOW_RUN_S = 20.0
# Streaming steps take milliseconds: more timed runs for a stable minimum.
STEP_REPEATS = 20
# weights_dtype of each streaming mode.
STREAM_MODES = {"exact": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def model_config(size: str, **changes) -> HamburgMambaConfig:
    """The seed size (the prototype's defaults) or the small preset, with the data sizes above; no dropout
    (the peer has none)."""
    tasks = {
        n: {"kind": t.kind, "level": t.level, "horizon_h": t.horizon_h, "group": t.group} for n, t in TASKS.items()
    }
    data = dict(vocab_sizes=dict(VOCAB_SIZES), num_numeric=len(NUMERIC), tasks=tasks, dropout=0.0, **changes)
    config = HamburgMambaConfig(**data) if size == "seed" else HamburgMambaConfig.small(**data)
    assert {k: getattr(config, k) for k in SIZES[size]} == SIZES[size]
    return config


def random_batch(batch: int, length: int, seed: int = 0) -> PathwayBatch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    F = len(NUMERIC)
    missing = torch.rand(batch, length, F, generator=g) < 0.3
    gaps = -torch.log1p(-torch.rand(batch, length, generator=g))
    gaps[:, 0] = 0
    labels, label_mask = {}, {}
    for name, t in TASKS.items():
        shape = (batch, length) if t.level == "event" else (batch,)
        labels[name] = (torch.rand(shape, generator=g) < 0.3).float() if t.kind == "binary" else torch.rand(shape) * 10
        label_mask[name] = torch.ones(shape, dtype=torch.bool)
    return PathwayBatch(
        categorical={f: torch.randint(2, VOCAB_SIZES[f], (batch, length), generator=g) for f in CATEGORICAL_FIELDS},
        numeric=torch.randn(batch, length, F, generator=g).masked_fill(missing, 0.0),
        numeric_missing=missing,
        time_since_prev_h=gaps,
        time_since_start_h=gaps.cumsum(1),
        hour_of_day=torch.rand(batch, length) * 24,
        day_of_week=torch.randint(0, 7, (batch, length), generator=g),
        mask=mask,
        lengths=torch.full((batch,), length, dtype=torch.int64),
        labels=labels,
        label_mask=label_mask,
        event_hospital_id=torch.full((batch, length), 2),
        subject_id=torch.arange(batch),
        pathway_id=torch.arange(batch),
    )


def timed(fn, repeats: int) -> float:
    """Fastest of `repeats` runs after one warm-up, in seconds (the warm-up alone if it is slow)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > SLOW_RUN_S:
        return first
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs)


def ours_train_step(size: str, batch: PathwayBatch, reference: bool, bf16: bool = False):
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(model_config(size, use_reference_scan=reference))
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(batch).loss
        loss.backward()

    return step


def peer_train_step(size: str, batch_size: int, length: int, use_mambapy: bool):
    from transformers import MambaConfig, MambaModel

    s = SIZES[size]
    config = MambaConfig(
        vocab_size=VOCAB_SIZES["code"],
        hidden_size=s["d_model"],
        num_hidden_layers=s["n_layers"],
        state_size=s["d_state"],
        conv_kernel=s["d_conv"],
        expand=s["expand"],
        time_step_rank=-(-s["d_model"] // 16),
        use_mambapy=use_mambapy,
    )
    torch.manual_seed(0)
    model = MambaModel(config).train()
    inputs = torch.randn(batch_size, length, s["d_model"])

    def step():
        model.zero_grad(set_to_none=True)
        model(inputs_embeds=inputs).last_hidden_state.pow(2).mean().backward()

    return step


def bench_training(sizes, batch_size: int, length: int, repeats: int, skip_peer: bool) -> list[dict]:
    rows = []
    batch = random_batch(batch_size, length)
    events = batch_size * length
    for size in sizes:
        methods = [
            ("ours, compiled scan", lambda: ours_train_step(size, batch, reference=False)),
            ("ours, compiled scan, bf16 autocast", lambda: ours_train_step(size, batch, False, bf16=True)),
            ("ours, reference scan", lambda: ours_train_step(size, batch, reference=True)),
        ]
        if not skip_peer:
            methods += [
                ("transformers MambaModel, plain", lambda: peer_train_step(size, batch_size, length, False)),
                ("transformers MambaModel, mambapy", lambda: peer_train_step(size, batch_size, length, True)),
            ]
        for name, make in methods:
            seconds = timed(make(), repeats)
            rows.append(
                {
                    "size": size,
                    "method": name,
                    "batch": batch_size,
                    "events": length,
                    "seconds_per_step": seconds,
                    "events_per_s": events / seconds,
                }
            )
            print(
                f"  train {size:5s} {name:34s} {seconds * 1e3:10.1f} ms/step {events / seconds:10.1f} events/s",
                flush=True,
            )
    return rows


def bench_streaming(sizes, length: int, pathways: int, repeats: int) -> list[dict]:
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = HamburgHealthcareSafetyMamba(model_config(size)).eval()
        with torch.no_grad():
            state = model(random_batch(1, length, seed=1), return_cache=True).cache  # after event L
        for n in (1, pathways):
            history, event = random_batch(n, length, seed=1), random_batch(n, 1, seed=2)
            # Every pathway starts from pathway 0's state (a step's cost does not depend on the values), which
            # saves a second forward over n pathways.
            cache = [{k: v.expand(n, *v.shape[1:]).contiguous() for k, v in layer.items()} for layer in state]
            with torch.no_grad():
                full = timed(lambda: model(history), repeats)
            row = {
                "size": size,
                "pathways": n,
                "events": length,
                "threads": torch.get_num_threads(),
                "full_recompute_s": full,
            }
            for mode, dtype in STREAM_MODES.items():
                # Events L + 1, L + 2, ... of the same pathways: a Mamba step costs the same at every position.
                live = [{k: v.clone() for k, v in layer.items()} for layer in cache]
                step = timed(lambda: model.step(event, live, weights_dtype=dtype), STEP_REPEATS)
                row[f"step_{mode}_s"], row[f"ratio_{mode}"] = step, full / step
            rows.append(row)
            steps = " | ".join(
                f"{m} {row[f'step_{m}_s'] * 1e3:.3f} ms ({row[f'ratio_{m}']:.0f}x)" for m in STREAM_MODES
            )
            print(
                f"  stream {size:5s} pathways={n:4d} L={length} threads={row['threads']}: "
                f"full recompute {full * 1e3:.1f} ms | {steps}",
                flush=True,
            )
    return rows


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    from hamburg_mamba.ops import cpu_isa

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa": cpu_isa(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg()[0],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["seed", "small"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--events", type=int, default=128)
    parser.add_argument("--stream-events", type=int, default=256)
    parser.add_argument("--stream-pathways", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-peer", action="store_true", help="without transformers' MambaModel")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--only", choices=["training", "streaming"], help="run one of the two parts")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    info = machine()
    print(json.dumps(info))
    training = streaming = []
    if args.only != "streaming":
        training = bench_training(args.sizes, args.batch, args.events, args.repeats, args.skip_peer)
    if args.only != "training":
        streaming = bench_streaming(args.sizes, args.stream_events, args.stream_pathways, args.repeats)
    info["load_avg_end"] = os.getloadavg()[0]

    if training:
        print("\n| size | method | events/s (fwd+bwd) | vs best peer |")
        print("|---|---|---|---|")
    for size in args.sizes:
        rows = [r for r in training if r["size"] == size]
        peers = [r["events_per_s"] for r in rows if r["method"].startswith("transformers")]
        best = max(peers) if peers else None
        for r in rows:
            ratio = f"{r['events_per_s'] / best:.1f}x" if best else "-"
            print(f"| {size} | {r['method']} | {r['events_per_s']:.1f} | {ratio} |")
    if streaming:
        print(
            f"\n| size | pathways | threads | full recompute (L={args.stream_events}) | "
            + " | ".join(f"step, {m}" for m in STREAM_MODES)
            + " |"
        )
        print("|---|---|---|---|" + "---|" * len(STREAM_MODES))
    for r in streaming:
        steps = " | ".join(f"{r[f'step_{m}_s'] * 1e3:.2f} ms ({r[f'ratio_{m}']:.0f}x)" for m in STREAM_MODES)
        print(f"| {r['size']} | {r['pathways']} | {r['threads']} | {r['full_recompute_s'] * 1e3:.1f} ms | {steps} |")
    print(f"\nload average: {info['load_avg_start']:.1f} at start, {info['load_avg_end']:.1f} at end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "training": training, "streaming": streaming}, f, indent=1)


if __name__ == "__main__":
    main()
