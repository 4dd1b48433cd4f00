// CPU kernels of the causal conv1d ops: checks and packing in ../causal_conv1d_host.cpp, math in the
// torch-free kernels (causal_conv1d_cpu.h), parallelism from at::parallel_for.
#include <torch/library.h>

#include "causal_conv1d/causal_conv1d_host.h"
#include "causal_conv1d_cpu.h"
#include "common/cpu/torch_parallel_for.h"

namespace hamburg_mamba {
namespace {

std::tuple<at::Tensor, at::Tensor> causal_conv1d_fwd_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                         const OptTensor& bias, const OptTensor& seq_idx,
                                                         const OptTensor& initial_states, bool return_final_states,
                                                         bool silu) {
  ConvFwdPrepared prep = prepare_conv_fwd(x, weight, bias, seq_idx, initial_states, return_final_states, silu);
  cpu::causal_conv1d_fwd(prep.params, torch_parallel_for);
  return {prep.out, prep.final_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> causal_conv1d_bwd_cpu(
    const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias, const at::Tensor& dout,
    const OptTensor& seq_idx, const OptTensor& initial_states, const OptTensor& dfinal_states, bool silu) {
  ConvBwdPrepared prep = prepare_conv_bwd(x, weight, bias, dout, seq_idx, initial_states, dfinal_states, silu);
  cpu::causal_conv1d_bwd(prep.params, torch_parallel_for);
  return finalize_conv_bwd(prep);
}

at::Tensor causal_conv1d_update_cpu(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                    const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                                    const OptTensor& conv_state_indices) {
  ConvUpdatePrepared prep = prepare_conv_update(x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices);
  cpu::causal_conv1d_update(prep.params, torch_parallel_for);
  finalize_conv_update(conv_state, prep);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CPU, m) {
  m.impl("causal_conv1d_fwd", &causal_conv1d_fwd_cpu);
  m.impl("causal_conv1d_bwd", &causal_conv1d_bwd_cpu);
  m.impl("causal_conv1d_update", &causal_conv1d_update_cpu);
}

}  // namespace hamburg_mamba
