// Run-time ISA detection of the CPU kernels (see isa.h).
#include "isa.h"

#include <cstdlib>
#include <cstring>

namespace hamburg_mamba::cpu {
namespace {

Isa detect_isa() {
  Isa best = Isa::kBaseline;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    best = Isa::kAvx512;
#endif
  // HAMBURG_MAMBA_CPU_ISA caps the level (to test or compare the variants on one machine).
  if (const char* cap = std::getenv("HAMBURG_MAMBA_CPU_ISA")) {
    if (std::strcmp(cap, "baseline") == 0) best = Isa::kBaseline;
    if (std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
  }
  return best;
}

}  // namespace

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

const char* cpu_isa() {
  switch (active_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace hamburg_mamba::cpu
