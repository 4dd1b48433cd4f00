// The ISA dispatch of the CPU kernels, torch-free. Each op's kernels are compiled once per x86 ISA level
// (AVX-512, AVX2+FMA, baseline SSE2: one translation unit each, the same source in the namespace
// hamburg_mamba::...::<isa>), and each of those units fills one table of function pointers of that op (a
// struct per op, e.g. ScanKernels). The level is detected once per process; every entry point calls through
// the table of that level, so one build runs on any x86-64 without SIGILL.
#pragma once

namespace hamburg_mamba::cpu {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The best level this CPU supports, detected once. HAMBURG_MAMBA_CPU_ISA=avx2|baseline in the environment
// caps it (for testing and comparison).
Isa active_isa();

// The name of active_isa(): "avx512", "avx2" or "baseline".
const char* cpu_isa();

// The table of the active level among an op's per-level tables (an op without an AVX-512 variant passes its
// AVX2 table twice).
template <typename Kernels>
const Kernels& select_isa(const Kernels& baseline, const Kernels& avx2, const Kernels& avx512) {
  switch (active_isa()) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    default: return baseline;
  }
}

}  // namespace hamburg_mamba::cpu
