// Device helpers shared by the causal conv1d CUDA kernels: the extended input x_ext (initial states before
// step 0), the pre-activation of one step and its gradient through silu. Plain and per element on purpose:
// the conv reads W inputs per output, so one thread per element already streams x at memory speed.
#pragma once

#include <cstdint>

#include "causal_conv1d/causal_conv1d.h"
#include "common/cuda/dispatch.cuh"
#include "common/cuda/dtype.cuh"

namespace hamburg_mamba::gpu {

constexpr int kConvThreads = 256;

__device__ __forceinline__ float silu_f(float v) { return v / (1.f + expf(-v)); }

// d silu(v) / dv = sigmoid(v) (1 + v (1 - sigmoid(v))).
__device__ __forceinline__ float silu_grad_f(float v) {
  const float s = 1.f / (1.f + expf(-v));
  return s * (1.f + v * (1.f - s));
}

// x_ext[s] of row (b, c): x for s >= 0, the initial states (or 0) for -(W - 1) <= s < 0.
template <typename T>
__device__ __forceinline__ float x_ext(const CausalConv1dParams& p, int64_t b, int64_t c, int64_t s) {
  if (s >= 0) return to_float(static_cast<const T*>(p.x)[b * p.x_batch_stride + c * p.x_c_stride + s]);
  if (p.initial_states == nullptr) return 0.f;
  const int64_t H = p.width - 1;
  return to_float(static_cast<const T*>(p.initial_states)[(b * p.dim + c) * H + s + H]);
}

// bias + sum_k w[k] x_ext[t - H + k] (only taps of step t's own sequence with seq_idx); 0 for a padding step.
template <typename T>
__device__ __forceinline__ float pre_activation(const CausalConv1dParams& p, int64_t b, int64_t c, int64_t t) {
  const int64_t H = p.width - 1;
  const int32_t* seq = p.seq_idx ? p.seq_idx + b * p.seqlen : nullptr;
  if (seq && seq[t] < 0) return 0.f;
  const float* w = static_cast<const float*>(p.weight) + c * p.width;
  float acc = p.bias ? static_cast<const float*>(p.bias)[c] : 0.f;
  for (int64_t k = 0; k < p.width; ++k) {
    const int64_t s = t - H + k;
    if (seq && (s < 0 || seq[s] != seq[t])) continue;
    acc = fmaf(w[k], x_ext<T>(p, b, c, s), acc);
  }
  return acc;
}

}  // namespace hamburg_mamba::gpu
