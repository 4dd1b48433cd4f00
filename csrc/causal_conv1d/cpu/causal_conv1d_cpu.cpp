// CPU causal conv1d dispatcher: picks the ISA variant once and splits the work items over threads.
#include "causal_conv1d_cpu.h"

#include <algorithm>
#include <cstring>

#include "causal_conv1d_cpu_isa.h"

namespace hamburg_mamba::cpu {
namespace {

bool use_avx2() {
  // The scan's detection (with its HAMBURG_MAMBA_CPU_ISA cap): AVX-512 CPUs also run the AVX2 variant.
  static const bool avx2 = std::strcmp(cpu_isa(), "baseline") != 0;
  return avx2;
}

// Below this many multiply-adds per task, waking another thread costs more than it saves.
constexpr int64_t kMinTaskWork = int64_t{1} << 16;

// Runs fn over [0, items) in at most as many contiguous tasks as keep each above kMinTaskWork. Results do
// not depend on the split: every item is computed by one thread in a fixed order.
template <typename F>
void for_items(int64_t items, int64_t work_per_item, const ParallelFor& parallel_for, const F& fn) {
  const int64_t tasks = std::min(items, std::max<int64_t>(1, items * work_per_item / kMinTaskWork));
  if (tasks <= 1) {
    if (items > 0) fn(0, items);
    return;
  }
  parallel_for(tasks, [&](int64_t begin, int64_t end) { fn(begin * items / tasks, end * items / tasks); });
}

}  // namespace

void causal_conv1d_fwd(const CausalConv1dParams& p, const ParallelFor& parallel_for) {
  const bool avx2 = use_avx2();
  for_items(p.batch * p.dim, p.seqlen * p.width, parallel_for, [&](int64_t begin, int64_t end) {
    avx2 ? conv_cpu::avx2::fwd_items(p, begin, end) : conv_cpu::baseline::fwd_items(p, begin, end);
  });
}

void causal_conv1d_bwd(const CausalConv1dBwdParams& p, const ParallelFor& parallel_for) {
  const bool avx2 = use_avx2();
  for_items(p.dim, 3 * p.batch * p.seqlen * p.width, parallel_for, [&](int64_t begin, int64_t end) {
    avx2 ? conv_cpu::avx2::bwd_items(p, begin, end) : conv_cpu::baseline::bwd_items(p, begin, end);
  });
}

void causal_conv1d_update(const CausalConv1dUpdateParams& p, const ParallelFor& parallel_for) {
  const bool avx2 = use_avx2();
  for_items(p.batch * p.dim, p.seqlen * p.width + p.state_len, parallel_for, [&](int64_t begin, int64_t end) {
    avx2 ? conv_cpu::avx2::update_items(p, begin, end) : conv_cpu::baseline::update_items(p, begin, end);
  });
}

}  // namespace hamburg_mamba::cpu
