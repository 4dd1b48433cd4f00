// The CPU kernels' ParallelFor in the torch bindings (csrc/<op>/cpu/*_ops.cpp): at::parallel_for with grain 1,
// since the dispatchers size their tasks themselves (for_items in parallel.h).
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/Parallel.h>

namespace hamburg_mamba {

inline void torch_parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  at::parallel_for(0, n, 1, fn);
}

}  // namespace hamburg_mamba
