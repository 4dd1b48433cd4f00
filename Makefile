# hamburg-mamba: every command sets itself up on a fresh machine (virtualenv at .venv, dependencies,
# compiled extension). `make test` is what CI runs (.ci/run).
#
#   make test      build everything (CUDA kernels too when nvcc + a CUDA torch exist) and run pytest + ctest
#   make demo      the main job: see README "Quick start"
#   make bench     CPU benchmarks of the op and the C++ kernels (results go to bench/RESULTS.md by hand)
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
export CUDA_HOME ?= /usr/local/cuda
export MAX_JOBS TORCH_CUDA_ARCH_LIST HAMBURG_MAMBA_CUDA

.PHONY: all venv system-deps build test pytest ctest bench demo clean

all: build

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

system-deps:
	bash scripts/install_system_deps.sh

# Builds hamburg_mamba._C in place (editable install): CPU kernels always, CUDA kernels when possible.
build: venv
	PATH="/usr/lib/ccache:$$PATH" $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import hamburg_mamba, torch; print('hamburg_mamba built: CPU kernels', hamburg_mamba.cpu_isa(), '| CUDA kernels', torch._C._dispatch_has_kernel_for_dispatch_key('hamburg_mamba::selective_scan_fwd', 'CUDA'))"

pytest: build
	$(PY) -m pytest -q tests

ctest: system-deps
	cmake -S . -B $(CMAKE_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CMAKE_BUILD_DIR) -j $(MAX_JOBS)
	ctest --test-dir $(CMAKE_BUILD_DIR) --output-on-failure

test: pytest ctest

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

clean:
	rm -rf build $(VENV) hamburg_mamba/*.so *.egg-info
