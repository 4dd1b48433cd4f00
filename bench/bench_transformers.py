"""transformers' MambaForCausalLM on the CPU with and without hamburg_mamba's ops, measured in one run.

1. Training step (forward + backward of the language-model loss): transformers' own CPU path (its sequential
   PyTorch scan) against `hamburg_mamba_kernels()` (the fused mixer, `mamba_inner_fn`).
2. Greedy generation with the cache (`generate`): prompt through the conv and scan, then one cached step per
   token; tokens/s over the new tokens, against transformers' own path.

    .venv/bin/python bench/bench_transformers.py                     # small size, about a minute on 2 cores
    .venv/bin/python bench/bench_transformers.py --sizes small seed --json out.json

Sizes as bench_model.py (small: d_model 64, 2 layers, d_state 16; seed: d_model 512, 12 layers, d_state 64).
Times are the fastest of --repeats runs after one warm-up (bench_model.timed).
"""

from __future__ import annotations

import argparse
import contextlib
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


def bench_size(size: str, batch: int, events: int, prompt: int, new_tokens: int, repeats: int) -> dict:
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
    for tag in ("transformers", "hamburg_mamba"):
        with hamburg_mamba_kernels() if tag == "hamburg_mamba" else contextlib.nullcontext():
            model.train()
            row[f"{tag}_train_events_per_s"] = batch * events / timed(train_step, repeats)
            model.eval()
            with torch.no_grad():
                row[f"{tag}_generate_tokens_per_s"] = batch * new_tokens / timed(generate, repeats)
    row["train_ratio"] = row["hamburg_mamba_train_events_per_s"] / row["transformers_train_events_per_s"]
    row["generate_ratio"] = row["hamburg_mamba_generate_tokens_per_s"] / row["transformers_generate_tokens_per_s"]
    return row


def report(row: dict) -> None:
    print(
        f"{row['size']}: training batch {row['batch']} x {row['events']} tokens; generation batch {row['batch']},"
        f" prompt {row['prompt']}, {row['new_tokens']} new tokens (greedy, cache)\n"
        f"  training    transformers {row['transformers_train_events_per_s']:10.1f} tokens/s   hamburg_mamba"
        f" {row['hamburg_mamba_train_events_per_s']:10.1f} tokens/s   ratio {row['train_ratio']:.2f}x\n"
        f"  generation  transformers {row['transformers_generate_tokens_per_s']:10.1f} tokens/s   hamburg_mamba"
        f" {row['hamburg_mamba_generate_tokens_per_s']:10.1f} tokens/s   ratio {row['generate_ratio']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--events", type=int, default=128, help="tokens per training sequence")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        rows.append(bench_size(size, args.batch, args.events, args.prompt, args.new_tokens, args.repeats))
        report(rows[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
