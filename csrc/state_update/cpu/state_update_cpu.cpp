// CPU state-update dispatcher: calls the kernel table of the active ISA level over the (batch, channel) rows,
// split over threads.
#include "state_update_cpu.h"

#include "common/cpu/isa.h"
#include "state_update_cpu_isa.h"

namespace hamburg_mamba::cpu {

void selective_state_update(const StateUpdateParams& p, const ParallelFor& parallel_for) {
  static const StateUpdateKernels& kernels =
      select_isa(baseline::kStateUpdateKernels, avx2::kStateUpdateKernels, avx512::kStateUpdateKernels);
  // As the scan's dispatcher: below this many state updates per task, another thread costs more than it saves.
  constexpr int64_t kMinTaskWork = int64_t{1} << 18;
  for_items(p.batch * p.dim, p.dstate, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { kernels.state_update_items(p, begin, end); });
}

}  // namespace hamburg_mamba::cpu
