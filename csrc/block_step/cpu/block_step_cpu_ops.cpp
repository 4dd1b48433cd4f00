// CPU kernel of mamba_block_step: checks and packing in ../block_step_host.cpp, math in the torch-free kernels
// (block_step_cpu.h), parallelism from at::parallel_for.
#include <torch/library.h>

#include "block_step/block_step_host.h"
#include "block_step_cpu.h"
#include "common/cpu/torch_parallel_for.h"

namespace hamburg_mamba {
namespace {

at::Tensor mamba_block_step_cpu(const at::Tensor& x, const at::Tensor& norm_weight, double norm_eps,
                                const at::Tensor& in_proj_weight, const at::Tensor& conv_state,
                                const at::Tensor& conv_weight, const OptTensor& conv_bias,
                                const at::Tensor& x_proj_weight, const at::Tensor& dt_proj_weight,
                                const at::Tensor& dt_proj_bias, const at::Tensor& A, const at::Tensor& D,
                                const at::Tensor& ssm_state, const OptTensor& dt_scale,
                                const at::Tensor& out_proj_weight) {
  MambaBlockStepPrepared prep =
      prepare_mamba_block_step(x, norm_weight, norm_eps, in_proj_weight, conv_state, conv_weight, conv_bias,
                               x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, ssm_state, dt_scale, out_proj_weight);
  cpu::mamba_block_step(prep.params, torch_parallel_for);
  return prep.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CPU, m) { m.impl("mamba_block_step", &mamba_block_step_cpu); }

}  // namespace hamburg_mamba
