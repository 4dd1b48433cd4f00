"""The compiled library runs on any x86-64: vector instructions beyond SSE2 appear only in the kernels
compiled for that ISA, which are called only after the run-time CPU check (no SIGILL on older CPUs)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import hamburg_mamba._C

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("objdump") is None, reason="needs x86-64 and objdump"
)


def functions_using(pattern: str) -> set[str]:
    so = Path(hamburg_mamba._C.__file__)
    disassembly = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(so)], capture_output=True, text=True, check=True
    ).stdout
    found, current = set(), ""
    regex = re.compile(pattern)
    for line in disassembly.splitlines():
        if line.endswith(">:"):
            current = line
        elif regex.search(line):
            found.add(current)
    return found


def test_avx_registers_only_in_isa_specific_kernels():
    offenders = [f for f in functions_using(r"%ymm|%zmm") if "avx512::" not in f and "avx2::" not in f]
    # CUDA host stubs and torch's inline code must not use AVX either.
    assert not offenders, offenders[:5]


def test_avx512_only_in_avx512_kernels():
    offenders = [f for f in functions_using(r"%zmm|\{%k[1-7]\}") if "avx512::" not in f]
    assert not offenders, offenders[:5]


def test_every_isa_variant_is_compiled_in():
    names = " ".join(functions_using(r"%xmm|%ymm|%zmm"))
    for isa in ("avx512::fwd_range", "avx2::fwd_range", "baseline::fwd_range", "avx512::bwd_range"):
        assert isa in names, isa
