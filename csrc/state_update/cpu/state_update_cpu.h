// CPU selective state update: the torch-free entry point over raw pointers (see ../state_update.h), compiled
// once per ISA level like the scan's kernels (../../common/cpu/isa.h).
#pragma once

#include "common/cpu/parallel.h"
#include "state_update/state_update.h"

namespace hamburg_mamba::cpu {

void selective_state_update(const StateUpdateParams& p, const ParallelFor& parallel_for);

}  // namespace hamburg_mamba::cpu
