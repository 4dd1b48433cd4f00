// CUDA kernel of selective_state_update: checks and packing in ../state_update_host.cpp (which also rejects
// float64 and mixed devices), math in the torch-free launcher of state_update_cuda.h, launched on the current
// stream of the inputs' device.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda/cuda_binding.h"
#include "state_update/state_update_host.h"
#include "state_update_cuda.h"

namespace hamburg_mamba {
namespace {

at::Tensor selective_state_update_cuda(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt,
                                       const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                       const OptTensor& D, const OptTensor& z, const OptTensor& dt_bias,
                                       const OptTensor& dt_scale, bool dt_softplus) {
  StateUpdatePrepared prep = prepare_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(gpu::selective_state_update_cuda(prep.params, current_stream(x)),
               "hamburg_mamba.selective_state_update");
  finalize_state_update(state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CUDA, m) { m.impl("selective_state_update", &selective_state_update_cuda); }

}  // namespace hamburg_mamba
