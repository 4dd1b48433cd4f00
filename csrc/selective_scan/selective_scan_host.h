// Host-side argument checks and parameter packing shared by the CPU and CUDA bindings.
// Every check names the argument and what was expected; kernels then assume valid input.
#pragma once

#include <optional>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>

#include "selective_scan.h"

namespace hamburg_mamba {

using OptTensor = std::optional<at::Tensor>;

struct FwdPrepared {
  SelectiveScanParams params;
  std::vector<at::Tensor> keep_alive;  // converted or made-contiguous inputs the params point into
  at::Tensor out, last_state, checkpoints;
};

FwdPrepared prepare_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                        const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                        const OptTensor& initial_state, const OptTensor& dt_scale, bool delta_softplus,
                        bool save_checkpoints);

struct BwdPrepared {
  SelectiveScanBwdParams params;
  std::vector<at::Tensor> keep_alive;
  // Gradient buffers the kernels write: du, ddelta, dz in the input dtype; the rest in the compute type.
  at::Tensor du, ddelta, dz, dA, dB, dC, dD, ddelta_bias, dinitial_state;
  // What finalize_bwd needs to return each gradient in its input's dtype and shape.
  at::Tensor A_in, B_in, C_in, D_in, delta_bias_in, initial_state_in;
};

BwdPrepared prepare_bwd(const at::Tensor& dout, const OptTensor& dlast_state, const at::Tensor& u,
                        const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                        const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                        const OptTensor& initial_state, const OptTensor& dt_scale, const at::Tensor& checkpoints,
                        bool delta_softplus);

using BwdResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                             at::Tensor, at::Tensor>;

// (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state); gradients of absent optional inputs are
// empty tensors.
BwdResult finalize_bwd(const BwdPrepared& prep);

struct StateUpdatePrepared {
  StateUpdateParams params;
  std::vector<at::Tensor> keep_alive;
  at::Tensor state_work;  // the state the kernel updates: `state` itself, or a contiguous copy
  at::Tensor out;
};

StateUpdatePrepared prepare_state_update(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt,
                                         const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                         const OptTensor& D, const OptTensor& z, const OptTensor& dt_bias,
                                         const OptTensor& dt_scale, bool dt_softplus);

// Copies the updated state back when the kernel worked on a contiguous copy.
void finalize_state_update(const at::Tensor& state, const StateUpdatePrepared& prep);

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
