// CPU causal conv1d dispatcher: calls the kernel table of the active ISA level over the work items, split over
// threads.
#include "causal_conv1d_cpu.h"

#include "causal_conv1d_cpu_isa.h"
#include "common/cpu/isa.h"

namespace hamburg_mamba::cpu {
namespace {

// The kernel table of the active ISA level, picked once.
const conv_cpu::ConvKernels& kernels() {
  static const conv_cpu::ConvKernels& table =
      select_isa(conv_cpu::baseline::kConvKernels, conv_cpu::avx2::kConvKernels, conv_cpu::avx2::kConvKernels);
  return table;
}

// Below this many multiply-adds per task, waking another thread costs more than it saves.
constexpr int64_t kMinTaskWork = int64_t{1} << 16;

}  // namespace

void causal_conv1d_fwd(const CausalConv1dParams& p, const ParallelFor& parallel_for) {
  const auto fwd_items = kernels().fwd_items;
  for_items(p.batch * p.dim, p.seqlen * p.width, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { fwd_items(p, begin, end); });
}

void causal_conv1d_bwd(const CausalConv1dBwdParams& p, const ParallelFor& parallel_for) {
  const auto bwd_items = kernels().bwd_items;
  for_items(p.dim, 3 * p.batch * p.seqlen * p.width, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { bwd_items(p, begin, end); });
}

void causal_conv1d_update(const CausalConv1dUpdateParams& p, const ParallelFor& parallel_for) {
  const auto update_items = kernels().update_items;
  for_items(p.batch * p.dim, p.seqlen * p.width + p.state_len, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { update_items(p, begin, end); });
}

}  // namespace hamburg_mamba::cpu
