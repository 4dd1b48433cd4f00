// Host-side argument checks and parameter packing of selective_state_update, shared by the CPU and CUDA
// bindings. Every check names the argument and what was expected; kernels then assume valid input.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "common/host.h"
#include "state_update.h"

namespace hamburg_mamba {

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

}  // namespace hamburg_mamba
