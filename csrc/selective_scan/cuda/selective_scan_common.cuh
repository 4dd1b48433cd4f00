// Device helpers shared by the selective-scan CUDA kernels (and the state update's): the decay and step
// arithmetic, per-thread item loads, and the block-wide scans over affine maps that carry the recurrence
// across threads.
//
// Thread layout (as in mamba_ssm's selective_scan): one block of kNThreads threads per (batch, channel);
// the block walks L in chunks of kNThreads * K steps, thread j owning the K consecutive steps
// [chunk_start + j K, chunk_start + (j + 1) K). Per state index n, the recurrence h_t = a_t h_{t-1} + b_t
// is an affine map x -> a_t x + b_t per step; a thread composes its K maps sequentially, a block scan
// composes the thread maps (warp shuffles, then the warp totals through shared memory), and a running
// value carried in shared memory joins the chunks.
//
// Deliberately no CUB: the two scans needed (forward, and reverse for the backward) are thirty lines
// with shuffles, and CUB's templates would multiply the build time on the project's 2-core machines.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/cuda/dispatch.cuh"
#include "common/cuda/dtype.cuh"
#include "selective_scan/selective_scan.h"

namespace hamburg_mamba::gpu {

constexpr int kNThreads = 128;
constexpr int kNWarps = kNThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kSoftplusThresholdF = static_cast<float>(kSoftplusThreshold);

// exp(x) for the decay factors a = exp(s A), to about 1 ulp with FMA arithmetic only: Cephes expf, the
// same reduction and polynomial as the CPU kernels (common/cpu/vec_math.inc). Why not the hardware
// ex2 (MUFU, behind exp2f, expf and __expf): near a = 1 its error of up to 2 ulp is not random from step to
// step, and the recurrence amplifies a bias in a by the memory length 1 / (1 - a). In a CPU emulation of
// these kernels a systematic 2-ulp bias took the float32 last state at L = 4500 from 1e-7 to 1.5e-4
// relative L2 error (the project's target is 1e-5). Define HAMBURG_MAMBA_CUDA_FAST_EXP to use exp2f instead
// (about 15 fewer instructions per state update) and measure its accuracy on a GPU before keeping it.
// x = n ln2 + r with |r| <= ln2 / 2; inputs below -88 give 0, above 88.8 give +inf; NaN stays NaN.
__device__ __forceinline__ float exp_decay(float x) {
#if defined(HAMBURG_MAMBA_CUDA_FAST_EXP)
  return exp2f(x * 1.4426950408889634f);
#else
  constexpr float kLo = -88.0f, kHi = 88.8f;
  constexpr float kLog2e = 1.44269504088896341f;
  // 1.5 * 2^23 + 127: adding it rounds x log2(e) to an integer n and leaves n + 127 in the low mantissa bits.
  constexpr float kMagic = 12583039.0f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  x = x < kLo ? kLo : x;
  x = x > kHi ? kHi : x;
  const float t = fmaf(x, kLog2e, kMagic);
  const float n = t - kMagic;
  float r = fmaf(-n, kLn2Hi, x);
  r = fmaf(-n, kLn2Lo, r);
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p, r * r, r) + 1.0f;
  // Exponent field n + 127: 0 gives 0.0 (x <= -88), 255 gives inf (x >= 88.8).
  return p * __int_as_float(__float_as_int(t) << 23);
#endif
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// step = softplus?(delta + bias) * scale (scale 1 without dt_scale), as reference.effective_step. A NaN x
// fails the threshold comparison and takes log1pf(expf(NaN)) = NaN, as torch's softplus; +-inf give inf and 0.
__device__ __forceinline__ float step_size(float x, bool softplus, float scale) {
  const float s = softplus ? (x > kSoftplusThresholdF ? x : log1pf(expf(x))) : x;
  return s * scale;
}

// Vector type for loading K consecutive T: 16 bytes, or all K*sizeof(T) bytes when fewer.
template <int kBytes>
struct VecOfBytes;
template <>
struct VecOfBytes<4> {
  using type = uint32_t;
};
template <>
struct VecOfBytes<8> {
  using type = uint2;
};
template <>
struct VecOfBytes<16> {
  using type = uint4;
};

// v[i] = row[t0 + i] for t0 + i < L, else 0. Vector loads when the K items are in range and aligned
// (the step dimension has stride 1; rows of a sliced tensor may still be misaligned, hence the check).
template <int K, typename T>
__device__ __forceinline__ void load_items(const T* row, int64_t t0, int64_t L, float (&v)[K]) {
  constexpr int kBytes = K * static_cast<int>(sizeof(T));
  constexpr int kVec = kBytes < 16 ? kBytes : 16;
  using V = typename VecOfBytes<kVec>::type;
  const T* src = row + t0;
  if (t0 + K <= L && reinterpret_cast<uintptr_t>(src) % kVec == 0) {
    alignas(16) T tmp[K];
#pragma unroll
    for (int j = 0; j < kBytes / kVec; ++j) reinterpret_cast<V*>(tmp)[j] = reinterpret_cast<const V*>(src)[j];
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = to_float(tmp[i]);
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = t0 + i < L ? to_float(src[i]) : 0.f;
  }
}

// row[t0 + i] = v[i] for t0 + i < L.
template <int K, typename T>
__device__ __forceinline__ void store_items(T* row, int64_t t0, int64_t L, const float (&v)[K]) {
  constexpr int kBytes = K * static_cast<int>(sizeof(T));
  constexpr int kVec = kBytes < 16 ? kBytes : 16;
  using V = typename VecOfBytes<kVec>::type;
  T* dst = row + t0;
  if (t0 + K <= L && reinterpret_cast<uintptr_t>(dst) % kVec == 0) {
    alignas(16) T tmp[K];
#pragma unroll
    for (int i = 0; i < K; ++i) tmp[i] = from_float<T>(v[i]);
#pragma unroll
    for (int j = 0; j < kBytes / kVec; ++j) reinterpret_cast<V*>(dst)[j] = reinterpret_cast<const V*>(tmp)[j];
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      if (t0 + i < L) dst[i] = from_float<T>(v[i]);
    }
  }
}

// row[t0 + i] += v[i] atomically for t0 + i < L (dB, dC: every channel of a group adds into one row).
// sm_90 has 16-byte vector atomics, a quarter of the atomic operations.
template <int K>
__device__ __forceinline__ void atomic_add_items(float* row, int64_t t0, int64_t L, const float (&v)[K]) {
  static_assert(K % 4 == 0, "vector atomics take 4 floats");
  float* dst = row + t0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (t0 + K <= L && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
#pragma unroll
    for (int j = 0; j < K / 4; ++j) {
      atomicAdd(reinterpret_cast<float4*>(dst) + j, make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]));
    }
    return;
  }
#endif
#pragma unroll
  for (int i = 0; i < K; ++i) {
    if (t0 + i < L) atomicAdd(dst + i, v[i]);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

// Forward scan. Each thread holds the composite (ta, tb) of its steps' maps x -> a x + b, in step order.
// Returns the state before the thread's first step: the maps of all earlier threads applied to *h_in,
// the running state before the chunk. One __syncthreads; *h_in is read after it, so a value written
// before the previous barrier is safe. warp_tot (kNWarps entries) must not be rewritten before every
// thread has passed the next barrier (callers alternate two buffers or separate the uses by a barrier).
__device__ __forceinline__ float block_scan_fwd(float ta, float tb, const float* h_in, float2* warp_tot) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Inclusive warp scan: lane l ends with the composite of lanes [0, l]; earlier map applied first.
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = __shfl_up_sync(kFullMask, ta, off);
    const float pb = __shfl_up_sync(kFullMask, tb, off);
    if (lane >= off) {
      tb = fmaf(ta, pb, tb);
      ta *= pa;
    }
  }
  float ea = __shfl_up_sync(kFullMask, ta, 1);
  float eb = __shfl_up_sync(kFullMask, tb, 1);
  if (lane == 0) {
    ea = 1.f;
    eb = 0.f;
  }
  if (lane == 31) warp_tot[warp] = make_float2(ta, tb);
  __syncthreads();
  float h = *h_in;
#pragma unroll
  for (int w = 0; w < kNWarps - 1; ++w) {
    if (w < warp) {
      const float2 t = warp_tot[w];
      h = fmaf(t.x, h, t.y);
    }
  }
  return fmaf(ea, h, eb);
}

// Reverse scan, the mirror image: each thread holds the composite (ta, tb) of its steps' maps
// g -> alpha g + beta taken from its last step down to its first, i.e. the map from the gradient entering
// from the right (later steps) to the value at its first step. Returns the value entering the thread from
// the right: the maps of all later threads applied to *g_in, the carry entering the chunk from later
// chunks. Same barrier rules as block_scan_fwd.
__device__ __forceinline__ float block_scan_rev(float ta, float tb, const float* g_in, float2* warp_tot) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Inclusive reverse warp scan: lane l ends with the composite of lanes [l, 31]; later map applied first.
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float na = __shfl_down_sync(kFullMask, ta, off);
    const float nb = __shfl_down_sync(kFullMask, tb, off);
    if (lane + off < 32) {
      tb = fmaf(ta, nb, tb);
      ta *= na;
    }
  }
  float ea = __shfl_down_sync(kFullMask, ta, 1);
  float eb = __shfl_down_sync(kFullMask, tb, 1);
  if (lane == 31) {
    ea = 1.f;
    eb = 0.f;
  }
  if (lane == 0) warp_tot[warp] = make_float2(ta, tb);
  __syncthreads();
  float g = *g_in;
#pragma unroll
  for (int w = kNWarps - 1; w > 0; --w) {
    if (w > warp) {
      const float2 t = warp_tot[w];
      g = fmaf(t.x, g, t.y);
    }
  }
  return fmaf(ea, g, eb);
}

// Chunk configuration: K steps per thread. Short sequences use K = 4 (a 512-step chunk) so that most
// threads have work; longer ones K = 16 (2048 steps), which amortises the per-state block scan over
// more steps. Both chunk lengths are multiples of kCheckpointInterval, so every chunk starts at a
// checkpoint and every checkpoint lies at the end of some thread's K steps.
constexpr int kItemsShort = 4;
constexpr int kItemsLong = 16;
constexpr int64_t kShortSeqlen = kNThreads * kItemsShort;

// Calls launch(std::integral_constant<int, K>{}) with K the steps per thread for a sequence of `seqlen` steps.
template <typename Launch>
void dispatch_items(int64_t seqlen, const Launch& launch) {
  if (seqlen <= kShortSeqlen) {
    launch(std::integral_constant<int, kItemsShort>{});
  } else {
    launch(std::integral_constant<int, kItemsLong>{});
  }
}

}  // namespace hamburg_mamba::gpu
