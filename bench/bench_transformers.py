"""transformers' MambaForCausalLM on the CPU with and without hamburg_mamba's ops, measured in one run.

1. Training step (forward + backward of the language-model loss): transformers' CPU paths (its sequential
   PyTorch scan, "plain", and its parallel `use_mambapy` scan) against `hamburg_mamba_kernels()` (the fused
   mixer, `mamba_inner_fn`).
2. Greedy generation with the cache (`generate`): prompt through the conv and scan, then one cached step per
   token; new tokens/s (prompt time included) against transformers' paths, for ours with the fused decode
   step (`mamba_block_step` per block, the default) and without it (transformers' block over our
   `causal_conv1d_update` and `selective_state_update`).
The ratio is taken against the fastest transformers path of the same run.

    .venv/bin/python bench/bench_transformers.py                     # small size, about a minute on 2 cores
    .venv/bin/python bench/bench_transformers.py --sizes seed --train-baselines mambapy --json out.json

Sizes as bench_model.py (small: d_model 64, 2 layers, d_state 16; seed: d_model 512, 12 layers, d_state 64).
At the seed size the plain path trains at about 2 tokens/s (minutes per step), hence --train-baselines.
Times are the fastest of --repeats runs after one warm-up (bench_model.timed).
"""

from __future__ import annotations

import argparse
import json

import torch
from bench_model import SIZES, timed
from transformers import MambaConfig, MambaForCausalLM

from hamburg_mamba.integrations.transformers import hamburg_mamba_kernels

VOCAB = 400


def make_model(size: str) -> MambaForCausalLM:
    s = SIZES[size]
    config = MambaConfig(
        vocab_size=VOCAB,
        hidden_size=s["d_model"],
        num_hidden_layers=s["n_layers"],
        state_size=s["d_state"],
        conv_kernel=s["d_conv"],
        expand=s["expand"],
        time_step_rank=-(-s["d_model"] // 16),
        use_cache=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    return MambaForCausalLM(config)


BASELINES = ("plain", "mambapy")


def set_mambapy(model: MambaForCausalLM, on: bool) -> None:
    for module in model.modules():
        if hasattr(module, "use_mambapy"):
            module.use_mambapy = on


def bench_size(size: str, args) -> dict:
    batch, events, prompt, new_tokens, repeats = args.batch, args.events, args.prompt, args.new_tokens, args.repeats
    model = make_model(size)
    g = torch.Generator().manual_seed(0)
    train_ids = torch.randint(1, VOCAB, (batch, events), generator=g)
    prompt_ids = torch.randint(1, VOCAB, (batch, prompt), generator=g)

    def train_step():
        model.zero_grad(set_to_none=True)
        model(train_ids, labels=train_ids, use_cache=False).loss.backward()

    def generate():
        out = model.generate(prompt_ids, max_new_tokens=new_tokens, do_sample=False, use_cache=True)
        assert out.shape[1] == prompt + new_tokens

    row = {"size": size, "batch": batch, "events": events, "prompt": prompt, "new_tokens": new_tokens}
    for baseline in BASELINES:
        set_mambapy(model, baseline == "mambapy")
        if baseline in args.train_baselines:
            model.train()
            row[f"{baseline}_train_events_per_s"] = batch * events / timed(train_step, repeats)
        if baseline in args.generate_baselines:
            model.eval()
            with torch.no_grad():
                row[f"{baseline}_generate_tokens_per_s"] = batch * new_tokens / timed(generate, repeats)
    set_mambapy(model, False)
    for fused_decode in (False, True):
        with hamburg_mamba_kernels(fused_decode=fused_decode):
            if fused_decode:
                model.train()
                row["hamburg_mamba_train_events_per_s"] = batch * events / timed(train_step, repeats)
            model.eval()
            with torch.no_grad():
                tag = "hamburg_mamba" if fused_decode else "hamburg_mamba_unfused_decode"
                row[f"{tag}_generate_tokens_per_s"] = batch * new_tokens / timed(generate, repeats)
    for measure in ("train_events", "generate_tokens"):
        measured = [(row[f"{b}_{measure}_per_s"], b) for b in BASELINES if f"{b}_{measure}_per_s" in row]
        if measured:
            best, row[f"best_{measure}_baseline"] = max(measured)
            row[f"{measure}_ratio"] = row[f"hamburg_mamba_{measure}_per_s"] / best
    row["unfused_decode_ratio"] = row["hamburg_mamba_unfused_decode_generate_tokens_per_s"] / max(
        row[f"{b}_generate_tokens_per_s"] for b in BASELINES if f"{b}_generate_tokens_per_s" in row
    )
    return row


def report(row: dict) -> None:
    lines = [
        f"{row['size']}: training batch {row['batch']} x {row['events']} tokens; generation batch {row['batch']},"
        f" prompt {row['prompt']}, {row['new_tokens']} new tokens (greedy, cache)"
    ]
    for measure, unit in (("train_events", "training tokens/s"), ("generate_tokens", "generation new tokens/s")):
        for key, value in row.items():
            if key.endswith(f"_{measure}_per_s"):
                lines.append(f"  {unit:24s} {key.removesuffix(f'_{measure}_per_s'):30s} {value:10.1f}")
        if f"{measure}_ratio" in row:
            best = row[f"best_{measure}_baseline"]
            lines.append(f"  {unit:24s} ratio to transformers' best ({best}): {row[f'{measure}_ratio']:.2f}x")
    lines.append(f"  generation without the fused decode step: {row['unfused_decode_ratio']:.2f}x")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--events", type=int, default=128, help="tokens per training sequence")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-baselines", nargs="*", default=list(BASELINES), choices=BASELINES)
    parser.add_argument("--generate-baselines", nargs="+", default=list(BASELINES), choices=BASELINES)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        rows.append(bench_size(size, args))
        report(rows[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
