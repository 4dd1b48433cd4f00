// Selective-scan CPU kernels compiled for the x86-64 baseline (SSE2), or the compiler's default target elsewhere.
#include "common/cpu/kernel_headers.h"
#include "selective_scan_cpu_isa.h"

namespace hamburg_mamba::cpu::baseline {
// The kernel sources, each using the ones before it.
#include "common/cpu/vec_math.inc"

#include "selective_scan_cpu_tiling.inc"

#include "selective_scan_cpu_scan.inc"
}  // namespace hamburg_mamba::cpu::baseline
