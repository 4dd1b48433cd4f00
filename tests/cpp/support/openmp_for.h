// An OpenMP ParallelFor for the CPU kernels (hamburg_mamba::cpu::ParallelFor), shared by the C++ tests and
// benches. The torch extension passes at::parallel_for instead; like it, this splits [0, n) into one
// contiguous range per thread (static schedule), and the kernels' results do not depend on the split.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <functional>

#include "common/cpu/parallel.h"

namespace hamburg_mamba::cpu {

// Runs fn over [0, n) on up to `threads` OpenMP threads (0: the OpenMP default, OMP_NUM_THREADS).
inline void openmp_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int threads) {
  if (n <= 0) return;
  const int64_t team = std::min<int64_t>(n, threads > 0 ? threads : omp_get_max_threads());
  if (team <= 1) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(static_cast<int>(team))
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t begin = n * tid / nt, end = n * (tid + 1) / nt;
    if (begin < end) fn(begin, end);
  }
}

// A ParallelFor bound to a thread count (0: the OpenMP default).
inline ParallelFor make_openmp_for(int threads = 0) {
  return [threads](int64_t n, const std::function<void(int64_t, int64_t)>& fn) { openmp_for(n, fn, threads); };
}

}  // namespace hamburg_mamba::cpu
