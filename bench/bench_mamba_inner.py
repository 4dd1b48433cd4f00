"""The fused Mamba mixer (mamba_inner_fn) in training, on the CPU: with against without, measured in one run.

1. Training-step throughput (events/s, forward + backward, all heads and losses) of HamburgHealthcareSafetyMamba
   with every SelectiveSSMLayer on its fused path (`use_fused_mixer = True`, the default) and off.
2. Activation memory per layer: the bytes autograd keeps for the backward during one forward, summed over the
   distinct storages that `torch.autograd.graph.saved_tensors_hooks` sees (parameters excluded), for one
   SelectiveSSMLayer (the mixer), one HamburgMambaBlock (RMSNorm + mixer + residual) and the whole model.

    .venv/bin/python bench/bench_mamba_inner.py                    # small preset (HamburgMambaConfig.small)
    .venv/bin/python bench/bench_mamba_inner.py --sizes small seed --json out.json

Times are the fastest of --repeats runs after one warm-up, the two paths taking turns (`alternating_min`).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_model import SIZES, model_config, random_batch

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba
from hamburg_mamba.nn.mamba import HamburgMambaBlock, SelectiveSSMLayer, event_clock


def set_fused(model: torch.nn.Module, fused: bool) -> None:
    for module in model.modules():
        if isinstance(module, SelectiveSSMLayer):
            module.use_fused_mixer = fused


def saved_activation_bytes(module: torch.nn.Module, run) -> int:
    """Bytes of the distinct non-parameter storages saved for the backward while `run()` builds the graph."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())


def bench_size(size: str, batch_size: int, length: int, repeats: int) -> dict:
    batch = random_batch(batch_size, length)
    torch.manual_seed(0)
    model = HamburgHealthcareSafetyMamba(model_config(size)).train()
    blocks = [m for m in model.modules() if isinstance(m, HamburgMambaBlock)]
    x = torch.randn(batch_size, length, model_config(size).d_model, requires_grad=True)
    dt_scale = event_clock(batch.time_since_prev_h, batch.mask, 1.0)
    row = {"size": size, "batch": batch_size, "events": length, "mamba_blocks": len(blocks)}

    def step(fused: bool):
        set_fused(model, fused)
        model.zero_grad(set_to_none=True)
        model(batch).loss.backward()

    seconds = alternating_min({"unfused": lambda: step(False), "fused": lambda: step(True)}, repeats)
    for fused in (False, True):
        set_fused(model, fused)
        tag = "fused" if fused else "unfused"
        row[f"{tag}_events_per_s"] = batch_size * length / seconds[tag]
        row[f"{tag}_mixer_bytes"] = saved_activation_bytes(blocks[0], lambda: blocks[0].mixer(x, dt_scale=dt_scale))
        row[f"{tag}_block_bytes"] = saved_activation_bytes(blocks[0], lambda: blocks[0](x, dt_scale=dt_scale))
        row[f"{tag}_model_bytes"] = saved_activation_bytes(model, lambda: model(batch).loss)
    row["speedup"] = row["fused_events_per_s"] / row["unfused_events_per_s"]
    for part in ("mixer", "block", "model"):
        row[f"{part}_memory_ratio"] = row[f"fused_{part}_bytes"] / row[f"unfused_{part}_bytes"]
    return row


def alternating_min(methods: dict, repeats: int) -> dict:
    """Fastest of `repeats` runs of each method after one warm-up, the methods taking turns, so that load from
    other processes on a shared machine falls on all of them alike."""
    for fn in methods.values():
        fn()
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(row: dict) -> None:
    print(
        f"{row['size']}: batch {row['batch']} x {row['events']} events, {row['mamba_blocks']} Mamba blocks\n"
        f"  training  unfused {row['unfused_events_per_s']:9.1f} events/s   fused {row['fused_events_per_s']:9.1f}"
        f" events/s   speedup {row['speedup']:.2f}x"
    )
    for part in ("mixer", "block", "model"):
        print(
            f"  saved for backward, {part:5s}: unfused {row[f'unfused_{part}_bytes'] / 2**20:8.2f} MiB"
            f"   fused {row[f'fused_{part}_bytes'] / 2**20:8.2f} MiB   ratio {row[f'{part}_memory_ratio']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--events", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        rows.append(bench_size(size, args.batch, args.events, args.repeats))
        report(rows[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
