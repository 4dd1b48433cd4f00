// Internal: the per-ISA entry points of the causal conv1d CPU kernels (causal_conv1d_cpu_kernel.inc
// compiled twice).
#pragma once

#include <cstdint>

#include "causal_conv1d/causal_conv1d.h"

namespace hamburg_mamba::conv_cpu {

#define HAMBURG_MAMBA_DECLARE_CONV_ISA(isa)                                         \
  namespace isa {                                                                   \
  void fwd_items(const CausalConv1dParams& p, int64_t begin, int64_t end);          \
  void bwd_items(const CausalConv1dBwdParams& p, int64_t begin, int64_t end);       \
  void update_items(const CausalConv1dUpdateParams& p, int64_t begin, int64_t end); \
  }

HAMBURG_MAMBA_DECLARE_CONV_ISA(avx2)
HAMBURG_MAMBA_DECLARE_CONV_ISA(baseline)

#undef HAMBURG_MAMBA_DECLARE_CONV_ISA

}  // namespace hamburg_mamba::conv_cpu
