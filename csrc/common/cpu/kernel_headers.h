// Everything the CPU kernel sources (*.inc) use, for their per-ISA wrappers to include first. A kernel source
// includes nothing itself: it is included inside `namespace hamburg_mamba::...::<isa>` after the target
// pragma of that ISA (target_avx512_begin.h, target_avx2_begin.h; none for the baseline), and every header
// comes before that pragma, so no inline function of a shared header is ever compiled with a newer ISA than
// the CPU may have.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include "common/common.h"
#include "common/cpu/parallel.h"
#include "common/cpu/scalar_types.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // the F16C conversions
#endif
