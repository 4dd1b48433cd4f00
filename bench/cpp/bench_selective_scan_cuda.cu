// Google Benchmark of the torch-free CUDA selective-scan launchers (csrc/selective_scan/cuda), bf16 and
// float32, with the device-to-device copy bandwidth as the memory floor.
//
// Glossary: B batch, D channels, L steps, N state size.
// Sizes: the project's GPU target (8, 2048, 2048, 16) first, then its CPU benchmark sizes (as
// bench/cpp/bench_selective_scan_cpu.cpp and bench/bench_scan_gpu.py). Inputs are those of a Mamba block:
// softplus(delta + delta_bias) step sizes, A = -(n + 1), a skip D and a gate z, one group for B and C.
//
// Each iteration is timed on the device with a pair of CUDA events around the launches alone (inputs stay
// resident, no host work inside), so the reported time is `manual_time`, the GPU's. Columns:
//   items_per_second  state updates per second (B * D * L * N per scan): the "G state-updates/s"
//   bytes_per_second  the bytes the op must move (each input read once, each output written once) per
//                     second, in powers of 1000 ("T/s" = TB/s)
//   x_floor           time / (those bytes / the measured copy bandwidth): 1.0 is the memory floor
// Ops:
//   fwd      the forward without checkpoints (inference)
//   fwd_bwd  one training step of the op: the forward saving checkpoints, zeroing the accumulated
//            gradients (dA, dB, dC, dD, ddelta_bias), then the backward
//   state_update  one streaming step, state (B, D, N) updated in place
// memcpy_d2d is a 1 GiB cudaMemcpyAsync device-to-device, read + write counted; its bytes_per_second is
// the bandwidth that x_floor divides by (measured once before the benchmarks, also in the context header).
//
//   build/cmake/bench_selective_scan_cuda --benchmark_min_time=0.5   (v1.7.1: a plain number of seconds)
//   build/cmake/bench_selective_scan_cuda --benchmark_filter=fwd/bf16
//
// Without a CUDA device (cudaGetDeviceCount returns 0 or an error) it prints "no CUDA device: skipping" and
// exits 0.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "selective_scan/cuda/selective_scan_cuda.h"
#include "selective_scan/selective_scan.h"
#include "state_update/cuda/state_update_cuda.h"

namespace {

using hamburg_mamba::ScalarType;
using hamburg_mamba::SelectiveScanBwdParams;
using hamburg_mamba::SelectiveScanParams;
using hamburg_mamba::StateUpdateParams;

// Setup failures (allocation, copies) end the process: nothing after them would measure anything.
#define HM_CUDA_CHECK(expr)                                                                                          \
  do {                                                                                                               \
    const cudaError_t hm_err_ = (expr);                                                                              \
    if (hm_err_ != cudaSuccess) {                                                                                    \
      std::fprintf(stderr, "bench_selective_scan_cuda: %s failed: %s (%s:%d)\n", #expr, cudaGetErrorString(hm_err_), \
                   __FILE__, __LINE__);                                                                              \
      std::exit(1);                                                                                                  \
    }                                                                                                                \
  } while (0)

double g_copy_bandwidth = 0;  // bytes/s, read + write counted; set in main before any benchmark runs

// ---------------------------------------------------------------------------------------------------------
// Host-side inputs: a counter-based generator (splitmix64), so filling 33 M elements takes a fraction of a
// second and each array is reproducible from its seed.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<float> random_vector(int64_t n, float lo, float hi, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  const uint64_t base = splitmix64(seed);
  for (int64_t i = 0; i < n; ++i) {
    const float unit = static_cast<float>(splitmix64(base + static_cast<uint64_t>(i)) >> 40) * 0x1p-24f;
    v[static_cast<size_t>(i)] = lo + (hi - lo) * unit;
  }
  return v;
}

std::vector<float> mamba_A(int64_t dim, int64_t dstate) {
  std::vector<float> A(static_cast<size_t>(dim * dstate));
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t n = 0; n < dstate; ++n) A[static_cast<size_t>(d * dstate + n)] = -static_cast<float>(n + 1);
  return A;
}

template <typename T>
T from_float(float x);
template <>
float from_float<float>(float x) {
  return x;
}
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T>
float to_float(T x);
template <>
float to_float<float>(float x) {
  return x;
}
template <>
float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
constexpr ScalarType scalar_type();
template <>
constexpr ScalarType scalar_type<float>() {
  return ScalarType::kFloat32;
}
template <>
constexpr ScalarType scalar_type<__nv_bfloat16>() {
  return ScalarType::kBFloat16;
}

template <typename T>
const char* dtype_name();
template <>
const char* dtype_name<float>() {
  return "f32";
}
template <>
const char* dtype_name<__nv_bfloat16>() {
  return "bf16";
}

// ---------------------------------------------------------------------------------------------------------
// Device buffers: raw cudaMalloc allocations, freed with the owner.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n_bytes) : bytes(n_bytes) {
    HM_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n_bytes, 1)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  template <typename U>
  U* as() const {
    return static_cast<U*>(ptr);
  }
};

// A host array converted to T and copied into a fresh device buffer.
template <typename T>
std::unique_ptr<DeviceBuffer> upload(const std::vector<float>& host) {
  std::vector<T> converted(host.size());
  for (size_t i = 0; i < host.size(); ++i) converted[i] = from_float<T>(host[i]);
  auto buf = std::make_unique<DeviceBuffer>(converted.size() * sizeof(T));
  HM_CUDA_CHECK(cudaMemcpy(buf->ptr, converted.data(), buf->bytes, cudaMemcpyHostToDevice));
  return buf;
}

// Inputs, outputs and gradients of one scan, contiguous: (B, D, L) in T, B and C (B, 1, N, L) in T, the
// rest float32 (the compute type; dB and dC are float32 accumulators, see selective_scan.h).
template <typename T>
struct DeviceScan {
  int64_t B, D, L, N;
  std::unique_ptr<DeviceBuffer> u, delta, z, dout, Bm, Cm, A, Dv, bias;  // inputs
  std::unique_ptr<DeviceBuffer> out, last, checkpoints;                  // forward outputs
  std::unique_ptr<DeviceBuffer> du, ddelta, dz, dA, dB, dC, dD, dbias;   // gradients

  DeviceScan(int64_t batch, int64_t dim, int64_t seqlen, int64_t dstate) : B(batch), D(dim), L(seqlen), N(dstate) {
    const int64_t bdl = B * D * L, bnl = B * N * L;
    u = upload<T>(random_vector(bdl, -1, 1, 1));
    delta = upload<T>(random_vector(bdl, -4, 0, 2));  // softplus(delta + bias) in about (0.001, 0.3)
    z = upload<T>(random_vector(bdl, -3, 3, 3));
    Bm = upload<T>(random_vector(bnl, -1, 1, 4));
    Cm = upload<T>(random_vector(bnl, -1, 1, 5));
    A = upload<float>(mamba_A(D, N));
    Dv = upload<float>(random_vector(D, -1, 1, 6));
    bias = upload<float>(random_vector(D, -3, -1, 7));
    dout = upload<T>(random_vector(bdl, -1, 1, 8));
    const size_t es = sizeof(T), fs = sizeof(float);
    out = std::make_unique<DeviceBuffer>(bdl * es);
    last = std::make_unique<DeviceBuffer>(B * D * N * fs);
    checkpoints = std::make_unique<DeviceBuffer>(B * D * hamburg_mamba::num_checkpoints(L) * N * fs);
    du = std::make_unique<DeviceBuffer>(bdl * es);
    ddelta = std::make_unique<DeviceBuffer>(bdl * es);
    dz = std::make_unique<DeviceBuffer>(bdl * es);
    dA = std::make_unique<DeviceBuffer>(D * N * fs);
    dB = std::make_unique<DeviceBuffer>(bnl * fs);
    dC = std::make_unique<DeviceBuffer>(bnl * fs);
    dD = std::make_unique<DeviceBuffer>(D * fs);
    dbias = std::make_unique<DeviceBuffer>(D * fs);
  }

  SelectiveScanParams forward_params(bool save_checkpoints) const {
    SelectiveScanParams p;
    p.dtype = scalar_type<T>();
    p.batch = B;
    p.dim = D;
    p.seqlen = L;
    p.dstate = N;
    p.n_groups = 1;
    p.delta_softplus = true;
    p.u_batch_stride = p.delta_batch_stride = p.z_batch_stride = p.out_batch_stride = D * L;
    p.u_d_stride = p.delta_d_stride = p.z_d_stride = p.out_d_stride = L;
    p.B_batch_stride = p.C_batch_stride = N * L;
    p.B_group_stride = p.C_group_stride = N * L;
    p.B_n_stride = p.C_n_stride = L;
    p.u = u->ptr;
    p.delta = delta->ptr;
    p.Bmat = Bm->ptr;
    p.Cmat = Cm->ptr;
    p.z = z->ptr;
    p.A = A->ptr;
    p.Dvec = Dv->ptr;
    p.delta_bias = bias->ptr;
    p.out = out->ptr;
    p.last_state = last->ptr;
    p.checkpoints = save_checkpoints ? checkpoints->ptr : nullptr;
    return p;
  }

  SelectiveScanBwdParams backward_params() const {
    SelectiveScanBwdParams p;
    static_cast<SelectiveScanParams&>(p) = forward_params(true);
    p.dout_batch_stride = D * L;
    p.dout_d_stride = L;
    p.dout = dout->ptr;
    p.du = du->ptr;
    p.ddelta = ddelta->ptr;
    p.dz = dz->ptr;
    p.dA = dA->ptr;
    p.dB = dB->ptr;
    p.dC = dC->ptr;
    p.dD = dD->ptr;
    p.ddelta_bias = dbias->ptr;
    return p;
  }

  // The accumulated gradients start at zero (the launcher's contract); part of every timed backward.
  cudaError_t zero_accumulators(cudaStream_t stream) const {
    for (const DeviceBuffer* buf : {dA.get(), dB.get(), dC.get(), dD.get(), dbias.get()}) {
      const cudaError_t err = cudaMemsetAsync(buf->ptr, 0, buf->bytes, stream);
      if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
  }

  // Minimal traffic, as bench/bench_scan_gpu.py counts it (its dB, dC are the op's outputs in T; here they
  // are the kernel's float32 accumulators). Forward: read u, delta, z, B, C; write out and the last state
  // (+ checkpoints when training). Backward: read u, delta, z, dout, B, C, checkpoints; write du, ddelta,
  // dz, dB, dC. The (D, N) and (D,) parameters and their gradients are negligible and left out.
  int64_t forward_bytes(bool save_checkpoints) const {
    const int64_t es = sizeof(T), bdl = B * D * L, bnl = B * N * L;
    return (4 * bdl + 2 * bnl) * es + B * D * N * 4 + (save_checkpoints ? checkpoint_bytes() : 0);
  }
  int64_t backward_bytes() const {
    const int64_t es = sizeof(T), bdl = B * D * L, bnl = B * N * L;
    return (7 * bdl + 2 * bnl) * es + checkpoint_bytes() + 2 * bnl * 4;
  }
  int64_t checkpoint_bytes() const { return B * D * hamburg_mamba::num_checkpoints(L) * N * 4; }
};

// One set of device buffers at a time: the benchmarks of one size and dtype run back to back (see main), so
// each is allocated and filled once, and whatever was cached before is freed first.
template <typename T>
std::unique_ptr<DeviceScan<T>>& scan_cache() {
  static std::unique_ptr<DeviceScan<T>> cached;
  return cached;
}

void release_scan_buffers() {
  scan_cache<float>().reset();
  scan_cache<__nv_bfloat16>().reset();
}

template <typename T>
DeviceScan<T>& scan_buffers(int64_t B, int64_t D, int64_t L, int64_t N) {
  std::unique_ptr<DeviceScan<T>>& cached = scan_cache<T>();
  if (!cached || cached->B != B || cached->D != D || cached->L != L || cached->N != N) {
    release_scan_buffers();
    cached = std::make_unique<DeviceScan<T>>(B, D, L, N);
  }
  return *cached;
}

// ---------------------------------------------------------------------------------------------------------
// The timing loop: one warm-up call (its launch status and an optional output check decide whether the
// benchmark runs), then per iteration an event pair around `launch` on the default stream.
template <typename Launch, typename Check>
double timed_loop(benchmark::State& state, Launch&& launch, Check&& check) {
  cudaError_t err = launch();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    state.SkipWithError(cudaGetErrorString(err));
    return 0;
  }
  if (const char* why = check()) {
    state.SkipWithError(why);
    return 0;
  }
  cudaEvent_t start, stop;
  HM_CUDA_CHECK(cudaEventCreate(&start));
  HM_CUDA_CHECK(cudaEventCreate(&stop));
  double total_s = 0;
  for (auto _ : state) {
    cudaEventRecord(start);
    err = launch();
    cudaEventRecord(stop);
    if (err == cudaSuccess) err = cudaEventSynchronize(stop);
    if (err != cudaSuccess) {
      state.SkipWithError(cudaGetErrorString(err));
      break;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
    total_s += ms * 1e-3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return total_s;
}

void report(benchmark::State& state, double total_s, int64_t updates, int64_t bytes) {
  if (state.error_occurred() || state.iterations() == 0 || total_s <= 0) return;
  const double iters = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * updates);
  state.counters["bytes_per_second"] = benchmark::Counter(
      static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  if (g_copy_bandwidth > 0) state.counters["x_floor"] = (total_s / iters) / (bytes / g_copy_bandwidth);
}

// The first (batch, channel) row of `out` must be finite: a cheap guard against timing a broken launch.
template <typename T>
const char* check_first_row(const DeviceBuffer& out, int64_t L) {
  std::vector<T> row(static_cast<size_t>(L));
  if (cudaMemcpy(row.data(), out.ptr, row.size() * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
    return "cannot copy the output back";
  for (const T& x : row)
    if (!std::isfinite(to_float<T>(x))) return "non-finite output in the first row";
  return nullptr;
}

// Args: B, D, L, N.
template <typename T>
void BM_Forward(benchmark::State& state, int64_t B, int64_t D, int64_t L, int64_t N) {
  DeviceScan<T>& buf = scan_buffers<T>(B, D, L, N);
  const SelectiveScanParams p = buf.forward_params(false);
  const double total_s = timed_loop(
      state, [&] { return hamburg_mamba::gpu::selective_scan_fwd_cuda(p, nullptr); },
      [&] { return check_first_row<T>(*buf.out, L); });
  report(state, total_s, B * D * L * N, buf.forward_bytes(false));
}

template <typename T>
void BM_ForwardBackward(benchmark::State& state, int64_t B, int64_t D, int64_t L, int64_t N) {
  DeviceScan<T>& buf = scan_buffers<T>(B, D, L, N);
  const SelectiveScanParams fp = buf.forward_params(true);
  const SelectiveScanBwdParams bp = buf.backward_params();
  const double total_s = timed_loop(
      state,
      [&] {
        cudaError_t err = hamburg_mamba::gpu::selective_scan_fwd_cuda(fp, nullptr);
        if (err == cudaSuccess) err = buf.zero_accumulators(nullptr);
        if (err == cudaSuccess) err = hamburg_mamba::gpu::selective_scan_bwd_cuda(bp, nullptr);
        return err;
      },
      [&] { return check_first_row<T>(*buf.du, L); });
  report(state, total_s, B * D * L * N, buf.forward_bytes(true) + buf.backward_bytes());
}

// One streaming step for a batch of pathways, state (B, D, N) updated in place. The state is float32
// whatever T is; it is read and written once per step, which bounds this op.
template <typename T>
void BM_StateUpdate(benchmark::State& state, int64_t B, int64_t D, int64_t N) {
  release_scan_buffers();
  DeviceBuffer st(B * D * N * sizeof(float)), out(B * D * sizeof(T));
  HM_CUDA_CHECK(cudaMemcpy(st.ptr, random_vector(B * D * N, -1, 1, 11).data(), st.bytes, cudaMemcpyHostToDevice));
  const auto x = upload<T>(random_vector(B * D, -1, 1, 12)), dt = upload<T>(random_vector(B * D, -4, 0, 13));
  const auto z = upload<T>(random_vector(B * D, -3, 3, 14)), Bm = upload<T>(random_vector(B * N, -1, 1, 15));
  const auto Cm = upload<T>(random_vector(B * N, -1, 1, 16)), A = upload<float>(mamba_A(D, N));
  const auto Dv = upload<float>(random_vector(D, -1, 1, 17)), bias = upload<float>(random_vector(D, -3, -1, 18));
  StateUpdateParams p;
  p.dtype = scalar_type<T>();
  p.batch = B;
  p.dim = D;
  p.dstate = N;
  p.n_groups = 1;
  p.dt_softplus = true;
  p.state = st.ptr;
  p.x = x->ptr;
  p.dt = dt->ptr;
  p.Bmat = Bm->ptr;
  p.Cmat = Cm->ptr;
  p.z = z->ptr;
  p.A = A->ptr;
  p.Dvec = Dv->ptr;
  p.dt_bias = bias->ptr;
  p.out = out.ptr;
  const double total_s = timed_loop(
      state, [&] { return hamburg_mamba::gpu::selective_state_update_cuda(p, nullptr); },
      [&] { return check_first_row<T>(out, D); });
  report(state, total_s, B * D * N, B * D * N * 2 * static_cast<int64_t>(sizeof(float)));
}

// Device-to-device copy of `bytes`; bytes_per_second counts the read and the write.
void BM_MemcpyD2D(benchmark::State& state, int64_t bytes) {
  release_scan_buffers();
  DeviceBuffer src(bytes), dst(bytes);
  HM_CUDA_CHECK(cudaMemset(src.ptr, 0x3c, bytes));
  const double total_s = timed_loop(
      state, [&] { return cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice, nullptr); },
      [] { return static_cast<const char*>(nullptr); });
  if (state.error_occurred() || total_s <= 0) return;
  state.counters["bytes_per_second"] = benchmark::Counter(
      2.0 * static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// The copy bandwidth that x_floor divides by: median of 10 copies of 1 GiB (read + write counted).
double measure_copy_bandwidth() {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src(bytes), dst(bytes);
  HM_CUDA_CHECK(cudaMemset(src.ptr, 0x3c, bytes));
  cudaEvent_t start, stop;
  HM_CUDA_CHECK(cudaEventCreate(&start));
  HM_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(10);
  HM_CUDA_CHECK(cudaMemcpy(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice));  // warm-up
  for (float& t : ms) {
    HM_CUDA_CHECK(cudaEventRecord(start));
    HM_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice, nullptr));
    HM_CUDA_CHECK(cudaEventRecord(stop));
    HM_CUDA_CHECK(cudaEventSynchronize(stop));
    HM_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3);
}

// (B, D, L, N): the project's GPU target, then its CPU benchmark sizes.
constexpr int64_t kScanSizes[][4] = {{8, 2048, 2048, 16}, {2, 1024, 512, 16}, {2, 1024, 512, 64}, {1, 2048, 4096, 16}};

template <typename T>
void register_scan_benchmarks(const int64_t* s) {
  const std::string suffix = std::string("/") + dtype_name<T>() + "/B:" + std::to_string(s[0]) +
                             "/D:" + std::to_string(s[1]) + "/L:" + std::to_string(s[2]) + "/N:" + std::to_string(s[3]);
  benchmark::RegisterBenchmark(("fwd" + suffix).c_str(), BM_Forward<T>, s[0], s[1], s[2], s[3])
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("fwd_bwd" + suffix).c_str(), BM_ForwardBackward<T>, s[0], s[1], s[2], s[3])
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipping");
    if (err != cudaSuccess) std::printf(" (cudaGetDeviceCount: %s)", cudaGetErrorString(err));
    std::printf("\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  cudaDeviceProp prop{};
  HM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  g_copy_bandwidth = measure_copy_bandwidth();
  char buf[64];
  benchmark::AddCustomContext("cuda_device", prop.name);
  std::snprintf(buf, sizeof(buf), "sm_%d%d, %d SMs", prop.major, prop.minor, prop.multiProcessorCount);
  benchmark::AddCustomContext("cuda_arch", buf);
  std::snprintf(buf, sizeof(buf), "%.0f GB/s (1 GiB, read + write)", g_copy_bandwidth / 1e9);
  benchmark::AddCustomContext("d2d_copy_bandwidth", buf);
#if defined(HAMBURG_MAMBA_CUDA_FAST_EXP)
  benchmark::AddCustomContext("exp_decay", "exp2f (HAMBURG_MAMBA_CUDA_FAST_EXP)");
#else
  benchmark::AddCustomContext("exp_decay", "FMA Cephes expf (default)");
#endif

  benchmark::RegisterBenchmark("memcpy_d2d/bytes:1073741824", BM_MemcpyD2D, int64_t{1} << 30)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  for (const auto& s : kScanSizes) {
    register_scan_benchmarks<__nv_bfloat16>(s);
    register_scan_benchmarks<float>(s);
  }
  benchmark::RegisterBenchmark("state_update/bf16/B:1024/D:1024/N:64", BM_StateUpdate<__nv_bfloat16>, 1024, 1024, 64)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("state_update/f32/B:1024/D:1024/N:64", BM_StateUpdate<float>, 1024, 1024, 64)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  release_scan_buffers();  // before the CUDA runtime's own teardown at exit
  return 0;
}
