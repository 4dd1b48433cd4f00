// State-update CPU kernel compiled for AVX2 with FMA and F16C.
#include "common/cpu/kernel_headers.h"
#include "state_update_cpu_isa.h"

#include "common/cpu/target_avx2_begin.h"

namespace hamburg_mamba::cpu::avx2 {
// The kernel sources, each using the ones before it.
#include "common/cpu/vec_math.inc"

#include "state_update_cpu_kernel.inc"
}  // namespace hamburg_mamba::cpu::avx2

#include "common/cpu/target_end.h"
