# hamburg-mamba: every command sets itself up on a fresh machine (virtualenv at .venv, dependencies,
# compiled extension). `make test` is what CI runs (.ci/run).
#
#   make test      lint, build everything (CUDA kernels too when nvcc + a CUDA torch exist) and run pytest,
#                  ctest and the C++ tests again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo      the main job: see README "Quick start"
#   make bench     CPU benchmarks of the op and the C++ kernels (results go to bench/RESULTS.md by hand)
#   make lint      ruff (lint + format check) and clang-format (check only); the first step of `make test`
#   make mutants   mutation testing of the modules whose numbers users act on (on demand, never in CI)
#
# Variables: TORCH_SPEC (default torch==2.14.1, the CUDA build; torch==2.13.0 is a fast CPU-only build),
# TORCH_CUDA_ARCH_LIST (default 9.0 here: one arch is enough for a compile-and-link check; setup.py's own
# default is 8.0;9.0), HAMBURG_MAMBA_CUDA=auto|0|1, MAX_JOBS.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1
MAX_JOBS ?= 2
TORCH_CUDA_ARCH_LIST ?= 9.0
HAMBURG_MAMBA_CUDA ?= auto
CMAKE_BUILD_DIR ?= build/cmake
ASAN_BUILD_DIR ?= build/cmake-asan
export CUDA_HOME ?= /usr/local/cuda
export MAX_JOBS TORCH_CUDA_ARCH_LIST HAMBURG_MAMBA_CUDA

.PHONY: all venv system-deps build test pytest ctest ctest-asan bench demo lint mutants clean FORCE

all: build

# ---------------------------------------------------------------------------------------------------------
# Set-up, in three stamps under $(VENV). A stamp that holds a value (.torch-spec, .build-config) is rewritten
# only when the value differs, so make redoes the steps after it exactly when TORCH_SPEC or a build switch
# changed (`make test TORCH_SPEC=torch==2.13.0` on an existing venv installs that torch and rebuilds).
TORCH_SPEC_STAMP := $(VENV)/.torch-spec
BUILD_CONFIG_STAMP := $(VENV)/.build-config
TORCH_STAMP := $(VENV)/.torch
INSTALL_STAMP := $(VENV)/.installed
BUILD_CONFIG := HAMBURG_MAMBA_CUDA=$(HAMBURG_MAMBA_CUDA) TORCH_CUDA_ARCH_LIST=$(TORCH_CUDA_ARCH_LIST)
EXT_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.inc' -o -name '*.cu' -o -name '*.cuh')

define record_value
	@mkdir -p $(@D)
	@if [[ "$$(cat $@ 2>/dev/null)" != '$(1)' ]]; then echo '$(1)' > $@; echo "$@: $(1)"; fi
endef

$(TORCH_SPEC_STAMP): FORCE
	$(call record_value,$(TORCH_SPEC))

$(BUILD_CONFIG_STAMP): FORCE
	$(call record_value,$(BUILD_CONFIG))

# torch first, with pyproject.toml's [build-system] requires: `--no-build-isolation` installs none of them and
# builds against the environment's torch (an isolated build would fetch another torch: an ABI mismatch).
$(TORCH_STAMP): $(TORCH_SPEC_STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)" $$($(PY) scripts/build_requires.py --except torch)
	$(PY) -c "import torch; print('torch', torch.__version__, 'for TORCH_SPEC=$(TORCH_SPEC)')"
	touch $@

# One pip call installs the package with its test and bench extras and builds hamburg_mamba._C in place
# (editable): CPU kernels always, CUDA kernels when possible. The venv's bin/ goes on PATH for its ninja.
$(INSTALL_STAMP): $(TORCH_STAMP) $(BUILD_CONFIG_STAMP) pyproject.toml setup.py $(EXT_SOURCES)
	PATH="$(abspath $(VENV))/bin:/usr/lib/ccache:$$PATH" \
	  $(PY) -m pip install -q --no-build-isolation -e ".[test,bench]"
	touch $@

venv build: $(INSTALL_STAMP)
	$(PY) -c "import hamburg_mamba, torch; print('hamburg_mamba built: CPU kernels', hamburg_mamba.cpu_isa(), '| CUDA kernels', torch._C._dispatch_has_kernel_for_dispatch_key('hamburg_mamba::selective_scan_fwd', 'CUDA'))"

system-deps:
	bash scripts/install_system_deps.sh

# ---------------------------------------------------------------------------------------------------------
pytest: build
	$(PY) -m pytest -q tests

ctest: system-deps
	cmake -S . -B $(CMAKE_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CMAKE_BUILD_DIR) -j $(MAX_JOBS)
	ctest --test-dir $(CMAKE_BUILD_DIR) --output-on-failure

# The C++ unit tests once more under AddressSanitizer and UndefinedBehaviorSanitizer (any report fails the
# test: -fno-sanitize-recover=all; options in CMakeLists.txt, HAMBURG_MAMBA_SANITIZE). No benches, no CUDA.
# Measured (2026-12-01, 2-core machine, no ccache): 6.7 CPU-minutes to build (about 4 minutes on two idle cores;
# most of it the instrumented test file) and 18 CPU-seconds to run the 64 tests. OpenMP (libgomp) needs no
# ASAN_OPTIONS: no leak or sanitizer report came from it; UBSan runs with its defaults, nothing suppressed.
ctest-asan: system-deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAMBURG_MAMBA_SANITIZE=ON \
	  -DHAMBURG_MAMBA_BUILD_BENCHES=OFF -DHAMBURG_MAMBA_BUILD_CUDA=OFF
	cmake --build $(ASAN_BUILD_DIR) -j $(MAX_JOBS)
	ctest --test-dir $(ASAN_BUILD_DIR) --output-on-failure

test: lint pytest ctest ctest-asan

# The main job: synthetic Hamburg -> train Mamba, hybrid, GRU, Transformer -> CatBoost, NEWS2, oracle ->
# metrics and report (runs/demo/report/README.md). The demo runs on the CPU, so its build skips the CUDA
# kernels (the nvcc compile is minutes of the 15-minute budget on 2 cores); `make test` builds them again.
# About 6 minutes on 2 CPU cores after set-up (about 9 from a fresh clone).
demo: HAMBURG_MAMBA_CUDA = 0
demo: build
	$(PY) -m hamburg_mamba.cli demo --out runs/demo

bench: build ctest
	$(PY) bench/bench_scan.py
	$(CMAKE_BUILD_DIR)/bench_selective_scan_cpu --benchmark_min_time=0.5

# ---------------------------------------------------------------------------------------------------------
# Checks only, never rewrites; every tool runs, and the target fails if any of them found something.
# `ruff format .` and `clang-format -i` fix what they report.
CPP_SOURCES = $(shell find csrc tests/cpp tests/cuda_emulator bench/cpp -name '*.cpp' -o -name '*.h' -o -name '*.inc' -o -name '*.cu' -o -name '*.cuh')
lint: $(INSTALL_STAMP)
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/clang-format --dry-run --Werror $(CPP_SOURCES) || status=1; \
	exit $$status

# ---------------------------------------------------------------------------------------------------------
# Mutation testing, on demand (docs/testing.md "Mutation testing"): mutmut 3 rewrites the modules listed in
# pyproject.toml [tool.mutmut] one mutant at a time in mutants/ and runs the tests that reach each mutated
# function; results are kept there, so a second run only tries new or changed mutants. Then the per-module
# table and every mutant not killed, and the hand-written C++ mutants (scripts/cpp_mutants.py).
mutants: build
	nice -n 10 $(PY) scripts/mutation_report.py run --max-children $(MAX_JOBS)
	$(PY) scripts/mutation_report.py report --equivalent docs/mutation_equivalent.txt --survivors
	nice -n 10 $(PY) scripts/cpp_mutants.py

clean:
	rm -rf build $(VENV) hamburg_mamba/*.so *.egg-info

FORCE:
