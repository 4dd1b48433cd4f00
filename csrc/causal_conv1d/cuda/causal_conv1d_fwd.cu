// Causal conv1d forward on CUDA: one thread per output element (batch, channel, step), consecutive threads
// on consecutive steps (coalesced loads of the step-contiguous rows); a second tiny kernel copies the final
// states.
#include "causal_conv1d_common.cuh"
#include "causal_conv1d_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

template <typename T>
__global__ void __launch_bounds__(kConvThreads) causal_conv1d_fwd_kernel(const CausalConv1dParams p) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  if (idx >= p.batch * p.dim * p.seqlen) return;
  const int64_t t = idx % p.seqlen, row = idx / p.seqlen;
  const int64_t b = row / p.dim, c = row % p.dim;
  const float pre = pre_activation<T>(p, b, c, t);
  static_cast<T*>(p.out)[b * p.out_batch_stride + c * p.out_c_stride + t] = from_float<T>(p.silu ? silu_f(pre) : pre);
}

// final_states[b, c, k] = x_ext[L - (W - 1) + k]: exact copies (every input type round-trips through float).
template <typename T>
__global__ void __launch_bounds__(kConvThreads) causal_conv1d_final_states_kernel(const CausalConv1dParams p) {
  const int64_t H = p.width - 1;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  if (idx >= p.batch * p.dim * H) return;
  const int64_t k = idx % H, row = idx / H;
  const int64_t b = row / p.dim, c = row % p.dim;
  static_cast<T*>(p.final_states)[idx] = from_float<T>(x_ext<T>(p, b, c, p.seqlen - H + k));
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kConvThreads - 1) / kConvThreads); }

template <typename T>
void launch(const CausalConv1dParams& p, cudaStream_t stream) {
  causal_conv1d_fwd_kernel<T><<<blocks_for(p.batch * p.dim * p.seqlen), kConvThreads, 0, stream>>>(p);
  if (p.final_states) {
    causal_conv1d_final_states_kernel<T><<<blocks_for(p.batch * p.dim * (p.width - 1)), kConvThreads, 0, stream>>>(p);
  }
}

}  // namespace

cudaError_t causal_conv1d_fwd_cuda(const CausalConv1dParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) { launch<typename decltype(type)::type>(p, stream); });
}

}  // namespace hamburg_mamba::gpu
