// Causal conv1d CPU kernels compiled for AVX2 with FMA and F16C (the float16 conversions).
#include "causal_conv1d_cpu_isa.h"
#include "common/cpu/kernel_headers.h"

#include "common/cpu/target_avx2_begin.h"

namespace hamburg_mamba::conv_cpu::avx2 {
using namespace hamburg_mamba::cpu;  // half_t, bfloat16_t, to_compute, store_as, ComputeOf
#include "causal_conv1d_cpu_kernel.inc"
}  // namespace hamburg_mamba::conv_cpu::avx2

#include "common/cpu/target_end.h"
