// Internal: the per-ISA kernel table of the block step (block_step_cpu_kernel.inc compiled three times).
#pragma once

#include <cstdint>

#include "block_step/block_step.h"

namespace hamburg_mamba::cpu {

// y[b, r] = residual[b, r] (when given) + sum_i W[r, i] x[b, i] over the rows r of a row-major (rows, in)
// weight; x, y and residual in the compute type `dtype`, the weight in `weight_dtype`. Items are blocks of
// kLanes rows.
struct GemvJob {
  ScalarType dtype = ScalarType::kFloat32;
  ScalarType weight_dtype = ScalarType::kFloat32;
  int64_t rows = 0, in = 0, batch = 0;
  const void* weight = nullptr;
  const void* x = nullptr;
  int64_t x_stride = 0;  // between batch rows of x
  void* y = nullptr;
  int64_t y_stride = 0;  // between batch rows of y and of residual
  const void* residual = nullptr;
};

// The entry points of one ISA level, over the items [begin, end) of each stage.
struct BlockStepKernels {
  void (*gemv_items)(const GemvJob& j, int64_t begin, int64_t end);
  void (*rms_norm_items)(const MambaBlockStepParams& p, void* normed, int64_t begin, int64_t end);
  void (*conv_step_items)(const MambaBlockStepParams& p, const void* xi, void* xc, int64_t begin, int64_t end);
};

namespace avx512 {
extern const BlockStepKernels kBlockStepKernels;
}
namespace avx2 {
extern const BlockStepKernels kBlockStepKernels;
}
namespace baseline {
extern const BlockStepKernels kBlockStepKernels;
}

}  // namespace hamburg_mamba::cpu
