// Selective-scan backward on CUDA: one block per (batch, channel), chunks in reverse order. Each chunk
// recomputes its forward states with a block scan started from the checkpoint saved at the chunk's first
// step (chunks start at multiples of kCheckpointInterval), then runs a reverse block scan for the state
// gradient, whose carry between chunks lives in shared memory and starts from dlast_state.
//
// With a_t = exp(s_t A), y_t the output before D and gating, dy_t its gradient, and G_t the total gradient
// of h_t (the same formulas as the CPU kernel, cpu/selective_scan_cpu_scan.inc):
//   G_t = C_t dy_t + a_{t+1} G_{t+1},  G_{L-1} = C_{L-1} dy_{L-1} + dlast_state
//   dC_t += dy_t h_t,  dB_t += G_t s_t u_t,  dA += G_t s_t a_t h_{t-1},
//   ds_t = sum_n G_t (A a_t h_{t-1} + B_t u_t),  du_t = D dy_t + s_t sum_n G_t B_t,  dinitial_state = a_0 G_0.
// The reverse recurrence is scanned as maps g -> alpha_t g + beta_t with alpha_t = a_{t+1} and
// beta_t = C_t dy_t; the carry between chunks is a_{t1} G_{t1} for the first step t1 of the later chunk,
// so the last step of a chunk uses alpha = 1.
#include "selective_scan_common.cuh"
#include "selective_scan_cuda.h"

namespace hamburg_mamba::gpu {
namespace {

// Two resident blocks per SM: the K = 16 backward keeps about 10 K floats live per thread (forward states,
// exps, B, C, and the step gradients), so 3 blocks (<= 170 registers) would spill heavily.
constexpr int kMinBlocksBwd = 2;

template <typename T, int K>
__global__ void __launch_bounds__(kNThreads, kMinBlocksBwd) selective_scan_bwd_kernel(const SelectiveScanBwdParams p) {
  constexpr int kChunk = kNThreads * K;
  static_assert(kChunk % kCheckpointInterval == 0, "chunks must start at checkpoints");
  constexpr int64_t kCheckpointsPerChunk = kChunk / kCheckpointInterval;

  __shared__ float s_A[kMaxStateSize];
  __shared__ float s_dA[kMaxStateSize];        // this block's dA[d, :], summed over chunks
  __shared__ float s_carry[2][kMaxStateSize];  // a_{t1} G_{t1} entering the chunk, by chunk parity
  __shared__ float s_first_step[kNThreads];    // s of each thread's first step, for alpha of its left neighbour
  __shared__ float2 s_warp_fwd[kNWarps];
  __shared__ float2 s_warp_rev[kNWarps];
  __shared__ float s_dD, s_dbias;

  const int tid = threadIdx.x;
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.seqlen;
  const int64_t b = blockIdx.x / p.dim, d = blockIdx.x % p.dim;
  const int64_t G = p.n_groups;
  const int64_t g = d / (p.dim / G);
  const int64_t row = b * p.dim + d;

  const T* u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_d_stride;
  const T* delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + d * p.delta_d_stride;
  const T* z = p.z ? static_cast<const T*>(p.z) + b * p.z_batch_stride + d * p.z_d_stride : nullptr;
  const T* dout = static_cast<const T*>(p.dout) + b * p.dout_batch_stride + d * p.dout_d_stride;
  const T* Bg = static_cast<const T*>(p.Bmat) + b * p.B_batch_stride + g * p.B_group_stride;
  const T* Cg = static_cast<const T*>(p.Cmat) + b * p.C_batch_stride + g * p.C_group_stride;
  // Gradient buffers are contiguous: du, ddelta, dz (B, D, L); dB, dC (B, G, N, L).
  T* du = static_cast<T*>(p.du) + row * L;
  T* ddelta = static_cast<T*>(p.ddelta) + row * L;
  T* dz = p.z ? static_cast<T*>(p.dz) + row * L : nullptr;
  float* dBg = static_cast<float*>(p.dB) + (b * G + g) * N * L;
  float* dCg = static_cast<float*>(p.dC) + (b * G + g) * N * L;
  const float bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[d] : 0.f;
  const float Dv = p.Dvec ? static_cast<const float*>(p.Dvec)[d] : 0.f;
  const float* scale = p.dt_scale ? static_cast<const float*>(p.dt_scale) + b * L : nullptr;
  const int64_t n_chk = (L + kCheckpointInterval - 1) / kCheckpointInterval;
  const float* chk = static_cast<const float*>(p.checkpoints) + row * n_chk * N;
  const float* dlast = p.dlast_state ? static_cast<const float*>(p.dlast_state) + row * N : nullptr;

  for (int n = tid; n < N; n += kNThreads) {
    s_A[n] = static_cast<const float*>(p.A)[d * N + n];
    s_dA[n] = 0.f;
    s_carry[0][n] = dlast ? dlast[n] : 0.f;
  }
  if (tid == 0) {
    s_dD = 0.f;
    s_dbias = 0.f;
  }
  // No barrier here: the first chunk's barrier (after s_first_step) orders these writes before any use.
  float dD_acc = 0.f, dbias_acc = 0.f;

  const int n_chunks = static_cast<int>((L + kChunk - 1) / kChunk);
  for (int j = 0; j < n_chunks; ++j) {
    const int c = n_chunks - 1 - j;
    const int64_t t0 = static_cast<int64_t>(c) * kChunk + tid * K;
    float s[K], su[K], dy[K];
    {
      float uv[K], zv[K];
      load_items<K>(u, t0, L, uv);
      load_items<K>(delta, t0, L, s);
      load_items<K>(dout, t0, L, dy);  // zero past L
      if (z) load_items<K>(z, t0, L, zv);
#pragma unroll
      for (int i = 0; i < K; ++i) {
        const bool valid = t0 + i < L;
        s[i] = valid ? step_size(s[i] + bias, p.delta_softplus, scale ? scale[t0 + i] : 1.f) : 0.f;
        su[i] = s[i] * uv[i];
        if (z) dy[i] *= zv[i] * sigmoid(zv[i]);
      }
    }
    // alpha of this thread's last step is a of the next thread's first step (1 for the chunk's last
    // thread: the carry already holds a_{t1} G_{t1}). The barrier also orders this write after the
    // previous chunk's reads of s_first_step (there is at least one barrier per state in between).
    s_first_step[tid] = s[0];
    __syncthreads();
    const float s_next = tid + 1 < kNThreads ? s_first_step[tid + 1] : 0.f;

    float y[K], ds[K], dsu[K];
#pragma unroll
    for (int i = 0; i < K; ++i) y[i] = ds[i] = dsu[i] = 0.f;
    const float* carry_in = s_carry[j & 1];
    float* carry_out = s_carry[(j + 1) & 1];
    const float* chk_chunk = chk + c * kCheckpointsPerChunk * N;
    for (int n = 0; n < N; ++n) {
      float bv[K], cv[K];
      load_items<K>(Bg + n * p.B_n_stride, t0, L, bv);
      load_items<K>(Cg + n * p.C_n_stride, t0, L, cv);
      const float An = s_A[n];

      // Forward states of the chunk from its checkpoint: hp[i] = h before step t0 + i.
      float a[K], hp[K];
      float ta = 1.f, tb = 0.f;
#pragma unroll
      for (int i = 0; i < K; ++i) {
        a[i] = exp_decay(s[i] * An);
        tb = fmaf(a[i], tb, su[i] * bv[i]);
        ta *= a[i];
      }
      float h = block_scan_fwd(ta, tb, chk_chunk + n, s_warp_fwd);
#pragma unroll
      for (int i = 0; i < K; ++i) {
        hp[i] = h;
        h = fmaf(a[i], h, su[i] * bv[i]);
        if (z) y[i] = fmaf(cv[i], h, y[i]);
      }

      // Reverse: G at each step from the later steps.
      const float a_next = exp_decay(s_next * An);
      float ra = a_next, rb = cv[K - 1] * dy[K - 1];
#pragma unroll
      for (int i = K - 2; i >= 0; --i) {
        rb = fmaf(a[i + 1], rb, cv[i] * dy[i]);
        ra *= a[i + 1];
      }
      float gin = block_scan_rev(ra, rb, carry_in + n, s_warp_rev);
      float dA_part = 0.f;
#pragma unroll
      for (int i = K - 1; i >= 0; --i) {
        const float alpha = i + 1 < K ? a[i + 1 < K ? i + 1 : i] : a_next;
        const float Gt = fmaf(alpha, gin, cv[i] * dy[i]);
        gin = Gt;
        const float ah = a[i] * hp[i];                    // a_t h_{t-1}
        const float ht = fmaf(a[i], hp[i], su[i] * bv[i]);  // h_t, as in the forward
        const float q = Gt * ah;
        dA_part = fmaf(s[i], q, dA_part);
        ds[i] = fmaf(An, q, ds[i]);
        dsu[i] = fmaf(Gt, bv[i], dsu[i]);
        bv[i] = Gt * su[i];  // dB_t
        cv[i] = dy[i] * ht;  // dC_t
      }
      // gin is now G at the chunk's first step on thread 0; the carry into the earlier chunk is a_{t1} G_{t1}.
      // Written after the reverse scan's barrier into the other parity's buffer.
      if (tid == 0) carry_out[n] = a[0] * gin;
      atomic_add_items<K>(dBg + n * L, t0, L, bv);
      atomic_add_items<K>(dCg + n * L, t0, L, cv);
      dA_part = warp_sum(dA_part);
      if ((tid & 31) == 0) atomicAdd(&s_dA[n], dA_part);
    }

    // Per-step gradients: du, ddelta (through dt_scale and softplus), dz.
    float uv[K], x[K], go[K], zv[K];
    load_items<K>(u, t0, L, uv);
    load_items<K>(delta, t0, L, x);
    if (z) {
      load_items<K>(dout, t0, L, go);
      load_items<K>(z, t0, L, zv);
    }
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const bool valid = t0 + i < L;
      const float dsi = fmaf(uv[i], dsu[i], ds[i]);
      const float du_i = p.Dvec ? fmaf(Dv, dy[i], s[i] * dsu[i]) : s[i] * dsu[i];
      float dx = scale ? dsi * (valid ? scale[t0 + i] : 0.f) : dsi;
      if (p.delta_softplus) {
        const float xi = x[i] + bias;
        // The forward's branch (step_size): identity above the threshold, else softplus' = sigmoid, which
        // also carries a NaN x into dx.
        if (!(xi > kSoftplusThresholdF)) dx *= sigmoid(xi);
      }
      if (valid) {
        dD_acc = fmaf(dy[i], uv[i], dD_acc);
        dbias_acc += dx;
      }
      if (z) {
        const float sig = sigmoid(zv[i]);
        const float yi = p.Dvec ? fmaf(Dv, uv[i], y[i]) : y[i];
        zv[i] = go[i] * yi * sig * (1.f + zv[i] * (1.f - sig));
      }
      uv[i] = du_i;
      x[i] = dx;
    }
    store_items<K>(du, t0, L, uv);
    store_items<K>(ddelta, t0, L, x);
    if (z) store_items<K>(dz, t0, L, zv);
  }

  dD_acc = warp_sum(dD_acc);
  dbias_acc = warp_sum(dbias_acc);
  if ((tid & 31) == 0) {
    atomicAdd(&s_dD, dD_acc);
    atomicAdd(&s_dbias, dbias_acc);
  }
  __syncthreads();
  float* dA = static_cast<float*>(p.dA) + d * N;
  float* dinit = p.dinitial_state ? static_cast<float*>(p.dinitial_state) + row * N : nullptr;
  for (int n = tid; n < N; n += kNThreads) {
    atomicAdd(dA + n, s_dA[n]);
    if (dinit) dinit[n] = s_carry[n_chunks & 1][n];
  }
  if (tid == 0) {
    if (p.dD) atomicAdd(static_cast<float*>(p.dD) + d, s_dD);
    if (p.ddelta_bias) atomicAdd(static_cast<float*>(p.ddelta_bias) + d, s_dbias);
  }
}

template <typename T, int K>
void launch(const SelectiveScanBwdParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.batch * p.dim));
  selective_scan_bwd_kernel<T, K><<<grid, kNThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t selective_scan_bwd_cuda(const SelectiveScanBwdParams& p, cudaStream_t stream) {
  return dispatch_dtype(p.dtype, [&](auto type) {
    dispatch_items(p.seqlen,
                   [&](auto items) { launch<typename decltype(type)::type, decltype(items)::value>(p, stream); });
  });
}

}  // namespace hamburg_mamba::gpu
