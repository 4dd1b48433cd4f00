// Ends the target region of target_avx512_begin.h or target_avx2_begin.h; no include guard.
#undef HAMBURG_MAMBA_F16C
#if defined(HAMBURG_MAMBA_ISA_PUSHED)
#undef HAMBURG_MAMBA_ISA_PUSHED
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
