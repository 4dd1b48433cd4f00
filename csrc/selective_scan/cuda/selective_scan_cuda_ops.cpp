// CUDA kernels of the hamburg_mamba ops: checks and packing in ../selective_scan_host.cpp (which also
// rejects float64 and mixed devices), math in the torch-free launchers of selective_scan_cuda.h, launched
// on the current stream of the inputs' device.
// c10/cuda headers only: ATen/cuda/CUDAContext.h needs cusparse headers the minimal toolkit lacks.
#include <cstdint>
#include <limits>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../selective_scan_host.h"
#include "selective_scan_cuda.h"

namespace hamburg_mamba {
namespace {

// The host checks run first (they name a mismatched device before any guard is set); the guard then makes
// the inputs' device current for the launch.

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// One block per (batch, channel) row: the grid's x dimension holds at most 2^31 - 1 blocks.
void check_grid(int64_t rows, const char* op) {
  TORCH_CHECK_VALUE(rows <= std::numeric_limits<int32_t>::max(), op, ": B * D = ", rows,
                    " exceeds the CUDA grid limit of 2^31 - 1 (batch, channel) rows");
}

cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> selective_scan_fwd_cuda(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, const OptTensor& initial_state,
    const OptTensor& dt_scale, bool delta_softplus, bool save_checkpoints) {
  FwdPrepared prep =
      prepare_fwd(u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus, save_checkpoints);
  check_grid(prep.params.batch * prep.params.dim, "hamburg_mamba.selective_scan_fwd");
  const c10::cuda::CUDAGuard guard(u.device());
  check_launch(gpu::selective_scan_fwd_cuda(prep.params, current_stream(u)), "hamburg_mamba.selective_scan_fwd");
  return {prep.out, prep.last_state, prep.checkpoints};
}

BwdResult selective_scan_bwd_cuda(const at::Tensor& dout, const OptTensor& dlast_state, const at::Tensor& u,
                                  const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                  const OptTensor& delta_bias, const OptTensor& initial_state,
                                  const OptTensor& dt_scale, const at::Tensor& checkpoints, bool delta_softplus) {
  BwdPrepared prep = prepare_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale,
                                 checkpoints, delta_softplus);
  check_grid(prep.params.batch * prep.params.dim, "hamburg_mamba.selective_scan_bwd");
  const c10::cuda::CUDAGuard guard(u.device());
  check_launch(gpu::selective_scan_bwd_cuda(prep.params, current_stream(u)), "hamburg_mamba.selective_scan_bwd");
  return finalize_bwd(prep);
}

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

TORCH_LIBRARY_IMPL(hamburg_mamba, CUDA, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd_cuda);
  m.impl("selective_scan_bwd", &selective_scan_bwd_cuda);
  m.impl("selective_state_update", &selective_state_update_cuda);
}

}  // namespace hamburg_mamba
