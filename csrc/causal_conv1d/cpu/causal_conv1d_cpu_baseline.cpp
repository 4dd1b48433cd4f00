// Causal conv1d CPU kernels for the x86-64 baseline (SSE2), or the compiler's default target elsewhere.
#include "causal_conv1d_cpu_isa.h"
#include "common/cpu/kernel_headers.h"

namespace hamburg_mamba::conv_cpu::baseline {
using namespace hamburg_mamba::cpu;  // half_t, bfloat16_t, to_compute, store_as, ComputeOf
#include "causal_conv1d_cpu_kernel.inc"
}  // namespace hamburg_mamba::conv_cpu::baseline
