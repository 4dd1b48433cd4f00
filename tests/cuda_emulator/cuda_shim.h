// CPU emulation of the CUDA subset used by hamburg_mamba's kernels: each block runs as blockDim std::threads,
// __syncthreads is a std::barrier, warp shuffles go through per-warp slots and a 32-thread barrier.
// Blocks run one after another, so `__shared__` can be a function-local static.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint2 {
  uint32_t x, y;
};
struct alignas(16) uint4 {
  uint32_t x, y, z, w;
};
struct float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }

struct __half {
  _Float16 v;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __half2float(__half h) { return (float)h.v; }
inline __half __float2half_rn(float f) { return __half{(_Float16)f}; }
inline float __bfloat162float(__nv_bfloat16 b) {
  uint32_t u = (uint32_t)b.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return {(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fff + ((u >> 16) & 1);
  return {(uint16_t)(u >> 16)};
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}

namespace shim {
struct Warp {
  std::barrier<> bar{32};
  float slots[32];
};
struct Block {
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  explicit Block(int n) : bar(n) {
    for (int i = 0; i < (n + 31) / 32; ++i) warps.emplace_back(new Warp);
  }
};
inline thread_local Block* tl_block = nullptr;
}  // namespace shim

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { shim::tl_block->bar.arrive_and_wait(); }

namespace shim {
template <typename F>
inline float shuffle(float v, F src_lane) {
  const int lane = threadIdx.x & 31;
  Warp& w = *tl_block->warps[threadIdx.x >> 5];
  w.slots[lane] = v;
  w.bar.arrive_and_wait();
  const int s = src_lane(lane);
  const float r = (s >= 0 && s < 32) ? w.slots[s] : v;
  w.bar.arrive_and_wait();
  return r;
}
}  // namespace shim
inline float __shfl_up_sync(unsigned, float v, int off) {
  return shim::shuffle(v, [&](int l) { return l - off; });
}
inline float __shfl_down_sync(unsigned, float v, int off) {
  return shim::shuffle(v, [&](int l) { return l + off; });
}
inline float __shfl_xor_sync(unsigned, float v, int off) {
  return shim::shuffle(v, [&](int l) { return l ^ off; });
}

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
inline float4 atomicAdd(float4* p, float4 v) {
  float* f = reinterpret_cast<float*>(p);
  atomicAdd(f, v.x);
  atomicAdd(f + 1, v.y);
  atomicAdd(f + 2, v.z);
  atomicAdd(f + 3, v.w);
  return {};
}
#endif

namespace shim {
// Emulation counters: blocks launched per kernel call.
inline std::atomic<int64_t> launches{0};
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, int block, int /*smem*/, cudaStream_t, Args&&... args) {
  launches++;
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    Block blk(block);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (int t = 0; t < block; ++t) {
      threads.emplace_back([&, t] {
        tl_block = &blk;
        threadIdx = dim3(t);
        blockIdx = dim3(bx);
        blockDim = dim3(block);
        gridDim = grid;
        kernel(args...);
      });
    }
    for (auto& th : threads) th.join();
  }
}
}  // namespace shim
