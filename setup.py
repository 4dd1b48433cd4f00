"""Builds hamburg_mamba._C, the compiled ops (selective scan, state update, fused block step, causal conv1d),
registered as torch.ops.hamburg_mamba.*.

Each op family has its folder csrc/<op>/ (selective_scan, state_update, block_step, causal_conv1d): schemas and
host checks at its top, cpu/ and cuda/ kernels below (cuda/ where a CUDA kernel exists). csrc/common/ holds
what they share: the module and its library, scalar types, host helpers, the CPU vector math and ISA dispatch
table, the CUDA dtype conversions. Sources are picked by folder, so a new op folder needs no change here.
mamba_inner has no C++: like mamba_ssm's mamba_inner_fn, it is Python over the conv and scan kernels
(hamburg_mamba/ops/mamba_inner.py).

CPU kernels are always built. CUDA kernels are built when nvcc and a CUDA build of torch are present.
Environment:
  HAMBURG_MAMBA_CUDA=auto|1|0   auto (default) builds CUDA when possible; 1 requires it; 0 skips it.
  TORCH_CUDA_ARCH_LIST          CUDA architectures (default "8.0;9.0").
  CUDA_HOME                     CUDA toolkit (default /usr/local/cuda when it exists).
  MAX_JOBS                      parallel compile jobs (ninja).
Install with `pip install --no-build-isolation .` so the extension is built against the installed torch.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

# torch reads CUDA_HOME when cpp_extension is imported; a wrapper nvcc on PATH makes it guess wrong.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


def want_cuda() -> bool:
    mode = os.environ.get("HAMBURG_MAMBA_CUDA", "auto").lower()
    if mode not in {"auto", "0", "1"}:
        raise SystemExit(f"HAMBURG_MAMBA_CUDA must be auto, 0 or 1, got {mode!r}")
    available = (
        torch.version.cuda is not None
        and CUDA_HOME is not None
        and (os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")) or shutil.which("nvcc") is not None)
    )
    if mode == "1" and not available:
        raise SystemExit(
            "HAMBURG_MAMBA_CUDA=1 but CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
        )
    return available and mode != "0"


def sources(with_cuda: bool) -> list[str]:
    def files(*patterns: str) -> list[str]:
        return sorted(path for pattern in patterns for path in glob.glob(os.path.join(CSRC, *pattern.split("/"))))

    cpu = files("*/*.cpp", "*/cpu/*.cpp")
    if not with_cuda:
        return cpu
    return cpu + files("*/cuda/*.cu", "*/cuda/*.cpp")


def extension():
    with_cuda = want_cuda()
    # C++20: torch >= 2.13 headers need it. -ffp-contract=fast lets the vector code use FMA where the ISA has
    # it; no -ffast-math (NaN/inf semantics must hold). -fopenmp in compile and link flags: at::parallel_for
    # is OpenMP inline code.
    cxx = [
        "-O3",
        "-std=c++20",
        "-ffp-contract=fast",
        "-fopenmp",
        "-fvisibility=hidden",
        "-Wall",
        "-Wno-unknown-pragmas",
        "-Wno-psabi",
    ]
    kwargs = dict(
        name="hamburg_mamba._C",
        sources=sources(with_cuda),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
    if with_cuda:
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo", "-DHAMBURG_MAMBA_WITH_CUDA"]
        return CUDAExtension(extra_compile_args={"cxx": cxx + ["-DHAMBURG_MAMBA_WITH_CUDA"], "nvcc": nvcc}, **kwargs)
    return CppExtension(extra_compile_args={"cxx": cxx}, **kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
