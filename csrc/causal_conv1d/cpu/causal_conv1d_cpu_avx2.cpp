// Causal conv1d CPU kernels compiled for AVX2 with FMA and F16C (the float16 conversions).
// Every header is included before the target pragma (see causal_conv1d_cpu_kernel.inc).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "causal_conv1d/causal_conv1d.h"
#include "causal_conv1d_cpu_isa.h"
#include "selective_scan/cpu/scalar_types.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define HAMBURG_MAMBA_CONV_ISA_PUSHED 1
#endif

namespace hamburg_mamba::conv_cpu::avx2 {
using namespace hamburg_mamba::cpu;  // half_t, bfloat16_t, to_compute, store_as, ComputeOf
#include "causal_conv1d_cpu_kernel.inc"
}  // namespace hamburg_mamba::conv_cpu::avx2

#if defined(HAMBURG_MAMBA_CONV_ISA_PUSHED)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
