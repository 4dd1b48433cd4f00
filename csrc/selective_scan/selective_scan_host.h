// Host-side argument checks and parameter packing of the selective-scan ops, shared by the CPU and CUDA bindings.
// Every check names the argument and what was expected; kernels then assume valid input.
#pragma once

#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>

#include "common/host.h"
#include "selective_scan.h"

namespace hamburg_mamba {

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

}  // namespace hamburg_mamba
