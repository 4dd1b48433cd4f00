// Compiles the functions that follow, up to target_end.h, for AVX2 with FMA and F16C. Included by the AVX2
// kernel wrappers after every other header (see kernel_headers.h); no include guard.
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#endif
#define HAMBURG_MAMBA_ISA_PUSHED 1
#define HAMBURG_MAMBA_F16C 1  // the kernels may use the F16C conversion intrinsics
#endif
