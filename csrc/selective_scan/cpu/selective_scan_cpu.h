// CPU selective scan: torch-free entry points over raw pointers (see ../selective_scan.h for layouts).
//
// The kernels are compiled once per x86 ISA level and the best one the running CPU supports is picked at run
// time (../../common/cpu/isa.h). Work is split into (batch, block of kLanes channels) items, each computed by
// exactly one thread with a fixed summation order, so results are bitwise identical whatever the thread count
// (../../common/cpu/parallel.h).
#pragma once

#include "common/cpu/isa.h"
#include "common/cpu/parallel.h"
#include "selective_scan/selective_scan.h"

namespace hamburg_mamba::cpu {

void selective_scan_fwd(const SelectiveScanParams& p, const ParallelFor& parallel_for);
void selective_scan_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for);

}  // namespace hamburg_mamba::cpu
