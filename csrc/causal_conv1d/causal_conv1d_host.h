// Host-side argument checks and parameter packing of the causal conv1d ops, shared by the CPU and CUDA
// bindings. Every check names the argument and what was expected; kernels then assume valid input.
#pragma once

#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>

#include "causal_conv1d.h"
#include "common/host.h"

namespace hamburg_mamba {

struct ConvFwdPrepared {
  CausalConv1dParams params;
  std::vector<at::Tensor> keep_alive;  // converted or made-contiguous inputs the params point into
  at::Tensor out, final_states;        // final_states is empty (0,) unless requested
};

ConvFwdPrepared prepare_conv_fwd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                 const OptTensor& seq_idx, const OptTensor& initial_states, bool return_final_states,
                                 bool silu);

struct ConvBwdPrepared {
  CausalConv1dBwdParams params;
  std::vector<at::Tensor> keep_alive;
  at::Tensor dx, dweight, dbias, dinitial_states;  // dweight, dbias in the compute type until finalized
  at::ScalarType weight_dtype;
};

ConvBwdPrepared prepare_conv_bwd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                 const at::Tensor& dout, const OptTensor& seq_idx, const OptTensor& initial_states,
                                 const OptTensor& dfinal_states, bool silu);

// (dx, dweight, dbias, dinitial_states): dweight and dbias in the weight's dtype; gradients of absent
// optional inputs are empty tensors.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finalize_conv_bwd(const ConvBwdPrepared& prep);

struct ConvUpdatePrepared {
  CausalConv1dUpdateParams params;
  std::vector<at::Tensor> keep_alive;
  at::Tensor state_work;  // the state the kernel updates: `conv_state` itself, or a copy with contiguous steps
  at::Tensor out;
};

ConvUpdatePrepared prepare_conv_update(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                       const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                                       const OptTensor& conv_state_indices);

// Copies the updated state back when the kernel worked on a copy.
void finalize_conv_update(const at::Tensor& conv_state, const ConvUpdatePrepared& prep);

}  // namespace hamburg_mamba
