// Causal conv1d streaming update on CUDA: one thread per (batch, channel) row walks the new steps with a
// window of the last W inputs in registers, as the CPU kernel does. conv_state rows are read and written
// by their own thread only (the CPU host check refuses repeated conv_state_indices; on the GPU that check
// would cost a synchronisation).
#include "causal_conv1d_common.cuh"
#include "causal_conv1d_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

__device__ __forceinline__ int64_t floor_mod(int64_t a, int64_t n) { return ((a % n) + n) % n; }

template <typename T>
__global__ void __launch_bounds__(kConvThreads) causal_conv1d_update_kernel(const CausalConv1dUpdateParams p) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  if (idx >= p.batch * p.dim) return;
  const int64_t b = idx / p.dim, c = idx % p.dim;
  const int64_t L = p.seqlen, W = p.width, H = W - 1, S = p.state_len;
  const T* x = static_cast<const T*>(p.x) + idx * L;
  T* out = static_cast<T*>(p.out) + idx * L;
  const int64_t row = p.conv_state_indices ? p.conv_state_indices[b] : b;
  if (row < 0 || row >= p.cache_batch) {
    // A negative index is a padding row (output 0); an index past the cache cannot be reported from
    // here, so its output is NaN rather than a plausible number.
    const float fill = row < 0 ? 0.f : __int_as_float(0x7fc00000);
    for (int64_t i = 0; i < L; ++i) out[i] = from_float<T>(fill);
    return;
  }
  T* state = static_cast<T*>(p.conv_state) + row * p.state_batch_stride + c * p.state_c_stride;
  const float* w = static_cast<const float*>(p.weight) + c * W;
  const float bias = p.bias ? static_cast<const float*>(p.bias)[c] : 0.f;

  float window[kConvMaxWidth];  // [0, H) the inputs before the current step, oldest first
  if (p.cache_seqlens) {
    const int64_t pos = floor_mod(p.cache_seqlens[b], S);
    for (int64_t j = 0; j < H; ++j) window[j] = to_float(state[floor_mod(pos - H + j, S)]);
    for (int64_t i = 0; i < L; ++i) state[floor_mod(pos + i, S)] = x[i];
  } else {
    for (int64_t j = 0; j < H; ++j) window[j] = to_float(state[S - H + j]);
    for (int64_t j = 0; j + L < S; ++j) state[j] = state[j + L];
    for (int64_t i = L > S ? L - S : 0; i < L; ++i) state[S - L + i] = x[i];
  }
  for (int64_t i = 0; i < L; ++i) {
    window[H] = to_float(x[i]);
    float acc = bias;
    for (int64_t k = 0; k < W; ++k) acc = fmaf(w[k], window[k], acc);
    out[i] = from_float<T>(p.silu ? silu_f(acc) : acc);
    for (int64_t k = 0; k < H; ++k) window[k] = window[k + 1];
  }
}

template <typename T>
void launch(const CausalConv1dUpdateParams& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((p.batch * p.dim + kConvThreads - 1) / kConvThreads);
  causal_conv1d_update_kernel<T><<<blocks, kConvThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t causal_conv1d_update_cuda(const CausalConv1dUpdateParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) { launch<typename decltype(type)::type>(p, stream); });
}

}  // namespace hamburg_mamba::gpu
