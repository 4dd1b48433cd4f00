// Internal: the per-ISA entry points of the CPU kernels (selective_scan_cpu_kernel.inc compiled three
// times) and the buffers the backward fills before the dispatcher reduces them.
#pragma once

#include <cstdint>

#include "../selective_scan.h"

namespace hamburg_mamba::cpu {

// Per-item and per-batch partial gradients, in the compute type; the dispatcher sums them in a fixed
// order, which keeps the backward bitwise deterministic.
struct BwdPartials {
  void* dB = nullptr;           // (items, L, N), item = (b, g, block)
  void* dC = nullptr;           // (items, L, N)
  void* dA = nullptr;           // (B, D, N)
  void* dD = nullptr;           // (B, D)
  void* ddelta_bias = nullptr;  // (B, D)
};

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

#define HAMBURG_MAMBA_DECLARE_ISA(isa)                                                                       \
  namespace isa {                                                                                            \
  void fwd_items(const SelectiveScanParams& p, int64_t begin, int64_t end);                                  \
  void bwd_items(const SelectiveScanBwdParams& p, const BwdPartials& part, int64_t begin, int64_t end);      \
  void state_update_items(const StateUpdateParams& p, int64_t begin, int64_t end);                           \
  void gemv_items(const GemvJob& j, int64_t begin, int64_t end);                                             \
  void rms_norm_items(const MambaBlockStepParams& p, void* normed, int64_t begin, int64_t end);              \
  void conv_step_items(const MambaBlockStepParams& p, const void* xi, void* xc, int64_t begin, int64_t end); \
  }

HAMBURG_MAMBA_DECLARE_ISA(avx512)
HAMBURG_MAMBA_DECLARE_ISA(avx2)
HAMBURG_MAMBA_DECLARE_ISA(baseline)

#undef HAMBURG_MAMBA_DECLARE_ISA

}  // namespace hamburg_mamba::cpu
