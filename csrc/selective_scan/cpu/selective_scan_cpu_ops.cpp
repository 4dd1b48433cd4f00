// CPU kernels of the selective-scan ops: checks and packing in ../selective_scan_host.cpp, math in the
// torch-free kernels (selective_scan_cpu.h), parallelism from at::parallel_for.
#include <torch/library.h>

#include "common/cpu/torch_parallel_for.h"
#include "selective_scan/selective_scan_host.h"
#include "selective_scan_cpu.h"

namespace hamburg_mamba {
namespace {

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

}  // namespace

TORCH_LIBRARY_IMPL(hamburg_mamba, CPU, m) {
  m.impl("selective_scan_fwd", &selective_scan_fwd_cpu);
  m.impl("selective_scan_bwd", &selective_scan_bwd_cpu);
}

}  // namespace hamburg_mamba
