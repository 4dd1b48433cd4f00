// Host-side argument checks and parameter packing of mamba_block_step (CPU only). Every check names the
// argument and what was expected; the kernel then assumes valid input.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "block_step.h"
#include "common/host.h"

namespace hamburg_mamba {

struct MambaBlockStepPrepared {
  MambaBlockStepParams params;
  std::vector<at::Tensor> keep_alive;  // dt_scale in the compute type, the workspace
  at::Tensor out;
};

// Checks every argument (shapes, dtypes, one device, contiguity) and packs the params; conv_state and
// ssm_state are updated in place by the kernel.
MambaBlockStepPrepared prepare_mamba_block_step(const at::Tensor& x, const at::Tensor& norm_weight, double norm_eps,
                                                const at::Tensor& in_proj_weight, const at::Tensor& conv_state,
                                                const at::Tensor& conv_weight, const OptTensor& conv_bias,
                                                const at::Tensor& x_proj_weight, const at::Tensor& dt_proj_weight,
                                                const at::Tensor& dt_proj_bias, const at::Tensor& A,
                                                const at::Tensor& D, const at::Tensor& ssm_state,
                                                const OptTensor& dt_scale, const at::Tensor& out_proj_weight);

}  // namespace hamburg_mamba
