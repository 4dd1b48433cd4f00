"""CPU emulation of the CUDA kernels (no GPU needed; slow, for correctness only).

Builds the real kernels of csrc/selective_scan/cuda and csrc/state_update/cuda (the .cu files, unchanged but for
the launch syntax) as CPU code through cuda_shim.h, together with the real host checks and packing (the
*_host.cpp of those folders and csrc/common/host.cpp), into a torch library with three ops in the namespace
`emulator_namespace(config)`:
    fwd(u, delta, A, B, C, D?, z?, delta_bias?, initial_state?, dt_scale?, softplus, save) -> (out, last, chk)
    bwd(dout, dlast?, u, delta, A, B, C, D?, z?, delta_bias?, initial_state?, dt_scale?, chk, softplus)
        -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state)
    update(state, x, dt, A, B, C, D?, z?, dt_bias?, dt_scale?, softplus) -> out   (state updated in place)
with the argument order of the hamburg_mamba ops. tests/ops/test_cuda_emulator.py runs it in the default
test command; run_emu.py holds longer manual sweeps.

Manual use, from the repository root:
  EMU_THREADS=64 EMU_ARCH=900 python tests/cuda_emulator/build_emu.py
  EMU_THREADS=64 python tests/cuda_emulator/run_emu.py multi   # quick|n|opts|multi|half|nbig|claims|grid|long|memory
EMU_THREADS (default 128, the kernels' own) shrinks the block so that short sequences span several chunks;
EMU_ARCH=800 takes the scalar-atomic path of the backward; EMU_FAST_EXP=1 compiles the exp2f decay
(HAMBURG_MAMBA_CUDA_FAST_EXP), and EMU_BIAS=<rel> then multiplies every decay exp by (1 + rel), to study
how an exp bias grows with the sequence length. EMU_OUT (default build/emu) is the build folder.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
SHIM = Path(__file__).resolve().parent / "cuda_shim.h"
# The CUDA headers the kernels include; each becomes a one-line forward to the shim.
CUDA_HEADERS = ("cuda_runtime.h", "cuda_runtime_api.h", "cuda_fp16.h", "cuda_bf16.h")
# The csrc folders each emulator copies (their headers, host sources and cuda/ kernels; never cpu/).
SCAN_FOLDERS = ("common", "selective_scan", "state_update")
CONV_FOLDERS = ("common", "causal_conv1d")
# The file whose exp the exp_bias option rewrites.
EXP_HEADER = "selective_scan_common.cuh"
# kernel<<<grid, block, smem, stream>>>(args); -> ::shim::launch(kernel, grid, block, smem, stream, args);
LAUNCH_RE = re.compile(r"([\w:]+(?:<[^<>]*>)?)<<<(.*?)>>>\((.*?)\);")
KERNEL_THREADS_RE = re.compile(r"constexpr int kNThreads = \d+;")
FAST_EXP_RETURN = "return exp2f("
# -O1: the kernels' inner loops at -O0 make the emulation several times slower; -O2 adds compile time only.
CFLAGS = ["-O1", "-std=c++20", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas"]


@dataclasses.dataclass(frozen=True)
class EmulatorConfig:
    threads: int = 128  # kNThreads, the block size; 64 gives 256-step and 1024-step chunks (two warps)
    arch: int = 900  # __CUDA_ARCH__ the kernels see: 900 takes the float4 atomics, 800 the scalar ones
    fast_exp: bool = False  # compile the exp2f decay (HAMBURG_MAMBA_CUDA_FAST_EXP) instead of the Cephes one
    exp_bias: str | None = None  # with fast_exp: every decay exp times (1 + exp_bias), a C float literal

    @classmethod
    def from_env(cls) -> EmulatorConfig:
        bias = os.environ.get("EMU_BIAS")
        return cls(
            threads=int(os.environ.get("EMU_THREADS", "128")),
            arch=int(os.environ.get("EMU_ARCH", "900")),
            fast_exp=bool(bias) or os.environ.get("EMU_FAST_EXP") == "1",
            exp_bias=bias,
        )

    @property
    def name(self) -> str:
        suffix = "_fastexp" if self.fast_exp else ""
        if self.exp_bias:  # the value in the name: each bias is a library of its own
            suffix += "_bias" + re.sub(r"[^0-9A-Za-z]", "_", self.exp_bias)
        return f"hm_emu_t{self.threads}_a{self.arch}{suffix}"


def emulator_namespace(config: EmulatorConfig) -> str:
    """The torch.ops namespace of a build: one per configuration, so several builds can share a process."""
    return config.name


BINDING = r"""
// The emulator's ops: the real host packing, then the CUDA launchers compiled for the CPU (stream nullptr).
#include <torch/library.h>

#include "selective_scan/cuda/selective_scan_cuda.h"
#include "selective_scan/selective_scan_host.h"
#include "state_update/cuda/state_update_cuda.h"
#include "state_update/state_update_host.h"

namespace hamburg_mamba {
namespace {

void check_status(cudaError_t err, const char* op) { TORCH_CHECK(err == cudaSuccess, op, ": emulated launch failed"); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> emu_fwd(const at::Tensor& u, const at::Tensor& delta,
    const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
    const OptTensor& bias, const OptTensor& init, const OptTensor& scale, bool softplus, bool save) {
  FwdPrepared prep = prepare_fwd(u, delta, A, B, C, D, z, bias, init, scale, softplus, save);
  check_status(gpu::selective_scan_fwd_cuda(prep.params, nullptr), "fwd");
  return {prep.out, prep.last_state, prep.checkpoints};
}

BwdResult emu_bwd(const at::Tensor& dout, const OptTensor& dlast, const at::Tensor& u, const at::Tensor& delta,
    const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
    const OptTensor& bias, const OptTensor& init, const OptTensor& scale, const at::Tensor& chk, bool softplus) {
  BwdPrepared prep = prepare_bwd(dout, dlast, u, delta, A, B, C, D, z, bias, init, scale, chk, softplus);
  check_status(gpu::selective_scan_bwd_cuda(prep.params, nullptr), "bwd");
  return finalize_bwd(prep);
}

at::Tensor emu_update(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& bias,
    const OptTensor& scale, bool softplus) {
  StateUpdatePrepared prep = prepare_state_update(state, x, dt, A, B, C, D, z, bias, scale, softplus);
  check_status(gpu::selective_state_update_cuda(prep.params, nullptr), "update");
  finalize_state_update(state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY(EMU_NAMESPACE, m) {
  m.def("fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, "
        "Tensor? initial_state, Tensor? dt_scale, bool softplus, bool save) -> (Tensor, Tensor, Tensor)", &emu_fwd);
  m.def("bwd(Tensor dout, Tensor? dlast, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
        "Tensor? z, Tensor? delta_bias, Tensor? initial_state, Tensor? dt_scale, Tensor chk, bool softplus) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &emu_bwd);
  m.def("update(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
        "Tensor? dt_bias, Tensor? dt_scale, bool softplus) -> Tensor", &emu_update);
}

}  // namespace hamburg_mamba
"""


def _namespace_loaded(namespace: str) -> bool:
    """Whether a library of this process already registered `namespace`. A second TORCH_LIBRARY for the same
    namespace aborts the process when its .so loads, so each namespace is compiled and loaded once."""
    prefix = namespace + "::"
    return any(name.startswith(prefix) for name in torch._C._dispatch_get_all_op_names())


def build(config: EmulatorConfig, out_dir: Path, verbose: bool = False):
    """Compiles the emulator for `config` under out_dir (g++ via torch's ninja build) and loads it.

    Files are rewritten only when their text changed, so a second build in the same folder recompiles only
    what changed (ninja compares times). Returns the ops namespace (torch.ops.<emulator_namespace(config)>).
    """
    defines = ["-DHAMBURG_MAMBA_CUDA_FAST_EXP"] if config.fast_exp else []
    return _build_library(emulator_namespace(config), SCAN_FOLDERS, BINDING, config, out_dir, defines, verbose)


def _build_library(name: str, folders, binding: str, config: EmulatorConfig, out_dir: Path, defines, verbose):
    """Copies `folders` of csrc under out_dir/name/csrc as CPU code, adds the binding, builds and loads it."""
    if _namespace_loaded(name):
        return getattr(torch.ops, name)  # the same configuration's kernels, loaded before in this process
    root = Path(out_dir) / name
    csrc = root / "csrc"
    shim_dir = root / "shim"
    _write_if_changed(shim_dir / SHIM.name, SHIM.read_text())
    for header in CUDA_HEADERS:
        _write_if_changed(shim_dir / header, '#pragma once\n#include "cuda_shim.h"\n')
    sources = [csrc / "emu_binding.cpp"]
    _write_if_changed(sources[0], binding.replace("EMU_NAMESPACE", name))
    for folder in folders:
        for path in sorted((CSRC / folder).iterdir()):
            if path.suffix in (".h", ".cuh"):
                _write_if_changed(csrc / folder / path.name, path.read_text())
            elif path.name.endswith("host.cpp"):  # the host checks; the other .cpp register the real ops
                _write_if_changed(csrc / folder / path.name, path.read_text())
                sources.append(csrc / folder / path.name)
        cuda = CSRC / folder / "cuda"
        if cuda.is_dir():
            units = [_write_kernel_file(path, csrc / folder / "cuda", config) for path in sorted(cuda.iterdir())]
            sources += [unit for unit in units if unit]
    load(
        name=name,
        sources=[str(s) for s in sources],
        build_directory=str(root),
        extra_include_paths=[str(shim_dir), str(csrc)],
        extra_cflags=CFLAGS + defines,
        is_python_module=False,
        verbose=verbose,
    )
    return getattr(torch.ops, name)


def _write_kernel_file(path: Path, dst: Path, config: EmulatorConfig) -> Path | None:
    """Copies one file of a csrc/<op>/cuda folder as CPU code; returns it when it is a translation unit."""
    if path.suffix not in (".cu", ".cuh", ".h"):
        return None  # the real binding (.cpp) needs c10/cuda
    text = LAUNCH_RE.sub(r"::shim::launch(\1, \2, \3);", path.read_text())
    if config.threads != 128:
        text = KERNEL_THREADS_RE.sub(f"constexpr int kNThreads = {config.threads};", text)
    if config.exp_bias and path.name == EXP_HEADER:
        if FAST_EXP_RETURN not in text:
            raise RuntimeError(f"{path.name}: exp_bias needs the fast exp's '{FAST_EXP_RETURN}'; the source changed")
        bias_fn = f"inline float emu_exp2f(float x) {{ return ::exp2f(x) * (1.0f + {config.exp_bias}f); }}\n"
        text = text.replace("namespace hamburg_mamba::gpu {", "namespace hamburg_mamba::gpu {\n" + bias_fn, 1)
        text = text.replace(FAST_EXP_RETURN, "return emu_exp2f(")
    if path.suffix != ".cu":
        _write_if_changed(dst / path.name, text)
        return None
    unit = dst / (path.stem + "_emu.cpp")
    _write_if_changed(unit, f"#define __CUDA_ARCH__ {config.arch}\n" + text)
    return unit


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------------------------------
# The causal conv1d kernels (csrc/causal_conv1d/cuda), built the same way into a library of their own, with
# three ops in the namespace `conv_emulator_namespace(config)` and the hamburg_mamba ops' argument order:
#     fwd(x, weight, bias?, seq_idx?, initial_states?, return_final_states, silu) -> (out, final_states)
#     bwd(x, weight, bias?, dout, seq_idx?, initial_states?, dfinal_states?, silu)
#         -> (dx, dweight, dbias, dinitial_states)
#     update(x, conv_state, weight, bias?, silu, cache_seqlens?, conv_state_indices?) -> out

CONV_BINDING = r"""
// The emulator's conv ops: the real host packing, then the CUDA launchers compiled for the CPU.
#include <torch/library.h>

#include "causal_conv1d/causal_conv1d_host.h"
#include "causal_conv1d/cuda/causal_conv1d_cuda.h"

namespace hamburg_mamba {
namespace {

void check_status(cudaError_t err, const char* op) { TORCH_CHECK(err == cudaSuccess, op, ": emulated launch failed"); }

std::tuple<at::Tensor, at::Tensor> emu_fwd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
    const OptTensor& seq_idx, const OptTensor& init, bool return_final, bool silu) {
  ConvFwdPrepared prep = prepare_conv_fwd(x, weight, bias, seq_idx, init, return_final, silu);
  check_status(gpu::causal_conv1d_fwd_cuda(prep.params, nullptr), "fwd");
  return {prep.out, prep.final_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emu_bwd(const at::Tensor& x, const at::Tensor& weight,
    const OptTensor& bias, const at::Tensor& dout, const OptTensor& seq_idx, const OptTensor& init,
    const OptTensor& dfinal, bool silu) {
  ConvBwdPrepared prep = prepare_conv_bwd(x, weight, bias, dout, seq_idx, init, dfinal, silu);
  check_status(gpu::causal_conv1d_bwd_cuda(prep.params, nullptr), "bwd");
  return finalize_conv_bwd(prep);
}

at::Tensor emu_update(const at::Tensor& x, const at::Tensor& state, const at::Tensor& weight, const OptTensor& bias,
    bool silu, const OptTensor& lens, const OptTensor& rows) {
  ConvUpdatePrepared prep = prepare_conv_update(x, state, weight, bias, silu, lens, rows);
  check_status(gpu::causal_conv1d_update_cuda(prep.params, nullptr), "update");
  finalize_conv_update(state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY(EMU_NAMESPACE, m) {
  m.def("fwd(Tensor x, Tensor weight, Tensor? bias, Tensor? seq_idx, Tensor? initial_states, "
        "bool return_final_states, bool silu) -> (Tensor, Tensor)", &emu_fwd);
  m.def("bwd(Tensor x, Tensor weight, Tensor? bias, Tensor dout, Tensor? seq_idx, Tensor? initial_states, "
        "Tensor? dfinal_states, bool silu) -> (Tensor, Tensor, Tensor, Tensor)", &emu_bwd);
  m.def("update(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, bool silu, Tensor? cache_seqlens, "
        "Tensor? conv_state_indices) -> Tensor", &emu_update);
}

}  // namespace hamburg_mamba
"""


def conv_emulator_namespace(config: EmulatorConfig) -> str:
    return config.name + "_conv"


def build_conv(config: EmulatorConfig, out_dir: Path, verbose: bool = False):
    """Compiles the causal conv1d kernels' emulator for `config` under out_dir and loads it (see `build`).
    Only config.arch matters (the conv kernels have their own block size). Returns the ops namespace."""
    return _build_library(conv_emulator_namespace(config), CONV_FOLDERS, CONV_BINDING, config, out_dir, [], verbose)


if __name__ == "__main__":
    cfg = EmulatorConfig.from_env()
    ops = build(cfg, Path(os.environ.get("EMU_OUT", "build/emu")), verbose=True)
    print("built", cfg.name, "as torch.ops." + emulator_namespace(cfg))
    build_conv(cfg, Path(os.environ.get("EMU_OUT", "build/emu")), verbose=True)
    print("built the conv kernels as torch.ops." + conv_emulator_namespace(cfg))
