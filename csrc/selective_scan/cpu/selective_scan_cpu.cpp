// CPU dispatcher: picks the ISA level once, splits the work items over threads, and reduces the
// backward's partial gradients in a fixed order.
#include "selective_scan_cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "scalar_types.h"
#include "selective_scan_cpu_isa.h"

namespace hamburg_mamba::cpu {
namespace {

enum class Isa { kBaseline, kAvx2, kAvx512 };

Isa detect_isa() {
  Isa best = Isa::kBaseline;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    best = Isa::kAvx512;
#endif
  // HAMBURG_MAMBA_CPU_ISA caps the level (to test or compare the variants on one machine).
  if (const char* cap = std::getenv("HAMBURG_MAMBA_CPU_ISA")) {
    if (std::strcmp(cap, "baseline") == 0) best = Isa::kBaseline;
    if (std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
  }
  return best;
}

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

int64_t num_items(int64_t batch, int64_t dim, int64_t groups) {
  const int64_t dpg = dim / groups;
  return batch * groups * ((dpg + kLanes - 1) / kLanes);
}

// Below this many state updates per task, waking another thread costs more than it saves (and on a busy
// machine a descheduled OpenMP thread stalls the whole team), so small problems run on fewer threads.
constexpr int64_t kMinTaskWork = int64_t{1} << 18;

// Runs fn over [0, items) in at most as many contiguous tasks as keep each above kMinTaskWork.
// Results do not depend on the split: every item is computed by one thread in a fixed order.
template <typename F>
void for_items(int64_t items, int64_t work_per_item, const ParallelFor& parallel_for, const F& fn) {
  const int64_t tasks = std::min(items, std::max<int64_t>(1, items * work_per_item / kMinTaskWork));
  if (tasks <= 1) {
    if (items > 0) fn(0, items);
    return;
  }
  parallel_for(tasks, [&](int64_t begin, int64_t end) { fn(begin * items / tasks, end * items / tasks); });
}

template <typename S>
void reduce_partials(const SelectiveScanBwdParams& p, const BwdPartials& part, const ParallelFor& parallel_for) {
  const int64_t N = p.dstate, L = p.seqlen, D = p.dim, G = p.n_groups;
  const int64_t bpg = (D / G + kLanes - 1) / kLanes;
  // dB, dC (B, G, N, L) from partials (items, L, N): sum over the channel blocks of each group in
  // ascending order, one tile of kTile steps at a time (contiguous adds), then transpose to (N, L).
  constexpr int64_t kTile = 64;
  const int64_t n_tiles = (L + kTile - 1) / kTile;
  for_items(p.batch * G * n_tiles, 2 * bpg * kTile * N, parallel_for, [&](int64_t begin, int64_t end) {
    std::unique_ptr<S[]> acc(new S[kTile * N]);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bg = task / n_tiles, t0 = (task % n_tiles) * kTile, len = std::min(kTile, L - t0);
      for (const auto& [src, dst] : {std::pair{static_cast<const S*>(part.dB), static_cast<S*>(p.dB)},
                                     std::pair{static_cast<const S*>(part.dC), static_cast<S*>(p.dC)}}) {
        const S* first = src + (bg * bpg * L + t0) * N;
        for (int64_t i = 0; i < len * N; ++i) acc[i] = first[i];
        for (int64_t j = 1; j < bpg; ++j) {
          const S* in = src + ((bg * bpg + j) * L + t0) * N;
          for (int64_t i = 0; i < len * N; ++i) acc[i] += in[i];
        }
        S* out = dst + bg * N * L + t0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t t = 0; t < len; ++t) out[n * L + t] = acc[t * N + n];
      }
    }
  });
  // dA (D, N), dD and ddelta_bias (D,): sum over the batch in ascending order.
  const S* dA_part = static_cast<const S*>(part.dA);
  S* dA = static_cast<S*>(p.dA);
  for (int64_t i = 0; i < D * N; ++i) {
    S acc = 0;
    for (int64_t b = 0; b < p.batch; ++b) acc += dA_part[b * D * N + i];
    dA[i] = acc;
  }
  for (const auto& [src, dst] : {std::pair{static_cast<const S*>(part.dD), static_cast<S*>(p.dD)},
                                 std::pair{static_cast<const S*>(part.ddelta_bias), static_cast<S*>(p.ddelta_bias)}}) {
    if (dst == nullptr) continue;
    for (int64_t d = 0; d < D; ++d) {
      S acc = 0;
      for (int64_t b = 0; b < p.batch; ++b) acc += src[b * D + d];
      dst[d] = acc;
    }
  }
}

// The backward's partials are tens of MB; fresh pages cost a page fault each (the first backward at
// (1, 2048, 4096, 16) took 2.8x the second), so each calling thread keeps its largest buffer so far.
template <typename S>
S* partials_workspace(int64_t n) {
  thread_local std::unique_ptr<S[]> buffer;
  thread_local int64_t capacity = 0;
  if (n > capacity) {
    buffer.reset(new S[n]);
    capacity = n;
  }
  return buffer.get();
}

template <typename S>
void run_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for) {
  const int64_t items = num_items(p.batch, p.dim, p.n_groups);
  // Every entry of the partials is written by exactly one work item, so they start uninitialised.
  const int64_t bc_size = items * p.dstate * p.seqlen, bd = p.batch * p.dim;
  S* buffer = partials_workspace<S>(2 * bc_size + bd * p.dstate + 2 * bd);
  BwdPartials part;
  part.dB = buffer;
  part.dC = buffer + bc_size;
  part.dA = buffer + 2 * bc_size;
  part.dD = buffer + 2 * bc_size + bd * p.dstate;
  part.ddelta_bias = buffer + 2 * bc_size + bd * p.dstate + bd;
  const Isa isa = active_isa();
  for_items(items, 3 * kLanes * p.seqlen * p.dstate, parallel_for, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::bwd_items(p, part, begin, end);
      case Isa::kAvx2: return avx2::bwd_items(p, part, begin, end);
      case Isa::kBaseline: return baseline::bwd_items(p, part, begin, end);
    }
  });
  reduce_partials<S>(p, part, parallel_for);
}

}  // namespace

void serial_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n > 0) fn(0, n);
}

void selective_scan_fwd(const SelectiveScanParams& p, const ParallelFor& parallel_for) {
  const Isa isa = active_isa();
  const int64_t work = kLanes * p.seqlen * p.dstate;
  for_items(num_items(p.batch, p.dim, p.n_groups), work, parallel_for, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::fwd_items(p, begin, end);
      case Isa::kAvx2: return avx2::fwd_items(p, begin, end);
      case Isa::kBaseline: return baseline::fwd_items(p, begin, end);
    }
  });
}

void selective_scan_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for) {
  if (p.dtype == ScalarType::kFloat64) {
    run_bwd<double>(p, parallel_for);
  } else {
    run_bwd<float>(p, parallel_for);
  }
}

void selective_state_update(const StateUpdateParams& p, const ParallelFor& parallel_for) {
  const Isa isa = active_isa();
  for_items(p.batch * p.dim, p.dstate, parallel_for, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::state_update_items(p, begin, end);
      case Isa::kAvx2: return avx2::state_update_items(p, begin, end);
      case Isa::kBaseline: return baseline::state_update_items(p, begin, end);
    }
  });
}

void mamba_block_step(const MambaBlockStepParams& p, const ParallelFor& parallel_for) {
  const Isa isa = active_isa();
  const int64_t B = p.batch, M = p.d_model, E = p.d_inner, R = p.dt_rank, N = p.dstate;
  const int64_t s_size = p.dtype == ScalarType::kFloat64 ? 8 : 4;
  const int64_t w_size = p.weight_dtype == ScalarType::kFloat64 ? 8 : p.weight_dtype == ScalarType::kFloat32 ? 4 : 2;
  char* ws = static_cast<char*>(p.workspace);
  auto take = [&](int64_t elements) {
    void* at = ws;
    ws += elements * s_size;
    return at;
  };
  void* normed = take(B * M);
  void* xi = take(B * E);
  void* z = take(B * E);
  void* xc = take(B * E);
  void* dt = take(B * E);
  void* y = take(B * E);
  void* dt_r = take(B * R);
  void* Bm = take(B * N);
  void* Cm = take(B * N);

  for_items(B, M, parallel_for, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::rms_norm_items(p, normed, begin, end);
      case Isa::kAvx2: return avx2::rms_norm_items(p, normed, begin, end);
      case Isa::kBaseline: return baseline::rms_norm_items(p, normed, begin, end);
    }
  });
  // out[b] (+ residual[b]) = W[rows] x[b] for `rows` weight rows starting at `weight`.
  auto gemv = [&](const void* weight, int64_t rows, int64_t in, const void* x, void* out, const void* residual) {
    GemvJob j;
    j.dtype = p.dtype;
    j.weight_dtype = p.weight_dtype;
    j.rows = rows;
    j.in = in;
    j.batch = B;
    j.weight = weight;
    j.x = x;
    j.x_stride = in;
    j.y = out;
    j.y_stride = rows;
    j.residual = residual;
    for_items((rows + kLanes - 1) / kLanes, kLanes * in * B, parallel_for, [&](int64_t begin, int64_t end) {
      switch (isa) {
        case Isa::kAvx512: return avx512::gemv_items(j, begin, end);
        case Isa::kAvx2: return avx2::gemv_items(j, begin, end);
        case Isa::kBaseline: return baseline::gemv_items(j, begin, end);
      }
    });
  };
  auto rows_of = [&](const void* weight, int64_t first_row, int64_t in) {
    return static_cast<const char*>(weight) + first_row * in * w_size;
  };
  gemv(p.in_proj, E, M, normed, xi, nullptr);
  gemv(rows_of(p.in_proj, E, M), E, M, normed, z, nullptr);
  for_items(B * E, p.d_conv, parallel_for, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::conv_step_items(p, xi, xc, begin, end);
      case Isa::kAvx2: return avx2::conv_step_items(p, xi, xc, begin, end);
      case Isa::kBaseline: return baseline::conv_step_items(p, xi, xc, begin, end);
    }
  });
  gemv(p.x_proj, R, E, xc, dt_r, nullptr);
  gemv(rows_of(p.x_proj, R, E), N, E, xc, Bm, nullptr);
  gemv(rows_of(p.x_proj, R + N, E), N, E, xc, Cm, nullptr);
  gemv(p.dt_proj, E, R, dt_r, dt, nullptr);

  StateUpdateParams s;
  s.dtype = p.dtype;
  s.batch = B;
  s.dim = E;
  s.dstate = N;
  s.dt_softplus = true;
  s.state = p.ssm_state;
  s.x = xc;
  s.dt = dt;
  s.Bmat = Bm;
  s.Cmat = Cm;
  s.z = z;
  s.A = p.A;
  s.Dvec = p.Dvec;
  s.dt_bias = p.dt_bias;
  s.dt_scale = p.dt_scale;
  s.out = y;
  selective_state_update(s, parallel_for);

  gemv(p.out_proj, M, E, y, p.out, p.x);
}

const char* cpu_isa() {
  switch (active_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace hamburg_mamba::cpu
