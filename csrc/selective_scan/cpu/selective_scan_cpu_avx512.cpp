// CPU selective-scan kernels compiled for AVX-512 (F, DQ, BW, VL) with FMA.
// Every header is included before the target pragma (see selective_scan_cpu_kernel.inc).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "../selective_scan.h"
#include "scalar_types.h"
#include "selective_scan_cpu.h"
#include "selective_scan_cpu_isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // the F16C conversions
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c,bmi,bmi2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c,bmi,bmi2")
#endif
#define HAMBURG_MAMBA_ISA_PUSHED 1
#define HAMBURG_MAMBA_F16C 1  // the kernels may use the F16C conversion intrinsics
#endif

namespace hamburg_mamba::cpu::avx512 {
#include "selective_scan_cpu_kernel.inc"
}  // namespace hamburg_mamba::cpu::avx512

#undef HAMBURG_MAMBA_F16C
#if defined(HAMBURG_MAMBA_ISA_PUSHED)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
