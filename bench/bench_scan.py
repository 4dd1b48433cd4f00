"""CPU benchmark of the selective scan: the compiled op against PyTorch peers, in one run.

Reports G state-updates/s (B*D*L*N per second; higher is better) for the forward and the
forward+backward, float32, all the usual Mamba options on (D skip, z gate, delta_bias, softplus), and the
speedup of the op over the best peer measured in the same run. Peers:
  reference   hamburg_mamba.ops.selective_scan_ref (sequential loop over L, the spec)
  hf_loop     the sequential scan of transformers' MambaMixer.slow_forward ((B, D, L, N) layout)
  mambapy     mambapy.pscan.pscan, a Blelloch parallel scan in PyTorch over (B, L, D, N)

    .venv/bin/python bench/bench_scan.py            # the project's three sizes
    .venv/bin/python bench/bench_scan.py --quick    # one small size, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch
import torch.nn.functional as F

import hamburg_mamba
from hamburg_mamba.ops import selective_scan_fn, selective_scan_ref

SIZES = [(2, 1024, 512, 16), (2, 1024, 512, 64), (1, 2048, 4096, 16)]  # (B, D, L, N)
# The hf_loop backward indexes discrete_A[:, :, i, :] per step, and autograd materialises a full-size
# gradient for every such slice: O(L^2) memory traffic (0.001 G/s at L = 512, hours at L = 4096).
HF_LOOP_MAX_BACKWARD_L = 1024


def hf_loop_scan(u, delta, A, B, C, D, z, delta_bias):
    """The scan of transformers' MambaMixer.slow_forward (sequential over L, (B, D, N) state)."""
    delta = F.softplus(delta + delta_bias[:, None])  # (B, D, L)
    discrete_A = torch.exp(A[None, :, None, :] * delta[:, :, :, None])  # (B, D, L, N)
    deltaB_u = delta[:, :, :, None] * B[:, None, :, :].transpose(2, 3) * u[:, :, :, None]  # (B, D, L, N)
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=u.dtype)
    ys = []
    for i in range(u.shape[2]):
        h = discrete_A[:, :, i, :] * h + deltaB_u[:, :, i, :]  # (B, D, N)
        ys.append(torch.matmul(h, C[:, :, i].unsqueeze(-1)))  # (B, D, 1)
    y = torch.stack(ys, dim=-1).squeeze(2)  # (B, D, L)
    y = y + u * D[None, :, None]
    return y * F.silu(z)


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):
    """mambapy's selective scan (mambapy.mamba.MambaBlock.selective_scan) around its parallel pscan."""
    from mambapy.pscan import pscan

    x = u.transpose(1, 2)  # (B, L, D)
    dt = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # (B, L, D)
    deltaA = torch.exp(dt.unsqueeze(-1) * A)  # (B, L, D, N)
    BX = dt.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2) * x.unsqueeze(-1)  # (B, L, D, N)
    hs = pscan(deltaA, BX)  # (B, L, D, N)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3)  # (B, L, D)
    y = y + D * x
    return (y.transpose(1, 2)) * F.silu(z)


def op_scan(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True)


def ref_scan(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True)


IMPLS = {"op": op_scan, "reference": ref_scan, "hf_loop": hf_loop_scan, "mambapy": mambapy_scan}


def make(batch, dim, seqlen, dstate, requires_grad):
    g = torch.Generator().manual_seed(0)
    t = {
        "u": torch.randn(batch, dim, seqlen, generator=g),
        "delta": torch.randn(batch, dim, seqlen, generator=g) * 0.5 - 1.0,
        "A": -torch.rand(dim, dstate, generator=g) * 3 - 0.05,
        "B": torch.randn(batch, dstate, seqlen, generator=g),
        "C": torch.randn(batch, dstate, seqlen, generator=g),
        "D": torch.randn(dim, generator=g),
        "z": torch.randn(batch, dim, seqlen, generator=g),
        "delta_bias": torch.randn(dim, generator=g) * 0.2,
    }
    for v in t.values():
        v.requires_grad_(requires_grad)
    return t


def timed(fn, inputs, backward, reps):
    best = float("inf")
    for _ in range(reps):
        for v in inputs.values():
            v.grad = None
        start = time.perf_counter()
        out = fn(**inputs)
        if backward:
            out.backward(torch.ones_like(out))
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small size (2, 256, 256, 16)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the op (best is kept)")
    parser.add_argument("--peer-reps", type=int, default=2, help="repetitions of each peer")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(IMPLS)[1:], help="peers to leave out")
    args = parser.parse_args()
    sizes = [(2, 256, 256, 16)] if args.quick else SIZES

    print(
        f"# bench_scan: {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU kernels: {hamburg_mamba.cpu_isa()}"
    )
    print("G state-updates/s (B*D*L*N / s), float32, D + z + delta_bias + softplus; best of reps\n")
    print("| B, D, L, N | pass | op | reference | hf_loop | mambapy | op / best peer |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        updates = size[0] * size[1] * size[2] * size[3]
        for backward in (False, True):
            inputs = make(*size, requires_grad=backward)
            rates = {}
            for name, fn in IMPLS.items():
                if name in args.skip:
                    continue
                if name == "hf_loop" and backward and size[2] > HF_LOOP_MAX_BACKWARD_L:
                    continue
                reps = args.reps if name == "op" else args.peer_reps
                with torch.set_grad_enabled(backward):
                    rates[name] = updates / timed(fn, inputs, backward, reps) / 1e9
            best_peer = max(v for k, v in rates.items() if k != "op")
            cells = " | ".join(f"{rates[k]:.3f}" if k in rates else "-" for k in IMPLS)
            label = "fwd+bwd" if backward else "fwd"
            print(f"| {', '.join(map(str, size))} | {label} | {cells} | {rates['op'] / best_peer:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
