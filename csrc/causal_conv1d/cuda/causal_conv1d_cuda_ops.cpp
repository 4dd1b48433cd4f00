// CUDA kernels of the causal conv1d ops: checks and packing in ../causal_conv1d_host.cpp (which also
// rejects float64 and mixed devices), math in the torch-free launchers of causal_conv1d_cuda.h, launched on
// the current stream of the inputs' device.
#include <cstdint>
#include <limits>

#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "causal_conv1d/causal_conv1d_host.h"
#include "causal_conv1d_cuda.h"
#include "common/cuda/cuda_binding.h"

namespace hamburg_mamba {
namespace {

// One thread per element: the grid's x dimension holds at most 2^31 - 1 blocks of kConvThreads.
void check_grid(int64_t elements, const char* op) {
  constexpr int64_t kMaxElements = int64_t{std::numeric_limits<int32_t>::max()} * 256;
  TORCH_CHECK_VALUE(elements <= kMaxElements, op, ": ", elements, " elements exceed the CUDA grid limit of ",
                    kMaxElements);
}

std::tuple<at::Tensor, at::Tensor> causal_conv1d_fwd_cuda(const at::Tensor& x, const at::Tensor& weight,
                                                          const OptTensor& bias, const OptTensor& seq_idx,
                                                          const OptTensor& initial_states, bool return_final_states,
                                                          bool silu) {
  const char* op = "hamburg_mamba.causal_conv1d_fwd";
  ConvFwdPrepared prep = prepare_conv_fwd(x, weight, bias, seq_idx, initial_states, return_final_states, silu);
  check_grid(x.numel(), op);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(gpu::causal_conv1d_fwd_cuda(prep.params, current_stream(x)), op);
  return {prep.out, prep.final_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> causal_conv1d_bwd_cuda(
    const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias, const at::Tensor& dout,
    const OptTensor& seq_idx, const OptTensor& initial_states, const OptTensor& dfinal_states, bool silu) {
  const char* op = "hamburg_mamba.causal_conv1d_bwd";
  ConvBwdPrepared prep = prepare_conv_bwd(x, weight, bias, dout, seq_idx, initial_states, dfinal_states, silu);
  check_grid(x.size(0) * x.size(1) * (x.size(2) + weight.size(1)), op);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(gpu::causal_conv1d_bwd_cuda(prep.params, current_stream(x)), op);
  return finalize_conv_bwd(prep);
}

at::Tensor causal_conv1d_update_cuda(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                     const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                                     const OptTensor& conv_state_indices) {
  const char* op = "hamburg_mamba.causal_conv1d_update";
  ConvUpdatePrepared prep = prepare_conv_update(x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices);
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(gpu::causal_conv1d_update_cuda(prep.params, current_stream(x)), op);
  finalize_conv_update(conv_state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CUDA, m) {
  m.impl("causal_conv1d_fwd", &causal_conv1d_fwd_cuda);
  m.impl("causal_conv1d_bwd", &causal_conv1d_bwd_cuda);
  m.impl("causal_conv1d_update", &causal_conv1d_update_cuda);
}

}  // namespace hamburg_mamba
