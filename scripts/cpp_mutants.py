"""Hand-written one-line mutants of the C++ selective-scan sources, each built and tested in a scratch copy.

mutmut covers the Python modules (`make mutants`); this is its counterpart for the CPU kernels. Each mutant
replaces one exact fragment (which must occur exactly once) of a source in a scratch copy, rebuilds, and runs
the tests that should notice:

- kernel and dispatcher mutants (csrc/common/cpu, csrc/selective_scan/cpu, csrc/state_update/cpu,
  csrc/block_step/cpu): the C++ unit tests (tests/cpp), the kernel suites (Isa*) of the GoogleTest binary at
  this CPU's best ISA level, run directly so that the first failing test can be named. Only what a mutant
  needs is rebuilt: in the scratch copy the best level's translation units include their own copies of the
  kernel sources (*.inc), which is where the kernel mutants go, so ninja recompiles those units (the other
  levels never run here) and relinks the test binary. Everything is built at -O1, a third
  of -O3's compile time: a mutant's verdict does not depend on the optimisation level, only its run time
  does. ccache (when installed) keys on paths relative to the scratch folder, so a rerun compiles only what
  changed since the last one.
- host mutants (csrc/selective_scan/selective_scan_host.cpp, torch-bound, so not in the C++ unit tests): the
  extension built in place in the scratch copy (slow: it compiles the torch bindings), then
  tests/ops/test_selective_scan.py against the float64 reference.

A mutant is killed when its build fails or a test fails (or crashes), survived when every test passes,
timeout when the tests run past the time limit (a mutant can turn a loop infinite). The repository's own
files are never modified.

    python scripts/cpp_mutants.py [--only NAME ...] [--skip-host] [--scratch DIR] [--json OUT] [--markdown OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The kernel sources (one ISA level each, included by the per-ISA wrappers csrc/<op>/cpu/*_<isa>.cpp) and the
# dispatchers the mutants change.
VEC_MATH = "csrc/common/cpu/vec_math.inc"
TILING = "csrc/selective_scan/cpu/selective_scan_cpu_tiling.inc"
SCAN = "csrc/selective_scan/cpu/selective_scan_cpu_scan.inc"
STEP = "csrc/state_update/cpu/state_update_cpu_kernel.inc"
BLOCK = "csrc/block_step/cpu/block_step_cpu_kernel.inc"
DISPATCH = "csrc/selective_scan/cpu/selective_scan_cpu.cpp"
BLOCK_DISPATCH = "csrc/block_step/cpu/block_step_cpu.cpp"
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
OPT_LEVEL = "-O1"
TEST_BINARY = "test_selective_scan_cpu"
# The suites that run the kernels; Reference* checks the tests' own float64 reference and cannot notice.
KERNEL_SUITES = "Isa*"
# As CMakeLists.txt's HM_TEST_ENV.
TEST_ENV = {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "passive"}
# Seconds. The first build compiles every unit (a minute on a quiet 2-core machine, several on a loaded one);
# a mutant's rebuild one unit and the link (about 10 s quiet). The test limit is a multiple of the unmutated
# run, with a floor for a machine whose load changes between the two.
FIRST_BUILD_TIMEOUT = 3600.0
REBUILD_TIMEOUT = 900.0
TEST_TIMEOUT_FACTOR = 10.0
MIN_TEST_TIMEOUT = 60.0
HOST_BUILD_TIMEOUT = 3600.0
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
    # Forward: step size, decay, output.
    Mutant(
        "softplus_threshold_float",
        VEC_MATH,
        "return x <= kThreshold ? l : x;",
        "return x <= 2.0f ? l : x;",
        "float softplus passes x through from 2 instead of 20",
    ),
    Mutant(
        "softplus_threshold_double",
        VEC_MATH,
        "r[i] = x[i] <= kSoftplusThreshold ?",
        "r[i] = x[i] <= 2.0 ?",
        "double softplus passes x through from 2 instead of 20",
    ),
    Mutant(
        "softplus_log1p_uncorrected",
        VEC_MATH,
        "const V l = vlog_ge1(w) - ((w - 1.0f) - e) / w;",
        "const V l = vlog_ge1(w);",
        "float softplus takes log(1 + e) without correcting the rounding of 1 + e",
    ),
    Mutant(
        "exp_sign_decay_tail",
        SCAN,
        "const V an = vexp(s * A[n]);",
        "const V an = vexp(-(s * A[n]));",
        "a sign lost in the decay exp(s A) of the state sizes beyond a multiple of 4",
    ),
    Mutant(
        "exp_lower_clamp",
        VEC_MATH,
        "constexpr float kLo = -88.0f, kHi = 88.8f;",
        "constexpr float kLo = -8.0f, kHi = 88.8f;",
        "float exp clamps its argument at -8 instead of -88",
    ),
    Mutant(
        "sigmoid_sign",
        VEC_MATH,
        "return S(1) / (S(1) + vexp(-x));",
        "return S(1) / (S(1) + vexp(x));",
        "the gate's sigmoid with the wrong sign",
    ),
    Mutant(
        "chunk_boundary",
        SCAN,
        "const int64_t t0 = k * kCheckpointInterval, len = imin(kCheckpointInterval, L - t0);\n      if (chk)",
        "const int64_t t0 = k * kCheckpointInterval, len = imin(kCheckpointInterval - 1, L - t0);\n      if (chk)",
        "the forward skips the last step of every full chunk",
    ),
    Mutant(
        "checkpoint_slot_zero",
        SCAN,
        "if (chk) store_state(chk + it.b * p.dim * n_chunks * N + k * N, h, it, n_chunks * N, N);",
        "if (chk) store_state(chk + it.b * p.dim * n_chunks * N, h, it, n_chunks * N, N);",
        "every chunk's checkpoint written to slot 0 (the backward restarts later chunks from a wrong state)",
    ),
    Mutant(
        "initial_state_batch_offset",
        SCAN,
        "load_state(h, init + it.b * p.dim * N, it, N, N);",
        "load_state(h, init, it, N, N);",
        "every batch row starts from batch row 0's initial state",
    ),
    Mutant(
        "skip_term_reads_delta",
        SCAN,
        "V y = p.Dvec ? sc.y[t] + Dv * sc.u[t] : sc.y[t];",
        "V y = p.Dvec ? sc.y[t] + Dv * sc.x[t] : sc.y[t];",
        "the skip connection D multiplies delta instead of u",
    ),
    Mutant(
        "gate_sigmoid_not_silu",
        SCAN,
        "if (p.z) y = y * (sc.z[t] * vsigmoid(sc.z[t]));",
        "if (p.z) y = y * vsigmoid(sc.z[t]);",
        "the gate is sigmoid(z) instead of silu(z)",
    ),
    Mutant(
        "state_update_reads_C",
        SCAN,
        "const V h0 = a0 * h[n] + su * Bt[n];",
        "const V h0 = a0 * h[n] + su * Ct[n];",
        "the input enters state 4k through C instead of B",
    ),
    Mutant(
        "output_drops_partial_sum",
        SCAN,
        "sc.y[t] = (y0 + y1) + (y2 + y3);",
        "sc.y[t] = (y0 + y1) + y2;",
        "one of the four partial sums of y is dropped",
    ),
    Mutant(
        "delta_bias_sign", TILING, "const V x = sc.x[t] + bias;", "const V x = sc.x[t] - bias;", "delta_bias subtracted"
    ),
    Mutant(
        "dt_scale_chunk_offset",
        TILING,
        "static_cast<const S*>(p.dt_scale) + it.b * p.seqlen + t0",
        "static_cast<const S*>(p.dt_scale) + it.b * p.seqlen",
        "every chunk reads the first chunk's dt_scale",
    ),
    Mutant(
        "B_uses_C_stride",
        TILING,
        "load_bc<T, S>(sc.Bt, Bm, p.B_n_stride, N, len);",
        "load_bc<T, S>(sc.Bt, Bm, p.C_n_stride, N, len);",
        "B read with C's state stride",
    ),
    # Backward: the reverse recurrence, its carry across chunks, and each gradient's accumulation.
    Mutant(
        "backward_skips_first_chunk",
        SCAN,
        "for (int64_t k = n_chunks - 1; k >= 0; --k) {",
        "for (int64_t k = n_chunks - 1; k > 0; --k) {",
        "the reverse loop over chunks stops before chunk 0",
    ),
    Mutant(
        "backward_carry_without_decay",
        SCAN,
        "dh[n] = acur[n] * G0;",
        "dh[n] = G0;",
        "the carried state gradient G_t is not multiplied by the decay a_t (even n)",
    ),
    Mutant(
        "backward_chunk_start_state",
        SCAN,
        "const V* __restrict hprev = t > 0 ? sc.hbuf + (t - 1) * N : h;",
        "const V* __restrict hprev = t > 0 ? sc.hbuf + (t - 1) * N : sc.hbuf;",
        "the first step of a chunk takes h_t for h_{t-1} instead of the checkpoint",
    ),
    Mutant(
        "backward_dlast_batch_offset",
        SCAN,
        "load_state(dh, dlast + it.b * p.dim * N, it, N, N);",
        "load_state(dh, dlast, it, N, N);",
        "every batch row starts the reverse pass from batch row 0's dlast_state",
    ),
    Mutant(
        "backward_dA_without_step",
        SCAN,
        "sc.dA[n] += s * q0;",
        "sc.dA[n] += q0;",
        "dA accumulates G a h_{t-1} without the step s (even n)",
    ),
    Mutant(
        "backward_dB_without_u",
        SCAN,
        "pB[n] = G0 * su;",
        "pB[n] = G0 * s;",
        "dB takes G s without the input u (even n)",
    ),
    Mutant(
        "backward_dC_previous_state",
        SCAN,
        "pC[n + 1] = dy * hcur[n + 1];",
        "pC[n + 1] = dy * hprev[n + 1];",
        "dC pairs dy_t with h_{t-1} instead of h_t (odd n)",
    ),
    Mutant(
        "backward_ds_without_u",
        SCAN,
        "const V ds = (ds0 + ds1) + u * dsu;",
        "const V ds = (ds0 + ds1) + dsu;",
        "the step gradient takes sum G B without the input u",
    ),
    Mutant(
        "backward_du_without_step",
        SCAN,
        "du_tile[t] = p.Dvec ? Dv * dy + s * dsu : s * dsu;",
        "du_tile[t] = p.Dvec ? Dv * dy + dsu : s * dsu;",
        "du with D given drops the step s of s sum G B",
    ),
    Mutant(
        "backward_ddelta_without_scale",
        SCAN,
        "V dx = scale ? ds * scale[t] : ds;",
        "V dx = ds;",
        "ddelta ignores dt_scale in the chain rule",
    ),
    Mutant(
        "backward_softplus_derivative_sign",
        SCAN,
        "dx = x > S(kSoftplusThreshold) ? dx : dx * vsigmoid(x);",
        "dx = x > S(kSoftplusThreshold) ? dx : dx * vsigmoid(-x);",
        "softplus'(x) taken as sigmoid(-x)",
    ),
    Mutant(
        "backward_ddelta_bias_before_softplus",
        SCAN,
        "dbias_acc += dx;",
        "dbias_acc += ds;",
        "ddelta_bias sums the step gradient instead of the pre-softplus one",
    ),
    Mutant(
        "backward_dz_sigmoid_derivative",
        SCAN,
        "dz_tile[t] = dy * y * sig * (S(1) + z * (S(1) - sig));",
        "dz_tile[t] = dy * y * sig;",
        "dz uses sigmoid(z) for silu'(z)",
    ),
    Mutant(
        "backward_dD_ungated",
        SCAN,
        "dD_acc += dy * u;",
        "dD_acc += sc.g[t] * u;",
        "dD accumulates dout u, the gradient before the gate, instead of dy u",
    ),
    Mutant(
        "reduce_dB_block_offset",
        DISPATCH,
        "const S* in = src + ((bg * bpg + j) * L + t0) * N;",
        "const S* in = src + ((bg + j) * L + t0) * N;",
        "dB and dC sum the wrong channel blocks of a group (index without the blocks per group)",
    ),
    Mutant(
        "reduce_dA_drops_last_batch",
        DISPATCH,
        "for (int64_t b = 0; b < p.batch; ++b) acc += dA_part[b * D * N + i];",
        "for (int64_t b = 0; b + 1 < p.batch; ++b) acc += dA_part[b * D * N + i];",
        "dA summed over every batch row but the last",
    ),
    # selective_state_update.
    Mutant(
        "step_dt_bias_index",
        STEP,
        "raw[i] = to_compute(dt[row]) + (bias ? bias[row % p.dim] : S(0));",
        "raw[i] = to_compute(dt[row]) + (bias ? bias[row / p.dim] : S(0));",
        "the streaming step reads dt_bias by batch row instead of channel",
    ),
    Mutant(
        "step_dt_scale_index",
        STEP,
        "if (scale) scl[i] = scale[row / p.dim];",
        "if (scale) scl[i] = scale[row % p.dim];",
        "the streaming step reads dt_scale by channel instead of batch row",
    ),
    Mutant(
        "step_B_batch_offset",
        STEP,
        "const T* Brow = Bm + (b * p.n_groups + g) * N;",
        "const T* Brow = Bm + g * N;",
        "the streaming step reads batch row 0's B",
    ),
    Mutant(
        "step_input_without_x",
        STEP,
        "hv = vexp(step * load_vec<S, S>(Arow + n0)) * hv + su * load_vec<T, S>(Brow + n0);",
        "hv = vexp(step * load_vec<S, S>(Arow + n0)) * hv + step * load_vec<T, S>(Brow + n0);",
        "the streaming step's input term drops x (full 16-state blocks)",
    ),
    Mutant(
        "step_gate_sigmoid",
        STEP,
        "y *= zv / (S(1) + std::exp(-zv));",
        "y *= S(1) / (S(1) + std::exp(-zv));",
        "the streaming step gates with sigmoid(z) instead of silu(z)",
    ),
    # mamba_block_step: the RMS norm, the conv window, the projections.
    Mutant(
        "block_rms_norm_drops_tail",
        BLOCK,
        "for (int64_t m = full; m < M; ++m) squares += x[m] * x[m];",
        "for (int64_t m = full; m + 1 < M; ++m) squares += x[m] * x[m];",
        "the mean square leaves out the last element of d_model",
    ),
    Mutant(
        "block_conv_window_not_shifted_in",
        BLOCK,
        "window[K - 1] = xi[row];",
        "window[K - 2] = xi[row];",
        "the new input is stored one slot early in the conv window",
    ),
    Mutant(
        "block_conv_newest_weight",
        BLOCK,
        "s[i] = acc + xi[row] * w[K - 1];",
        "s[i] = acc + xi[row] * w[0];",
        "the newest input is weighted with the oldest tap",
    ),
    Mutant(
        "gemv_odd_block_dropped",
        BLOCK,
        "if (i < full) {",
        "if (i + kLanes < full) {",
        "the matrix-vector product drops an odd 16-wide block of the input",
    ),
    Mutant(
        "gemv_batch_remainder_3",
        BLOCK,
        "case 3: gemv_block<S, W, 3>(j, r0, rows, b0); break;",
        "case 3: gemv_block<S, W, 2>(j, r0, rows, b0); break;",
        "a batch remainder of 3 rows computes only 2",
    ),
    Mutant(
        "block_z_from_xi_rows",
        BLOCK_DISPATCH,
        "gemv(rows_of(p.in_proj, E, M), E, M, normed, z, nullptr);",
        "gemv(p.in_proj, E, M, normed, z, nullptr);",
        "z is projected with in_proj's first half (xi's rows)",
    ),
    Mutant(
        "block_C_from_B_rows",
        BLOCK_DISPATCH,
        "gemv(rows_of(p.x_proj, R + N, E), N, E, xc, Cm, nullptr);",
        "gemv(rows_of(p.x_proj, R, E), N, E, xc, Cm, nullptr);",
        "C is projected with x_proj's B rows",
    ),
    Mutant(
        "block_no_dt_softplus",
        BLOCK_DISPATCH,
        "s.dt_softplus = true;",
        "s.dt_softplus = false;",
        "the block step uses dt + dt_bias without softplus",
    ),
    Mutant(
        "block_no_residual",
        BLOCK_DISPATCH,
        "gemv(p.out_proj, M, E, y, p.out, p.x);",
        "gemv(p.out_proj, M, E, y, p.out, nullptr);",
        "the block step drops the residual x",
    ),
    # The host binding (torch-bound: rebuilds the extension).
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


def mutated_copy(rel: str) -> str:
    """The best level's own copy of a kernel source, next to it (see the module docstring)."""
    path = Path(rel)
    return str(path.with_name(f"{path.stem}_mutated{path.suffix}"))


def copy_sources(scratch: Path) -> None:
    for rel in COPIED:
        src, dst = REPO / rel, scratch / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.o"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> tuple[str, str]:
    """('ok' | 'failed' | 'timeout', the whole output)."""
    try:
        r = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return ("ok" if r.returncode == 0 else "failed"), r.stdout + r.stderr


def tail(output: str, lines: int = 15) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def first_failure(output: str) -> str:
    """The first failed GoogleTest test in the output, or the one running when the binary died."""
    failed = re.search(r"^\[  FAILED  \] (\S+)", output, re.M)
    if failed:
        return failed.group(1).rstrip(",")  # a parameterised test's name runs into ", where GetParam() = ..."
    started = re.findall(r"^\[ RUN      \] (\S+)", output, re.M)
    return f"{started[-1]} (crashed)" if started else "(no test ran)"


class Workspace:
    """The scratch copy and its two builds; `apply` swaps one mutant in, `restore` puts the originals back."""

    def __init__(self, scratch: Path, paths: set[str]):
        self.root = scratch
        self.build = scratch / "build-cmake"
        self.paths = paths
        self.originals = {rel: (scratch / rel).read_text() for rel in paths}
        self.test_timeout = MIN_TEST_TIMEOUT
        # ccache hashes paths relative to the scratch folder, so a later run in another folder hits.
        self.env = {"CCACHE_BASEDIR": str(scratch)}

    def where(self, rel: str) -> Path:
        """The file a mutant of `rel` goes into: a kernel source's copy for the best level, else the file itself."""
        return self.root / (mutated_copy(rel) if rel.endswith(".inc") else rel)

    def apply(self, m: Mutant) -> None:
        text = self.originals[m.path]
        if text.count(m.before) != 1:
            raise SystemExit(
                f"mutant {m.name}: {m.before!r} occurs {text.count(m.before)} times in {m.path} "
                "(expected once; the source changed, update the mutant)"
            )
        self.where(m.path).write_text(text.replace(m.before, m.after))

    def restore(self) -> None:
        for rel, text in self.originals.items():
            path = self.where(rel)
            if path.exists() and path.read_text() != text:
                path.write_text(text)

    # ---- the C++ unit tests

    def prepare_kernel_build(self) -> None:
        """Configures and builds the unmutated sources, points the best level at its own kernel copy, and
        times the unmutated tests (which must pass) to set the test limit."""
        status, out = run(
            [
                "cmake",
                "-S",
                ".",
                "-B",
                str(self.build),
                "-G",
                "Ninja",
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DCMAKE_CXX_FLAGS_RELEASE={OPT_LEVEL} -DNDEBUG",
                f"-DHAMBURG_MAMBA_KERNEL_OPT={OPT_LEVEL}",
                "-DHAMBURG_MAMBA_BUILD_BENCHES=OFF",
                "-DHAMBURG_MAMBA_BUILD_CUDA=OFF",
            ],
            self.root,
            MIN_TEST_TIMEOUT,
            self.env,
        )
        if status != "ok":
            raise SystemExit(f"cmake configure failed on the unmutated sources:\n{tail(out)}")
        status, out = self.build_tests(FIRST_BUILD_TIMEOUT)
        if status != "ok":
            raise SystemExit(f"the build of the unmutated sources {status}:\n{tail(out)}")
        status, out = run(
            [str(self.build / TEST_BINARY), "--gtest_filter=Isa.ReportsTheExpectedLevel"],
            self.root,
            MIN_TEST_TIMEOUT,
            TEST_ENV,
        )
        level = re.search(r"kernels at ISA level (\w+)", out)
        if status != "ok" or level is None:
            raise SystemExit(f"cannot tell this CPU's ISA level:\n{tail(out)}")
        self.isa = level.group(1)
        self.redirect_kernel_sources()
        start = time.monotonic()
        status, out = self.kernel_tests_once(FIRST_BUILD_TIMEOUT)
        if status != "ok":
            raise SystemExit(f"the C++ tests fail on the unmutated sources ({status}):\n{tail(out)}")
        seconds = time.monotonic() - start
        self.test_timeout = max(MIN_TEST_TIMEOUT, TEST_TIMEOUT_FACTOR * seconds)
        print(
            f"unmutated: ISA level {self.isa}, rebuild and tests {seconds:.0f} s; "
            f"test limit {self.test_timeout:.0f} s per mutant",
            flush=True,
        )

    def redirect_kernel_sources(self) -> None:
        """Points every wrapper of the best level (csrc/<op>/cpu/*_<isa>.cpp) at its own copies of the kernel
        sources the mutants change."""
        sources = sorted(rel for rel in self.paths if rel.endswith(".inc"))
        wrappers = sorted((self.root / "csrc").glob(f"*/cpu/*_{self.isa}.cpp"))
        included = set()
        for wrapper in wrappers:
            text = wrapper.read_text()
            for rel in sources:
                copy = mutated_copy(rel)
                # Included by its name from its own folder, or by its path under csrc/ from another op's folder.
                same_folder = wrapper.parent == (self.root / rel).parent
                spelled, respelled = (
                    (Path(rel).name, Path(copy).name) if same_folder else (rel[len("csrc/") :], copy[len("csrc/") :])
                )
                include = f'#include "{spelled}"'
                if text.count(include) == 1:
                    text = text.replace(include, f'#include "{respelled}"')
                    included.add(rel)
            wrapper.write_text(text)
        missing = set(sources) - included
        if missing:
            raise SystemExit(f"no {self.isa} wrapper includes {sorted(missing)} (the include lines changed)")
        for rel in sources:
            (self.root / mutated_copy(rel)).write_text(self.originals[rel])

    def build_tests(self, timeout: float) -> tuple[str, str]:
        return run(
            ["cmake", "--build", str(self.build), "--target", TEST_BINARY, "-j", "2"], self.root, timeout, self.env
        )

    def kernel_tests_once(self, build_timeout: float) -> tuple[str, str]:
        status, out = self.build_tests(build_timeout)
        if status != "ok":
            return ("build failed" if status == "failed" else status), out
        return run(
            [str(self.build / TEST_BINARY), f"--gtest_filter={KERNEL_SUITES}", "--gtest_fail_fast"],
            self.root,
            self.test_timeout,
            TEST_ENV,
        )

    def kernel_tests(self) -> tuple[str, str]:
        return self.kernel_tests_once(REBUILD_TIMEOUT)

    # ---- the extension and the Python op tests

    def host_tests(self) -> tuple[str, str]:
        env = {
            **self.env,
            "HAMBURG_MAMBA_CUDA": "0",
            "MAX_JOBS": "2",
            "PATH": f"{Path(sys.executable).parent}:/usr/lib/ccache:{os.environ['PATH']}",
        }
        status, out = run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], self.root, HOST_BUILD_TIMEOUT, env
        )
        if status != "ok":
            return ("build failed" if status == "failed" else status), out
        return run([sys.executable, "-m", "pytest", *PYTEST_HOST], self.root, HOST_BUILD_TIMEOUT)

    def tests_for(self, m: Mutant) -> tuple[str, str]:
        return self.host_tests() if m.path == HOST else self.kernel_tests()


def verdict(status: str) -> str:
    return {"ok": "survived", "failed": "killed", "build failed": "killed (build)", "timeout": "timeout"}[status]


def killer(m: Mutant, status: str, output: str) -> str:
    if status != "failed":
        return ""
    if m.path == HOST:
        failed = re.search(r"^FAILED (\S+)", output, re.M)
        return failed.group(1) if failed else "(pytest failed)"
    return first_failure(output)


def markdown(results: list[dict]) -> str:
    rows = ["| mutant | what it changes | result | killed by |", "|---|---|---|---|"]
    for r in results:
        rows.append(
            f"| `{r['mutant']}` | {r['why']} | {r['result']} | {r['killed_by'] and '`' + r['killed_by'] + '`'} |"
        )
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only these mutants (names as listed in MUTANTS)")
    ap.add_argument("--skip-host", action="store_true", help="skip the host mutants (each rebuilds the extension)")
    ap.add_argument("--scratch", type=Path, help="scratch folder (default: a new temporary one, removed after)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--markdown", type=Path, help="also write the results here as a markdown table")
    args = ap.parse_args(argv)
    known = {m.name for m in MUTANTS}
    unknown = set(args.only or ()) - known
    if unknown:
        ap.error(f"--only: unknown mutants {sorted(unknown)}; known: {sorted(known)}")
    chosen = [m for m in MUTANTS if (not args.only or m.name in args.only) and not (args.skip_host and m.path == HOST)]

    began = time.monotonic()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cpp_mutants_"))
    copy_sources(scratch)
    ws = Workspace(scratch, {m.path for m in MUTANTS})
    results = []
    try:
        if any(m.path != HOST for m in chosen):
            ws.prepare_kernel_build()
        for m in chosen:
            ws.apply(m)
            start = time.monotonic()
            status, output = ws.tests_for(m)
            ws.restore()
            results.append(
                {
                    "mutant": m.name,
                    "file": m.path,
                    "why": m.why,
                    "result": verdict(status),
                    "killed_by": killer(m, status, output),
                    "seconds": round(time.monotonic() - start),
                }
            )
            r = results[-1]
            print(f"{m.name:36s} {r['result']:15s} {r['seconds']:4d} s  {r['killed_by']}", flush=True)
    finally:
        ws.restore()
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    killed = sum(r["result"].startswith("killed") for r in results)
    print(f"{killed}/{len(results)} killed in {(time.monotonic() - began) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
