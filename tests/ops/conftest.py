"""Fixtures of the op tests: the device each op test runs on (the CPU always, CUDA where a device and the
compiled CUDA kernels are present), and the CUDA kernels compiled for the CPU emulator (tests/cuda_emulator),
once per session for every test module that uses them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
from scan_cases import DEVICES

EMULATOR_DIR = Path(__file__).resolve().parents[1] / "cuda_emulator"
EMULATOR_THREADS = 64  # two warps: the scan cases of test_cuda_emulator.py span several chunks at this size


def _load_build_module():
    spec = importlib.util.spec_from_file_location("cuda_emulator_build", EMULATOR_DIR / "build_emu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _build(tmp_path_factory, builder: str, config_kwargs: dict, folder: str):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the CUDA emulator compiles the .cu sources as C++20 with g++")
    build_emu = _load_build_module()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXX", gxx)  # torch's build uses $CXX, else `c++` (which may be clang)
        # torch's build runs `ninja` from PATH; the venv's ninja (a build requirement) is beside the interpreter.
        mp.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        config = build_emu.EmulatorConfig(**config_kwargs)
        return getattr(build_emu, builder)(config, tmp_path_factory.mktemp(folder))


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    """The emulated scan kernels' ops (fwd, bwd, update), compiled once per session with g++."""
    return _build(tmp_path_factory, "build", dict(threads=EMULATOR_THREADS, arch=900), "cuda_emulator")


@pytest.fixture(scope="session")
def emu_conv(tmp_path_factory):
    """The emulated conv kernels' ops (fwd, bwd, update), compiled once per session with g++."""
    return _build(tmp_path_factory, "build_conv", {}, "cuda_emulator_conv")


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc):
    """Runs every test that takes `device` once per entry of DEVICES, after its own parametrizations (so that its
    ids end in [cpu] / [cuda]); a test may parametrize `device` itself (the CUDA-only checks)."""
    if "device" in metafunc.fixturenames and not any(
        "device" in _argnames(mark) for mark in metafunc.definition.iter_markers("parametrize")
    ):
        metafunc.parametrize("device", DEVICES, indirect=True)


def _argnames(mark) -> list[str]:
    names = mark.args[0]
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


@pytest.fixture
def device(request) -> str:
    """The device an op test runs its op on: "cpu", or "cuda" (marked `cuda`, skipped without a CUDA device or
    without the compiled CUDA kernels). Inputs and references stay on the CPU; results come back to it."""
    return request.param
