"""GPU benchmark of the selective-scan CUDA kernels against their floors, from one run.

Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C).

For each size it times (CUDA events, median of repeats) the forward op without checkpoints (inference),
the forward with checkpoints (training), and the backward op, each as a user calls it (host checks,
allocation, zero-initialised gradient buffers and dtype conversions included), and compares with
    floor = max(memory floor, exp floor)
    memory floor = bytes the op must read and write once / measured device-to-device copy bandwidth
    exp floor    = B*D*L*N exponentials / the GPU's exp2 throughput
The copy bandwidth comes from a 1 GiB tensor copy (read + write counted). The exp2 throughput comes from a
Triton micro-kernel when Triton is importable, else from the hardware figure of 16 exp2 per clock per SM
(CUDA C++ Programming Guide, arithmetic instruction throughput, compute capability 8.x/9.0) times the SM
count and the maximum SM clock reported by nvidia-smi. The script says which it used.

The project's target: forward and backward at bf16 (8, 2048, 2048, 16) within 3x of their floor.
Run: python bench/bench_scan_gpu.py [--reps 20]. Exits 0 with a message when no GPU is present.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shutil
import subprocess
import sys

import torch

# (B, D, L, N): the project's GPU target first, then its CPU benchmark sizes.
SIZES = [(8, 2048, 2048, 16), (2, 1024, 512, 16), (2, 1024, 512, 64), (1, 2048, 4096, 16)]
DTYPES = [torch.bfloat16, torch.float32]
CHECKPOINT_INTERVAL = 64
# Hardware exp2 (MUFU.EX2) results per clock per SM for compute capability 8.x and 9.0.
EXP2_PER_CLOCK_PER_SM = 16

try:  # Triton ships with CUDA builds of torch; without it the exp2 rate comes from the hardware figure
    import triton
    import triton.language as tl
except ImportError:
    triton = None

if triton is not None:

    @triton.jit
    def _exp2_chains(x_ptr, out_ptr, iters, BLOCK: tl.constexpr):
        """Four independent exp2 chains per element, values kept in [-0.5, 0]: exp2-throughput bound."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x0 = tl.load(x_ptr + offs)
        x1 = x0 - 0.1
        x2 = x0 - 0.2
        x3 = x0 - 0.3
        for _ in range(iters):
            x0 = tl.exp2(x0) * -0.5
            x1 = tl.exp2(x1) * -0.5
            x2 = tl.exp2(x2) * -0.5
            x3 = tl.exp2(x3) * -0.5
        tl.store(out_ptr + offs, x0 + x1 + x2 + x3)


def time_ms(fn, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    n = 1 << 28  # 1 GiB of float32
    src = torch.empty(n, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), reps=10)
    return 2 * n * 4 / (ms * 1e-3)


def exp2_throughput() -> tuple[float, str]:
    """exp2 results per second, measured with Triton when available, else from the hardware figure."""
    if triton is not None:
        block, iters = 1024, 4096
        programs = torch.cuda.get_device_properties(0).multi_processor_count * 16
        x = -torch.rand(programs * block, device="cuda") * 0.5
        out = torch.empty_like(x)
        ms = time_ms(lambda: _exp2_chains[(programs,)](x, out, iters, BLOCK=block), reps=5)
        return programs * block * iters * 4 / (ms * 1e-3), "measured (Triton tl.exp2 micro-kernel)"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    clock_hz = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits", "-i", "0"]
        out = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
        if out.isdigit():
            clock_hz = int(out) * 1e6
    if clock_hz is None:
        raise SystemExit("cannot estimate the exp2 throughput: neither Triton nor nvidia-smi is available")
    return sms * EXP2_PER_CLOCK_PER_SM * clock_hz, (
        f"hardware figure: {EXP2_PER_CLOCK_PER_SM}/clock/SM x {sms} SMs x {clock_hz / 1e9:.2f} GHz"
    )


def make_inputs(batch, dim, seqlen, dstate, dtype):
    """Mamba's training configuration: B, C (B, N, L), D, z, delta_bias, softplus; no dt_scale."""
    dev = "cuda"
    u = torch.randn(batch, dim, seqlen, device=dev, dtype=dtype)  # (B, D, L)
    delta = (torch.randn(batch, dim, seqlen, device=dev) * 0.5 - 1).to(dtype)
    A = -torch.rand(dim, dstate, device=dev) * 2 - 0.1  # (D, N)
    Bm = torch.randn(batch, dstate, seqlen, device=dev, dtype=dtype)  # (B, N, L)
    Cm = torch.randn(batch, dstate, seqlen, device=dev, dtype=dtype)
    D = torch.randn(dim, device=dev)
    z = torch.randn(batch, dim, seqlen, device=dev, dtype=dtype)
    bias = torch.randn(dim, device=dev) * 0.3
    return u, delta, A, Bm, Cm, D, z, bias


def floors(batch, dim, seqlen, dstate, dtype, bandwidth, exp_rate):
    es = torch.tensor([], dtype=dtype).element_size()
    bdl = batch * dim * seqlen
    bc = 2 * batch * dstate * seqlen  # B and C, one group
    chk = batch * dim * math.ceil(seqlen / CHECKPOINT_INTERVAL) * dstate * 4
    state = batch * dim * dstate * 4
    # forward: read u, delta, z, B, C; write out and the last state (+ checkpoints when training).
    fwd = (3 * bdl + bc + bdl) * es + state
    # backward: read u, delta, z, dout, B, C, checkpoints; write du, ddelta, dz, and dB, dC in the input dtype.
    bwd = (4 * bdl + bc + 3 * bdl + bc) * es + chk
    exps = batch * dim * seqlen * dstate
    exp_ms = exps / exp_rate * 1e3
    return {
        "fwd": (fwd / bandwidth * 1e3, exp_ms),
        "fwd+chk": ((fwd + chk) / bandwidth * 1e3, exp_ms),
        "bwd": (bwd / bandwidth * 1e3, exp_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_scan_gpu: no CUDA device; nothing to measure.")
        return 0
    import hamburg_mamba.ops  # noqa: F401  (registers torch.ops.hamburg_mamba)

    if not torch._C._dispatch_has_kernel_for_dispatch_key("hamburg_mamba::selective_scan_fwd", "CUDA"):
        print("bench_scan_gpu: hamburg_mamba was built without CUDA kernels; rebuild with nvcc and a CUDA torch.")
        return 0
    ops = torch.ops.hamburg_mamba
    props = torch.cuda.get_device_properties(0)
    bandwidth = copy_bandwidth()
    exp_rate, exp_source = exp2_throughput()
    print(
        f"# {props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}, python {platform.python_version()}"
    )
    print(f"# command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"# copy bandwidth {bandwidth / 1e9:.0f} GB/s (1 GiB device copy); exp2 {exp_rate / 1e12:.2f} T/s, {exp_source}"
    )
    print(
        f"{'B':>2} {'D':>5} {'L':>5} {'N':>3} {'dtype':>8} {'op':>8} {'ms':>8} {'mem ms':>8} {'exp ms':>8} "
        f"{'ratio':>6} {'G upd/s':>8}"
    )
    for (batch, dim, seqlen, dstate), dtype in [(s, d) for s in SIZES for d in DTYPES]:
        u, delta, A, Bm, Cm, D, z, bias = make_inputs(batch, dim, seqlen, dstate, dtype)
        fwd_args = (u, delta, A, Bm, Cm, D, z, bias, None, None, True)
        _, _, chk = ops.selective_scan_fwd(*fwd_args, True)
        dout = torch.randn_like(u)
        bwd_args = (dout, None, u, delta, A, Bm, Cm, D, z, bias, None, None, chk, True)
        timings = {
            "fwd": time_ms(lambda: ops.selective_scan_fwd(*fwd_args, False), args.reps),
            "fwd+chk": time_ms(lambda: ops.selective_scan_fwd(*fwd_args, True), args.reps),
            "bwd": time_ms(lambda: ops.selective_scan_bwd(*bwd_args), args.reps),
        }
        fl = floors(batch, dim, seqlen, dstate, dtype, bandwidth, exp_rate)
        updates = batch * dim * seqlen * dstate
        for op, ms in timings.items():
            mem_ms, exp_ms = fl[op]
            ratio = ms / max(mem_ms, exp_ms)
            print(
                f"{batch:>2} {dim:>5} {seqlen:>5} {dstate:>3} {str(dtype)[6:]:>8} {op:>8} {ms:>8.3f} "
                f"{mem_ms:>8.3f} {exp_ms:>8.3f} {ratio:>6.2f} {updates / (ms * 1e-3) / 1e9:>8.1f}"
            )
        del u, delta, A, Bm, Cm, D, z, bias, chk, dout
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
