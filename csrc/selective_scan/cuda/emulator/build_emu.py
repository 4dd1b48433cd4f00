"""CPU emulation harness for the CUDA kernels (no GPU needed; slow, for correctness only).

Builds the CUDA kernels of csrc/selective_scan/cuda as CPU code (cuda_shim.h) into a torch
extension with emu_fwd / emu_bwd / emu_update, which go through the real host packing.
Usage (from the repo root, CUDA torch venv):
  EMU_THREADS=64 EMU_ARCH=900 python csrc/selective_scan/cuda/emulator/build_emu.py
  EMU_THREADS=64 python csrc/selective_scan/cuda/emulator/run_emu.py multi   # quick|n|opts|multi|half|nbig|claims|grid|long|memory
EMU_THREADS (default 128) shrinks the block to test multi-chunk paths at small L; EMU_ARCH=800 takes the
scalar-atomic path. EMU_BIAS=<rel> multiplies every decay exp by (1 + rel) to study exp bias (FAST_EXP only).
"""
import os, re, shutil, sys, glob
from torch.utils.cpp_extension import load

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))  # csrc/selective_scan
OUT = os.environ.get("EMU_OUT", "/tmp/hm_emu")
SHIM = f"{OUT}/shim"
threads = int(os.environ.get("EMU_THREADS", "128"))
arch = os.environ.get("EMU_ARCH", "900")
name = f"hm_emu_t{threads}_a{arch}" + ("_bias" if os.environ.get("EMU_BIAS") else "")
root = f"{OUT}/{name}"
dst = f"{root}/csrc/selective_scan"
shutil.rmtree(root, ignore_errors=True)
os.makedirs(f"{dst}/cuda")
os.makedirs(SHIM, exist_ok=True)
shutil.copy(f"{HERE}/cuda_shim.h", SHIM)
for h in ("cuda_runtime.h", "cuda_runtime_api.h", "cuda_fp16.h", "cuda_bf16.h"):
    open(f"{SHIM}/{h}", "w").write('#pragma once\n#include "cuda_shim.h"\n')
for f in ["selective_scan.h", "selective_scan_host.h", "selective_scan_host.cpp"]:
    shutil.copy(f"{SRC}/{f}", f"{dst}/{f}")
launch_re = re.compile(r"([\w:]+(?:<[^<>]*>)?)<<<(.*?)>>>\((.*?)\);")
for path in glob.glob(f"{SRC}/cuda/*"):
    base = os.path.basename(path)
    if os.path.isdir(path) or base.endswith(".cpp"):
        continue  # the real binding needs c10/cuda
    text = open(path).read()
    text = launch_re.sub(r"::shim::launch(\1, \2, \3);", text)
    if threads != 128:
        text, k = re.subn(r"constexpr int kNThreads = 128;", f"constexpr int kNThreads = {threads};", text)
    if base.endswith(".cu"):
        text = f"#define __CUDA_ARCH__ {arch}\n" + text
    if os.environ.get("EMU_BIAS") and base.endswith(".cuh"):
        text = text.replace("namespace hamburg_mamba::gpu {", "namespace hamburg_mamba::gpu {\ninline float emu_exp2f(float x) { return ::exp2f(x) * (1.0f + %sf); }" % os.environ["EMU_BIAS"], 1)
    if os.environ.get("EMU_BIAS"):
        text = text.replace("exp2f(s", "emu_exp2f(s")
    if base.endswith(".cu"):
        base = base[:-3] + "_emu.cpp"
    open(f"{dst}/cuda/{base}", "w").write(text)

binding = r'''
#include <torch/extension.h>
#include "selective_scan_host.h"
#include "cuda/selective_scan_cuda.h"
using namespace hamburg_mamba;
std::tuple<at::Tensor, at::Tensor, at::Tensor> emu_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& bias,
    const OptTensor& init, const OptTensor& scale, bool softplus, bool save) {
  FwdPrepared prep = prepare_fwd(u, delta, A, B, C, D, z, bias, init, scale, softplus, save);
  TORCH_CHECK(gpu::selective_scan_fwd_cuda(prep.params, nullptr) == cudaSuccess);
  return {prep.out, prep.last_state, prep.checkpoints};
}
BwdResult emu_bwd(const at::Tensor& dout, const OptTensor& dlast, const at::Tensor& u, const at::Tensor& delta,
    const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
    const OptTensor& bias, const OptTensor& init, const OptTensor& scale, const at::Tensor& chk, bool softplus) {
  BwdPrepared prep = prepare_bwd(dout, dlast, u, delta, A, B, C, D, z, bias, init, scale, chk, softplus);
  TORCH_CHECK(gpu::selective_scan_bwd_cuda(prep.params, nullptr) == cudaSuccess);
  return finalize_bwd(prep);
}
at::Tensor emu_update(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& bias,
    const OptTensor& scale, bool softplus) {
  StateUpdatePrepared prep = prepare_state_update(state, x, dt, A, B, C, D, z, bias, scale, softplus);
  TORCH_CHECK(gpu::selective_state_update_cuda(prep.params, nullptr) == cudaSuccess);
  finalize_state_update(state, prep);
  return prep.out;
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &emu_fwd); m.def("bwd", &emu_bwd); m.def("update", &emu_update);
}
'''
open(f"{dst}/emu_binding.cpp", "w").write(binding)
srcs = [f"{dst}/emu_binding.cpp", f"{dst}/selective_scan_host.cpp"] + sorted(glob.glob(f"{dst}/cuda/*_emu.cpp"))
mod = load(name=name, sources=srcs, build_directory=root,
           extra_include_paths=[SHIM, dst],
           extra_cflags=["-O1", "-std=c++20", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas"],
           verbose=False)
print("built", mod.__file__)
