// Internal: the per-ISA kernel table of the state update (state_update_cpu_kernel.inc compiled three times).
#pragma once

#include <cstdint>

#include "state_update/state_update.h"

namespace hamburg_mamba::cpu {

// The entry point of one ISA level, over the (batch, channel) rows [begin, end).
struct StateUpdateKernels {
  void (*state_update_items)(const StateUpdateParams& p, int64_t begin, int64_t end);
};

namespace avx512 {
extern const StateUpdateKernels kStateUpdateKernels;
}
namespace avx2 {
extern const StateUpdateKernels kStateUpdateKernels;
}
namespace baseline {
extern const StateUpdateKernels kStateUpdateKernels;
}

}  // namespace hamburg_mamba::cpu
