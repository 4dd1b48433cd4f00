// Internal: the per-ISA kernel table of the causal conv1d (causal_conv1d_cpu_kernel.inc compiled twice: the op
// is memory-bound, so no AVX-512 variant; AVX-512 CPUs run the AVX2 one).
#pragma once

#include <cstdint>

#include "causal_conv1d/causal_conv1d.h"

namespace hamburg_mamba::conv_cpu {

// The entry points of one ISA level: forward items are (batch, channel) rows, backward items are channels,
// update items rows.
struct ConvKernels {
  void (*fwd_items)(const CausalConv1dParams& p, int64_t begin, int64_t end);
  void (*bwd_items)(const CausalConv1dBwdParams& p, int64_t begin, int64_t end);
  void (*update_items)(const CausalConv1dUpdateParams& p, int64_t begin, int64_t end);
};

namespace avx2 {
extern const ConvKernels kConvKernels;
}
namespace baseline {
extern const ConvKernels kConvKernels;
}

}  // namespace hamburg_mamba::conv_cpu
