// How the CPU kernels split their work, torch-free. Parallelism is injected: the torch bindings pass
// at::parallel_for, the C++ tests and benches an OpenMP loop. Each work item is computed by exactly one thread
// with a fixed summation order, so results are bitwise identical whatever the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace hamburg_mamba::cpu {

// Channels (or rows) processed together in one SIMD register (16 float lanes = one AVX-512 register).
constexpr int64_t kLanes = 16;

// Runs fn(begin, end) over disjoint sub-ranges covering [0, n), possibly in parallel.
using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& fn)>;

// Runs everything on the calling thread.
inline void serial_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

// Runs fn(begin, end) over [0, items) in at most as many contiguous tasks as keep each above min_task_work
// (below it, waking another thread costs more than it saves, and on a busy machine a descheduled OpenMP
// thread stalls the whole team). Results do not depend on the split.
template <typename F>
void for_items(int64_t items, int64_t work_per_item, int64_t min_task_work, const ParallelFor& parallel_for,
               const F& fn) {
  const int64_t tasks = std::min(items, std::max<int64_t>(1, items * work_per_item / min_task_work));
  if (tasks <= 1) {
    if (items > 0) fn(0, items);
    return;
  }
  parallel_for(tasks, [&](int64_t begin, int64_t end) { fn(begin * items / tasks, end * items / tasks); });
}

}  // namespace hamburg_mamba::cpu
