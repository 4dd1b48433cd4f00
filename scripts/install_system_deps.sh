#!/usr/bin/env bash
# System packages for the C++ tests and benches (CMakeLists.txt): GoogleTest, Google Benchmark, CMake, Ninja;
# and Chromium, in which tests/eval/test_report.py opens report.html headless to check every figure renders.
# Idempotent: installs nothing when the headers are already there. Debian/Ubuntu (apt) only.
set -euo pipefail

if [[ -d /usr/include/gtest && -d /usr/include/benchmark ]] && command -v cmake >/dev/null && command -v ninja >/dev/null \
   && command -v chromium >/dev/null; then
  echo "install_system_deps: GoogleTest, Google Benchmark, cmake, ninja and chromium already present"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install_system_deps: apt-get not found; install GoogleTest (>= 1.10), Google Benchmark (>= 1.7)," \
       "CMake (>= 3.22), Ninja and Chromium with your package manager" >&2
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends libgtest-dev libbenchmark-dev cmake ninja-build chromium
