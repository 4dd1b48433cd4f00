// CPU selective-scan kernels compiled for the x86-64 baseline (SSE2), or the compiler's default target elsewhere.
// Every header is included before the target pragma (see selective_scan_cpu_kernel.inc).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "../selective_scan.h"
#include "scalar_types.h"
#include "selective_scan_cpu.h"
#include "selective_scan_cpu_isa.h"

namespace hamburg_mamba::cpu::baseline {
#include "selective_scan_cpu_kernel.inc"
}  // namespace hamburg_mamba::cpu::baseline
