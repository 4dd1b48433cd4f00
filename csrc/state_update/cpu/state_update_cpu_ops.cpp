// CPU kernel of selective_state_update: checks and packing in ../state_update_host.cpp, math in the torch-free kernels
// (state_update_cpu.h), parallelism from at::parallel_for.
#include <torch/library.h>

#include "common/cpu/torch_parallel_for.h"
#include "state_update/state_update_host.h"
#include "state_update_cpu.h"

namespace hamburg_mamba {
namespace {

at::Tensor selective_state_update_cpu(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt,
                                      const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                      const OptTensor& z, const OptTensor& dt_bias, const OptTensor& dt_scale,
                                      bool dt_softplus) {
  StateUpdatePrepared prep = prepare_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus);
  cpu::selective_state_update(prep.params, torch_parallel_for);
  finalize_state_update(state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CPU, m) { m.impl("selective_state_update", &selective_state_update_cpu); }

}  // namespace hamburg_mamba
