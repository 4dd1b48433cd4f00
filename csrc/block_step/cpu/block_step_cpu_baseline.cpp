// Block-step CPU kernels compiled for the x86-64 baseline (SSE2), or the compiler's default target elsewhere.
#include "block_step_cpu_isa.h"
#include "common/cpu/kernel_headers.h"

namespace hamburg_mamba::cpu::baseline {
// The kernel sources, each using the ones before it.
#include "common/cpu/vec_math.inc"

#include "block_step_cpu_kernel.inc"
}  // namespace hamburg_mamba::cpu::baseline
