// One streaming step of the selective scan on CUDA, state updated in place: a warp per (batch, channel)
// row, lanes over the state index n, the output summed with warp shuffles. The arithmetic is the scan's
// (step_size, exp_decay), so a step here matches a step of selective_scan_fwd.
#include "selective_scan/cuda/selective_scan_common.cuh"
#include "state_update_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

constexpr int kRowsPerBlock = kNWarps;

template <typename T>
__global__ void __launch_bounds__(kNThreads) selective_state_update_kernel(const StateUpdateParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= p.batch * p.dim) return;  // whole warps leave together: the shuffles below stay full-mask
  const int64_t N = p.dstate;
  const int64_t b = row / p.dim, d = row % p.dim;
  const int64_t g = d / (p.dim / p.n_groups);

  const float bias = p.dt_bias ? static_cast<const float*>(p.dt_bias)[d] : 0.f;
  const float scale = p.dt_scale ? static_cast<const float*>(p.dt_scale)[b] : 1.f;
  const float s = step_size(to_float(static_cast<const T*>(p.dt)[row]) + bias, p.dt_softplus, scale);
  const float x = to_float(static_cast<const T*>(p.x)[row]);
  const float su = s * x;
  const T* Brow = static_cast<const T*>(p.Bmat) + (b * p.n_groups + g) * N;
  const T* Crow = static_cast<const T*>(p.Cmat) + (b * p.n_groups + g) * N;
  const float* A = static_cast<const float*>(p.A) + d * N;
  float* h = static_cast<float*>(p.state) + row * N;

  float y = 0.f;
  for (int64_t n = lane; n < N; n += 32) {
    const float hn = fmaf(exp_decay(s * A[n]), h[n], su * to_float(Brow[n]));
    h[n] = hn;
    y = fmaf(to_float(Crow[n]), hn, y);
  }
  y = warp_sum(y);
  if (lane == 0) {
    if (p.Dvec) y = fmaf(static_cast<const float*>(p.Dvec)[d], x, y);
    if (p.z) {
      const float zv = to_float(static_cast<const T*>(p.z)[row]);
      y *= zv * sigmoid(zv);
    }
    static_cast<T*>(p.out)[row] = from_float<T>(y);
  }
}

template <typename T>
void launch(const StateUpdateParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.dim;
  const dim3 grid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  selective_state_update_kernel<T><<<grid, kNThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t selective_state_update_cuda(const StateUpdateParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) { launch<typename decltype(type)::type>(p, stream); });
}

}  // namespace hamburg_mamba::gpu
