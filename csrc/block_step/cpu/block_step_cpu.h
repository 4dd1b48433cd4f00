// CPU fused block step: the torch-free entry point over raw pointers (see ../block_step.h), compiled once per
// ISA level like the scan's kernels (../../common/cpu/isa.h).
#pragma once

#include "block_step/block_step.h"
#include "common/cpu/parallel.h"

namespace hamburg_mamba::cpu {

void mamba_block_step(const MambaBlockStepParams& p, const ParallelFor& parallel_for);

}  // namespace hamburg_mamba::cpu
