// Causal depthwise conv1d (the short convolution of a Mamba block): the plain parameter structs shared by
// every backend, with the semantics of Dao-AILab/causal-conv1d (causal_conv1d_fn, causal_conv1d_update).
//
// Glossary: B batch, D channels, L steps, W kernel width, S state length (update only).
// Torch-free on purpose: the CPU kernels, the CUDA kernels and the C++ tests include it without torch.
//
// Math (the reference is hamburg_mamba.ops.reference.causal_conv1d_ref): with x_ext[s] = x[s] for s >= 0,
// initial_states[s + W - 1] for -(W - 1) <= s < 0 (0 without initial states),
//   pre[t] = bias + sum_k weight[k] * x_ext[t - (W - 1) + k]        (k = 0 .. W - 1)
//   out[t] = silu(pre[t]) when silu, else pre[t]
// With seq_idx, a term joins only when seq_idx[s] == seq_idx[t] (packed sequences do not mix), and a
// padding step (seq_idx[t] < 0) outputs 0. final_states[k] = x_ext[L - (W - 1) + k].
//
// Layouts (element strides; the step dimension is always contiguous, stride 1):
//   x, out, dout, dx                       : (B, D, L)    input dtype T, batch and channel strides below
//   weight (compute type, contiguous)      : (D, W);  bias (D,)
//   seq_idx (int32, contiguous)            : (B, L)
//   initial_states, final_states,
//   dfinal_states, dinitial_states         : (B, D, W - 1) input dtype T, contiguous
//   dweight, dbias (compute type)          : (D, W), (D,), contiguous
// The compute type is float for float32/float16/bfloat16 inputs and double for float64 inputs.
#pragma once

#include <cstdint>

#include "common/common.h"

namespace hamburg_mamba {

// Widest kernel supported: bounds the per-thread window buffers. causal-conv1d supports 2 to 4.
constexpr int64_t kConvMinWidth = 2;
constexpr int64_t kConvMaxWidth = 8;

struct CausalConv1dParams {
  ScalarType dtype = ScalarType::kFloat32;
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0;
  bool silu = false;

  int64_t x_batch_stride = 0, x_c_stride = 0;
  int64_t out_batch_stride = 0, out_c_stride = 0;

  const void* x = nullptr;
  const void* weight = nullptr;          // compute type
  const void* bias = nullptr;            // compute type, optional
  const int32_t* seq_idx = nullptr;      // optional
  const void* initial_states = nullptr;  // optional
  void* final_states = nullptr;          // optional output
  void* out = nullptr;
};

struct CausalConv1dBwdParams : CausalConv1dParams {
  int64_t dout_batch_stride = 0, dout_c_stride = 0;
  int64_t dx_batch_stride = 0, dx_c_stride = 0;

  const void* dout = nullptr;
  const void* dfinal_states = nullptr;  // optional
  void* dx = nullptr;
  void* dweight = nullptr;          // compute type, written (not accumulated)
  void* dbias = nullptr;            // compute type, optional
  void* dinitial_states = nullptr;  // optional, input dtype
};

// One streaming step (or a few steps) over a rolling window kept in conv_state.
//   x, out        : (B, D, L) input dtype, contiguous
//   conv_state    : (cache_batch, D, S) input dtype, last dimension contiguous, S >= W - 1; updated in place
//   cache_seqlens : (B,) int32, optional: conv_state is then a circular buffer and x is written at
//                   positions (cache_seqlens[b] + i) mod S; otherwise the window shifts left by L
//   conv_state_indices : (B,) int32, optional: batch row b uses conv_state row conv_state_indices[b]; a
//                   negative index is a padding row (output 0, no state touched)
struct CausalConv1dUpdateParams {
  ScalarType dtype = ScalarType::kFloat32;
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0, state_len = 0, cache_batch = 0;
  bool silu = false;

  int64_t state_batch_stride = 0, state_c_stride = 0;

  const void* x = nullptr;
  void* conv_state = nullptr;
  const void* weight = nullptr;  // compute type
  const void* bias = nullptr;    // compute type, optional
  const int32_t* cache_seqlens = nullptr;
  const int32_t* conv_state_indices = nullptr;
  void* out = nullptr;
};

}  // namespace hamburg_mamba
