// CUDA kernels of the selective-scan ops: checks and packing in ../selective_scan_host.cpp (which also
// rejects float64 and mixed devices), math in the torch-free launchers of selective_scan_cuda.h, launched
// on the current stream of the inputs' device.
#include <cstdint>
#include <limits>

#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda/cuda_binding.h"
#include "selective_scan/selective_scan_host.h"
#include "selective_scan_cuda.h"

namespace hamburg_mamba {
namespace {

// The host checks run first (they name a mismatched device before any guard is set); the guard then makes
// the inputs' device current for the launch.

// One block per (batch, channel) row: the grid's x dimension holds at most 2^31 - 1 blocks.
void check_grid(int64_t rows, const char* op) {
  TORCH_CHECK_VALUE(rows <= std::numeric_limits<int32_t>::max(), op, ": B * D = ", rows,
                    " exceeds the CUDA grid limit of 2^31 - 1 (batch, channel) rows");
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

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CUDA, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd_cuda);
  m.impl("selective_scan_bwd", &selective_scan_bwd_cuda);
}

}  // namespace hamburg_mamba
