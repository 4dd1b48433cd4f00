"""CPU benchmark of the causal conv1d: the compiled op against torch.nn.functional.conv1d, in one run.

The baseline is what a Mamba block does without the op: F.conv1d(x, weight[:, None], bias, padding=W - 1,
groups=D)[..., :L], then F.silu. Reports G elements/s (B*D*L per second; higher is better) for the forward
and the forward+backward, float32, W = 4 with bias and silu, and the speedup of the op over the baseline
measured in the same run (the ratio is the figure to compare across machines).

    .venv/bin/python bench/bench_conv1d.py            # the project's sizes
    .venv/bin/python bench/bench_conv1d.py --quick    # one small size, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch
import torch.nn.functional as F

import hamburg_mamba
from hamburg_mamba.ops import causal_conv1d_fn

SIZES = [(2, 1024, 512), (1, 2048, 4096), (8, 256, 2048)]  # (B, D, L)
QUICK_SIZES = [(2, 256, 512)]
WIDTH = 4


def torch_conv(x, weight, bias):
    """The baseline: depthwise F.conv1d padded on both sides, cut to the causal part, then silu."""
    seqlen = x.shape[-1]
    return F.silu(F.conv1d(x, weight[:, None, :], bias, padding=weight.shape[1] - 1, groups=x.shape[1])[..., :seqlen])


def op_conv(x, weight, bias):
    return causal_conv1d_fn(x, weight, bias, activation="silu")


def time_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def forward_backward(fn, x, weight, bias, dout):
    out = fn(x, weight, bias)
    torch.autograd.grad(out, (x, weight, bias), dout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small size (smoke run)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(
        f"# bench_conv1d {datetime.date.today()} {platform.machine()} torch {torch.__version__} "
        f"threads {torch.get_num_threads()} isa {hamburg_mamba.cpu_isa()} W={WIDTH} float32 bias+silu"
    )
    print("| B, D, L | pass | F.conv1d G/s | op G/s | op / F.conv1d |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for batch, dim, seqlen in QUICK_SIZES if args.quick else SIZES:
        x = torch.randn(batch, dim, seqlen, generator=g).requires_grad_(True)
        weight = (torch.randn(dim, WIDTH, generator=g) * WIDTH**-0.5).requires_grad_(True)
        bias = torch.randn(dim, generator=g).requires_grad_(True)
        dout = torch.randn(batch, dim, seqlen, generator=g)
        elements = batch * dim * seqlen
        for name, run in (
            ("forward", lambda fn: lambda: fn(x.detach(), weight.detach(), bias.detach())),
            ("fwd+bwd", lambda fn: lambda: forward_backward(fn, x, weight, bias, dout)),
        ):
            base = time_ms(run(torch_conv), args.repeats)
            ours = time_ms(run(op_conv), args.repeats)
            print(
                f"| {batch}, {dim}, {seqlen} | {name} | {elements / base / 1e6:.3f} | {elements / ours / 1e6:.3f} "
                f"| {base / ours:.2f}x |"
            )


if __name__ == "__main__":
    main()
