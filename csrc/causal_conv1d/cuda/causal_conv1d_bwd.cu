// Causal conv1d backward on CUDA. g[t] = dout[t] * silu'(pre[t]) (or dout[t]; 0 on padding steps) is
// recomputed where needed rather than stored:
//   dx / dinitial_states: one thread per input position s in [-(W - 1), L) of a row,
//                         sum_k w[k] g[s + W - 1 - k] (plus the final states' gradient);
//   dweight, dbias:       one block per channel, threads striding over (batch, step), per-thread sums
//                         reduced in shared memory in a fixed order (no atomics: deterministic).
#include "causal_conv1d_common.cuh"
#include "causal_conv1d_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

template <typename T>
__device__ __forceinline__ float out_grad(const CausalConv1dBwdParams& p, int64_t b, int64_t c, int64_t t) {
  if (p.seq_idx && p.seq_idx[b * p.seqlen + t] < 0) return 0.f;
  const float d = to_float(static_cast<const T*>(p.dout)[b * p.dout_batch_stride + c * p.dout_c_stride + t]);
  return p.silu ? d * silu_grad_f(pre_activation<T>(p, b, c, t)) : d;
}

template <typename T>
__global__ void __launch_bounds__(kConvThreads) causal_conv1d_dx_kernel(const CausalConv1dBwdParams p) {
  const int64_t H = p.width - 1, L = p.seqlen, span = L + H;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  if (idx >= p.batch * p.dim * span) return;
  const int64_t s = idx % span - H, row = idx / span;
  const int64_t b = row / p.dim, c = row % p.dim;
  if (s < 0 && p.dinitial_states == nullptr) return;
  const int32_t* seq = p.seq_idx ? p.seq_idx + b * L : nullptr;
  const float* w = static_cast<const float*>(p.weight) + c * p.width;
  float acc = 0.f;
  for (int64_t k = 0; k < p.width; ++k) {
    const int64_t t = s + H - k;
    if (t < 0 || t >= L) continue;
    if (seq && (s < 0 || seq[t] != seq[s])) continue;
    acc = fmaf(w[k], out_grad<T>(p, b, c, t), acc);
  }
  if (p.dfinal_states && s >= L - H) {
    acc += to_float(static_cast<const T*>(p.dfinal_states)[(b * p.dim + c) * H + s - (L - H)]);
  }
  if (s >= 0) {
    static_cast<T*>(p.dx)[b * p.dx_batch_stride + c * p.dx_c_stride + s] = from_float<T>(acc);
  } else {
    static_cast<T*>(p.dinitial_states)[(b * p.dim + c) * H + s + H] = from_float<T>(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kConvThreads) causal_conv1d_dweight_kernel(const CausalConv1dBwdParams p) {
  __shared__ float partial[kConvMaxWidth + 1][kConvThreads];
  const int64_t c = blockIdx.x, H = p.width - 1, L = p.seqlen, W = p.width;
  float dw[kConvMaxWidth] = {};
  float db = 0.f;
  for (int64_t i = threadIdx.x; i < p.batch * L; i += kConvThreads) {
    const int64_t b = i / L, t = i % L;
    const float g = out_grad<T>(p, b, c, t);
    const int32_t* seq = p.seq_idx ? p.seq_idx + b * L : nullptr;
    for (int64_t k = 0; k < W; ++k) {
      const int64_t s = t - H + k;
      if (seq && (s < 0 || seq[s] != seq[t])) continue;
      dw[k] = fmaf(g, x_ext<T>(p, b, c, s), dw[k]);
    }
    db += g;
  }
  for (int64_t k = 0; k < W; ++k) partial[k][threadIdx.x] = dw[k];
  partial[W][threadIdx.x] = db;
  __syncthreads();
  for (int stride = kConvThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      for (int64_t k = 0; k <= W; ++k) partial[k][threadIdx.x] += partial[k][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int64_t k = 0; k < W; ++k) static_cast<float*>(p.dweight)[c * W + k] = partial[k][0];
    if (p.dbias) static_cast<float*>(p.dbias)[c] = partial[W][0];
  }
}

template <typename T>
void launch(const CausalConv1dBwdParams& p, cudaStream_t stream) {
  const int64_t positions = p.batch * p.dim * (p.seqlen + p.width - 1);
  const unsigned blocks = static_cast<unsigned>((positions + kConvThreads - 1) / kConvThreads);
  causal_conv1d_dx_kernel<T><<<blocks, kConvThreads, 0, stream>>>(p);
  causal_conv1d_dweight_kernel<T><<<static_cast<unsigned>(p.dim), kConvThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t causal_conv1d_bwd_cuda(const CausalConv1dBwdParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) { launch<typename decltype(type)::type>(p, stream); });
}

}  // namespace hamburg_mamba::gpu
