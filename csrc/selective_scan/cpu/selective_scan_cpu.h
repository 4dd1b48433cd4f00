// CPU selective scan: torch-free entry points over raw pointers (see ../selective_scan.h for layouts).
//
// The kernels are compiled once per x86 ISA level (AVX-512, AVX2+FMA, baseline SSE2) and the best one the
// running CPU supports is picked at run time, so one build runs on any x86-64 without SIGILL.
// Parallelism is injected: the torch binding passes at::parallel_for, the C++ benches an OpenMP loop.
// Work is split into (batch, block of kLanes channels) items, each computed by exactly one thread with a
// fixed summation order, so results are bitwise identical whatever the thread count.
#pragma once

#include <cstdint>
#include <functional>

#include "../selective_scan.h"

namespace hamburg_mamba::cpu {

// Channels processed together in one SIMD register (16 float lanes = one AVX-512 register).
constexpr int64_t kLanes = 16;

// Runs fn(begin, end) over disjoint sub-ranges covering [0, n), possibly in parallel.
using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& fn)>;

// Runs everything on the calling thread.
void serial_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

void selective_scan_fwd(const SelectiveScanParams& p, const ParallelFor& parallel_for);
void selective_scan_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for);
void selective_state_update(const StateUpdateParams& p, const ParallelFor& parallel_for);
void mamba_block_step(const MambaBlockStepParams& p, const ParallelFor& parallel_for);

// The ISA level of the kernels this CPU runs: "avx512", "avx2" or "baseline".
// HAMBURG_MAMBA_CPU_ISA=avx2|baseline in the environment caps it (for testing and comparison).
const char* cpu_isa();

}  // namespace hamburg_mamba::cpu
