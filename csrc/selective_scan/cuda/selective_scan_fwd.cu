// Selective-scan forward on CUDA: one block per (batch, channel), chunked block-wide scan over the affine
// maps h -> exp(s_t A) h + s_t B_t u_t, the running state carried across chunks in shared memory.
// Math: hamburg_mamba/ops/reference.py (selective_scan_ref). Layouts: ../selective_scan.h.
#include "selective_scan_common.cuh"
#include "selective_scan_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

// At least 3 resident blocks per SM (<= 170 registers a thread), as mamba_ssm's 128-thread kernels: the
// per-state block barrier needs other blocks to fill the SM while one waits.
constexpr int kMinBlocksFwd = 3;

template <typename T, int K>
__global__ void __launch_bounds__(kNThreads, kMinBlocksFwd) selective_scan_fwd_kernel(const SelectiveScanParams p) {
  constexpr int kChunk = kNThreads * K;
  static_assert(kCheckpointInterval % K == 0 && kChunk % kCheckpointInterval == 0,
                "checkpoints must fall on thread boundaries and chunk starts");
  constexpr int kThreadsPerCheckpoint = static_cast<int>(kCheckpointInterval) / K;

  __shared__ float s_A[kMaxStateSize];
  __shared__ float s_state[2][kMaxStateSize];  // running state before the chunk, by chunk parity
  __shared__ float2 s_warp[2][kNWarps];        // warp totals of the block scan, by scan parity

  const int tid = threadIdx.x;
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.seqlen;
  const int64_t b = blockIdx.x / p.dim, d = blockIdx.x % p.dim;
  const int64_t g = d / (p.dim / p.n_groups);
  const int64_t row = b * p.dim + d;

  const T* u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_d_stride;
  const T* delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + d * p.delta_d_stride;
  const T* z = p.z ? static_cast<const T*>(p.z) + b * p.z_batch_stride + d * p.z_d_stride : nullptr;
  const T* Bg = static_cast<const T*>(p.Bmat) + b * p.B_batch_stride + g * p.B_group_stride;
  const T* Cg = static_cast<const T*>(p.Cmat) + b * p.C_batch_stride + g * p.C_group_stride;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + d * p.out_d_stride;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[d] : 0.f;
  const float Dv = p.Dvec ? static_cast<const float*>(p.Dvec)[d] : 0.f;
  const float* scale = p.dt_scale ? static_cast<const float*>(p.dt_scale) + b * L : nullptr;
  const float* h0 = p.initial_state ? static_cast<const float*>(p.initial_state) + row * N : nullptr;
  const int64_t n_chk = (L + kCheckpointInterval - 1) / kCheckpointInterval;
  float* chk = p.checkpoints ? static_cast<float*>(p.checkpoints) + row * n_chk * N : nullptr;

  for (int n = tid; n < N; n += kNThreads) {
    s_A[n] = static_cast<const float*>(p.A)[d * N + n];
    const float h = h0 ? h0[n] : 0.f;
    s_state[0][n] = h;
    if (chk) chk[n] = h;  // checkpoint 0: the state before step 0
  }
  __syncthreads();

  // This thread writes checkpoint (t_end / 64) after its last step when t_end, the step after it, is a
  // multiple of the interval (and inside the sequence).
  const bool writes_checkpoint = chk != nullptr && (tid + 1) % kThreadsPerCheckpoint == 0;
  const int n_chunks = static_cast<int>((L + kChunk - 1) / kChunk);
  int scan_parity = 0;
  for (int c = 0; c < n_chunks; ++c) {
    const int64_t t0 = static_cast<int64_t>(c) * kChunk + tid * K;
    float s[K], su[K], y[K];
    load_items<K>(u, t0, L, su);
    load_items<K>(delta, t0, L, s);
#pragma unroll
    for (int i = 0; i < K; ++i) {
      // Steps past L get s = 0: the identity map exp(0) h + 0, so the chunk's last state is h_{L-1}.
      const bool valid = t0 + i < L;
      s[i] = valid ? step_size(s[i] + bias, p.delta_softplus, scale ? scale[t0 + i] : 1.f) : 0.f;
      su[i] *= s[i];
      y[i] = 0.f;
    }
    const float* state_in = s_state[c & 1];
    float* state_out = s_state[(c + 1) & 1];

    // B and C of state n + 1 are loaded while state n is scanned (their latency is not hidden by the
    // block barrier otherwise).
    float Bnext[K], Cnext[K];
    load_items<K>(Bg, t0, L, Bnext);
    load_items<K>(Cg, t0, L, Cnext);
    for (int n = 0; n < N; ++n) {
      float bv[K], cv[K];
#pragma unroll
      for (int i = 0; i < K; ++i) {
        bv[i] = Bnext[i];
        cv[i] = Cnext[i];
      }
      if (n + 1 < N) {
        load_items<K>(Bg + (n + 1) * p.B_n_stride, t0, L, Bnext);
        load_items<K>(Cg + (n + 1) * p.C_n_stride, t0, L, Cnext);
      }
      const float An = s_A[n];
      float a[K];
      float ta = 1.f, tb = 0.f;
#pragma unroll
      for (int i = 0; i < K; ++i) {
        a[i] = exp_decay(s[i] * An);
        bv[i] *= su[i];
        tb = fmaf(a[i], tb, bv[i]);
        ta *= a[i];
      }
      float h = block_scan_fwd(ta, tb, state_in + n, s_warp[scan_parity]);
      scan_parity ^= 1;
#pragma unroll
      for (int i = 0; i < K; ++i) {
        h = fmaf(a[i], h, bv[i]);
        y[i] = fmaf(cv[i], h, y[i]);
      }
      if (writes_checkpoint && t0 + K < L) chk[(t0 + K) / kCheckpointInterval * N + n] = h;
      // The last thread's final state is the chunk's (padding steps are identities). Written after the
      // scan's barrier, into the other parity's buffer, which nobody reads during this chunk.
      if (tid == kNThreads - 1) state_out[n] = h;
    }

    // u again (an L2 hit) rather than K more registers live through the state loop.
    float uv[K], zv[K];
    load_items<K>(u, t0, L, uv);
    if (z) load_items<K>(z, t0, L, zv);
#pragma unroll
    for (int i = 0; i < K; ++i) {
      // Without D there is no D u term: 0 * u would turn an infinite u into NaN (the reference adds none).
      float o = p.Dvec ? fmaf(Dv, uv[i], y[i]) : y[i];
      if (z) o *= zv[i] * sigmoid(zv[i]);
      y[i] = o;
    }
    store_items<K>(out, t0, L, y);
  }

  __syncthreads();
  float* last = static_cast<float*>(p.last_state) + row * N;
  for (int n = tid; n < N; n += kNThreads) last[n] = s_state[n_chunks & 1][n];
}

template <typename T, int K>
void launch(const SelectiveScanParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.batch * p.dim));
  selective_scan_fwd_kernel<T, K><<<grid, kNThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t selective_scan_fwd_cuda(const SelectiveScanParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) {
    dispatch_items(p.seqlen,
                   [&](auto items) { launch<typename decltype(type)::type, decltype(items)::value>(p, stream); });
  });
}

}  // namespace hamburg_mamba::gpu
