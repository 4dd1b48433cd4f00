"""Hand-written one-line mutants of the C++ selective-scan sources, each built and tested in a scratch copy.

mutmut covers the Python modules (`make mutants`); this is its counterpart for the CPU kernels. Each mutant
replaces one exact line fragment (which must occur exactly once) in a scratch copy of the sources, rebuilds,
and runs the tests that should notice:

- kernel mutants (csrc/selective_scan/cpu/selective_scan_cpu_kernel.inc): the C++ unit tests (tests/cpp),
  built by CMake from the torch-free kernel sources in a scratch build folder (ninja rebuilds only what the
  mutant touched), at this CPU's best ISA level;
- host mutants (csrc/selective_scan/selective_scan_host.cpp, torch-bound, so not in the C++ unit tests): the
  extension built in place in the scratch copy, then tests/ops/test_selective_scan.py against the float64
  reference.

A mutant is killed when its build fails or a test fails, survived when every test passes, timeout when the
tests run past --timeout (a mutant can turn a loop infinite). The repository's own files are never modified.

    python scripts/cpp_mutants.py [--only NAME ...] [--skip-host] [--scratch DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNEL = "csrc/selective_scan/cpu/selective_scan_cpu_kernel.inc"
HOST = "csrc/selective_scan/selective_scan_host.cpp"
# What the scratch copy needs: the CMake project (kernels and C++ tests) and the extension build.
COPIED = (
    "CMakeLists.txt",
    "csrc",
    "tests/cpp",
    "bench/cpp",
    "setup.py",
    "pyproject.toml",
    "hamburg_mamba",
    "tests/ops",
)
PYTEST_HOST = [
    "tests/ops/test_selective_scan.py",
    "-x",
    "-q",
    "-p",
    "no:cacheprovider",
    "-k",
    "not torch_compile and not lower_isa",
]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository
    before: str  # an exact fragment occurring once in the file
    after: str
    why: str  # the plausible bug it stands for


MUTANTS = (
    Mutant(
        "softplus_threshold_float",
        KERNEL,
        "return x > 20.0f ? x : l;",
        "return x > 2.0f ? x : l;",
        "float softplus passes x through from 2 instead of 20",
    ),
    Mutant(
        "softplus_threshold_double",
        KERNEL,
        "r[i] = x[i] > 20.0 ? x[i] :",
        "r[i] = x[i] > 2.0 ? x[i] :",
        "double softplus passes x through from 2 instead of 20",
    ),
    Mutant(
        "exp_sign_decay_tail",
        KERNEL,
        "const V an = vexp(s * A[n]);",
        "const V an = vexp(-(s * A[n]));",
        "a sign lost in the decay exp(s A) of the state sizes beyond a multiple of 4",
    ),
    Mutant(
        "exp_lower_clamp",
        KERNEL,
        "constexpr float kLo = -88.0f, kHi = 88.8f;",
        "constexpr float kLo = -8.0f, kHi = 88.8f;",
        "float exp clamps its argument at -8 instead of -88",
    ),
    Mutant(
        "sigmoid_sign",
        KERNEL,
        "return S(1) / (S(1) + vexp(-x));",
        "return S(1) / (S(1) + vexp(x));",
        "the gate's sigmoid with the wrong sign",
    ),
    Mutant(
        "chunk_boundary",
        KERNEL,
        "const int64_t t0 = k * kCheckpointInterval, len = imin(kCheckpointInterval, L - t0);\n      if (chk)",
        "const int64_t t0 = k * kCheckpointInterval, len = imin(kCheckpointInterval - 1, L - t0);\n      if (chk)",
        "the forward skips the last step of every full chunk",
    ),
    Mutant(
        "skip_term_reads_delta",
        KERNEL,
        "V y = sc.y[t] + Dv * sc.u[t];",
        "V y = sc.y[t] + Dv * sc.x[t];",
        "the skip connection D multiplies delta instead of u",
    ),
    Mutant(
        "gate_sigmoid_not_silu",
        KERNEL,
        "if (p.z) y = y * (sc.z[t] * vsigmoid(sc.z[t]));",
        "if (p.z) y = y * vsigmoid(sc.z[t]);",
        "the gate is sigmoid(z) instead of silu(z)",
    ),
    Mutant(
        "state_update_reads_C",
        KERNEL,
        "const V h0 = a0 * h[n] + su * Bt[n];",
        "const V h0 = a0 * h[n] + su * Ct[n];",
        "the input enters state 4k through C instead of B",
    ),
    Mutant(
        "output_drops_partial_sum",
        KERNEL,
        "sc.y[t] = (y0 + y1) + (y2 + y3);",
        "sc.y[t] = (y0 + y1) + y2;",
        "one of the four partial sums of y is dropped",
    ),
    Mutant(
        "delta_bias_sign", KERNEL, "const V x = sc.x[t] + bias;", "const V x = sc.x[t] - bias;", "delta_bias subtracted"
    ),
    Mutant(
        "dt_scale_chunk_offset",
        KERNEL,
        "static_cast<const S*>(p.dt_scale) + it.b * p.seqlen + t0",
        "static_cast<const S*>(p.dt_scale) + it.b * p.seqlen",
        "every chunk reads the first chunk's dt_scale",
    ),
    Mutant(
        "B_uses_C_stride",
        KERNEL,
        "load_bc<T, S>(sc.Bt, Bm, p.B_n_stride, N, len);",
        "load_bc<T, S>(sc.Bt, Bm, p.C_n_stride, N, len);",
        "B read with C's state stride",
    ),
    Mutant(
        "backward_dD_reads_dy_times_y",
        KERNEL,
        "dD_acc += dy * u;",
        "dD_acc += dy * y;",
        "dD accumulates dy * y instead of dy * u",
    ),
    Mutant(
        "host_C_n_stride_from_B",
        HOST,
        "p.C_n_stride = C_c.stride(2);",
        "p.C_n_stride = B_c.stride(2);",
        "the host packs B's state stride for C",
    ),
    Mutant(
        "host_z_d_stride_from_u",
        HOST,
        "p.z_d_stride = z_c.stride(1);",
        "p.z_d_stride = u_c.stride(1);",
        "the host packs u's channel stride for z",
    ),
)


def copy_sources(scratch: Path) -> None:
    for rel in COPIED:
        src, dst = REPO / rel, scratch / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> tuple[str, str]:
    """('ok' | 'failed' | 'timeout', last lines of output)."""
    try:
        r = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired:
        return "timeout", ""
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-5:])
    return ("ok" if r.returncode == 0 else "failed"), tail


class Workspace:
    """The scratch copy and its two builds; `apply` swaps one mutant in, `restore` puts the original back."""

    def __init__(self, scratch: Path, timeout: float):
        self.root, self.timeout = scratch, timeout
        self.build = scratch / "build-cmake"
        self.originals = {rel: (scratch / rel).read_text() for rel in (KERNEL, HOST)}

    def apply(self, m: Mutant) -> None:
        text = self.originals[m.path]
        if text.count(m.before) != 1:
            raise SystemExit(
                f"mutant {m.name}: {m.before!r} occurs {text.count(m.before)} times in {m.path} "
                "(expected once; the source changed, update the mutant)"
            )
        (self.root / m.path).write_text(text.replace(m.before, m.after))

    def restore(self) -> None:
        for rel, text in self.originals.items():
            if (self.root / rel).read_text() != text:
                (self.root / rel).write_text(text)

    def configure(self) -> None:
        status, tail = run(
            [
                "cmake",
                "-S",
                ".",
                "-B",
                str(self.build),
                "-G",
                "Ninja",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DHAMBURG_MAMBA_BUILD_BENCHES=OFF",
                "-DHAMBURG_MAMBA_BUILD_CUDA=OFF",
            ],
            self.root,
            self.timeout,
        )
        if status != "ok":
            raise SystemExit(f"cmake configure failed on the unmutated sources:\n{tail}")

    def kernel_tests(self) -> tuple[str, str]:
        status, tail = run(["cmake", "--build", str(self.build), "-j", "2"], self.root, 4 * self.timeout)
        if status != "ok":
            return ("build failed" if status == "failed" else status), tail
        # The best ISA level only (the isa_* entries rerun the same tests at lower levels).
        return run(
            [
                "ctest",
                "--test-dir",
                str(self.build),
                "-LE",
                "isa",
                "--stop-on-failure",
                "--timeout",
                str(int(self.timeout)),
            ],
            self.root,
            2 * self.timeout,
        )

    def host_tests(self) -> tuple[str, str]:
        env = {
            "HAMBURG_MAMBA_CUDA": "0",
            "MAX_JOBS": "2",
            "PATH": f"{Path(sys.executable).parent}:/usr/lib/ccache:{os.environ['PATH']}",
        }
        status, tail = run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], self.root, 10 * self.timeout, env
        )
        if status != "ok":
            return ("build failed" if status == "failed" else status), tail
        return run([sys.executable, "-m", "pytest", *PYTEST_HOST], self.root, 4 * self.timeout)

    def tests_for(self, m: Mutant) -> tuple[str, str]:
        return self.host_tests() if m.path == HOST else self.kernel_tests()


def verdict(status: str) -> str:
    return {"ok": "survived", "failed": "killed", "build failed": "killed (build)", "timeout": "timeout"}[status]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only these mutants (names as listed in MUTANTS)")
    ap.add_argument("--skip-host", action="store_true", help="skip the host mutants (each rebuilds the extension)")
    ap.add_argument("--scratch", type=Path, help="scratch folder (default: a new temporary one, removed after)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for one test run")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    known = {m.name for m in MUTANTS}
    unknown = set(args.only or ()) - known
    if unknown:
        ap.error(f"--only: unknown mutants {sorted(unknown)}; known: {sorted(known)}")
    chosen = [m for m in MUTANTS if (not args.only or m.name in args.only) and not (args.skip_host and m.path == HOST)]

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cpp_mutants_"))
    copy_sources(scratch)
    ws = Workspace(scratch, args.timeout)
    if any(m.path == KERNEL for m in chosen):
        ws.configure()
        status, tail = ws.kernel_tests()
        if status != "ok":
            raise SystemExit(f"the C++ tests fail on the unmutated sources ({status}):\n{tail}")
    results = []
    try:
        for m in chosen:
            ws.apply(m)
            start = time.monotonic()
            status, tail = ws.tests_for(m)
            results.append(
                {
                    "mutant": m.name,
                    "file": m.path,
                    "why": m.why,
                    "result": verdict(status),
                    "seconds": round(time.monotonic() - start),
                }
            )
            print(f"{m.name:32s} {verdict(status):15s} {m.why}", flush=True)
            ws.restore()
    finally:
        ws.restore()
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    killed = sum(r["result"].startswith("killed") for r in results)
    print(f"{killed}/{len(results)} killed")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
