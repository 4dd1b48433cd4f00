// Internal: the per-ISA kernel table of the selective scan (selective_scan_cpu_{scan,tiling}.inc compiled
// three times) and the buffers the backward fills before the dispatcher reduces them.
#pragma once

#include <cstdint>

#include "selective_scan/selective_scan.h"

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

// The entry points of one ISA level, over the work items [begin, end).
struct ScanKernels {
  void (*fwd_items)(const SelectiveScanParams& p, int64_t begin, int64_t end);
  void (*bwd_items)(const SelectiveScanBwdParams& p, const BwdPartials& part, int64_t begin, int64_t end);
};

namespace avx512 {
extern const ScanKernels kScanKernels;
}
namespace avx2 {
extern const ScanKernels kScanKernels;
}
namespace baseline {
extern const ScanKernels kScanKernels;
}

}  // namespace hamburg_mamba::cpu
