// CPU kernels of the hamburg_mamba ops: checks and packing in ../selective_scan_host.cpp, math in the
// torch-free kernels (selective_scan_cpu.h), parallelism from at::parallel_for.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../selective_scan_host.h"
#include "selective_scan_cpu.h"

namespace hamburg_mamba {
namespace {

// Each work item is a (batch, block of 16 channels) pair of many thousand state updates, so grain 1.
void torch_parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) { at::parallel_for(0, n, 1, fn); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> selective_scan_fwd_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, const OptTensor& initial_state,
    const OptTensor& dt_scale, bool delta_softplus, bool save_checkpoints) {
  FwdPrepared prep =
      prepare_fwd(u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus, save_checkpoints);
  cpu::selective_scan_fwd(prep.params, torch_parallel_for);
  return {prep.out, prep.last_state, prep.checkpoints};
}

BwdResult selective_scan_bwd_cpu(const at::Tensor& dout, const OptTensor& dlast_state, const at::Tensor& u,
                                 const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                                 const OptTensor& initial_state, const OptTensor& dt_scale,
                                 const at::Tensor& checkpoints, bool delta_softplus) {
  BwdPrepared prep = prepare_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale,
                                 checkpoints, delta_softplus);
  cpu::selective_scan_bwd(prep.params, torch_parallel_for);
  return finalize_bwd(prep);
}

at::Tensor selective_state_update_cpu(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt,
                                      const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                      const OptTensor& z, const OptTensor& dt_bias, const OptTensor& dt_scale,
                                      bool dt_softplus) {
  StateUpdatePrepared prep = prepare_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_scale, dt_softplus);
  cpu::selective_state_update(prep.params, torch_parallel_for);
  finalize_state_update(state, prep);
  return prep.out;
}

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

TORCH_LIBRARY_IMPL(hamburg_mamba, CPU, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd_cpu);
  m.impl("selective_scan_bwd", &selective_scan_bwd_cpu);
  m.impl("selective_state_update", &selective_state_update_cpu);
  m.impl("mamba_block_step", &mamba_block_step_cpu);
}

}  // namespace hamburg_mamba
