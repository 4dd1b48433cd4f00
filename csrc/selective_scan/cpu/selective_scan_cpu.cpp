// CPU dispatcher: picks the ISA level once, splits the work items over threads, and reduces the
// backward's partial gradients in a fixed order.
#include "selective_scan_cpu.h"

#include <cstdlib>
#include <cstring>
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

template <typename S>
void reduce_partials(const SelectiveScanBwdParams& p, const BwdPartials& part, const ParallelFor& parallel_for) {
  const int64_t N = p.dstate, L = p.seqlen, D = p.dim, G = p.n_groups;
  const int64_t bpg = (D / G + kLanes - 1) / kLanes;
  // dB, dC (B, G, N, L): sum over the channel blocks of each group, blocks in ascending order.
  parallel_for(p.batch * G * N, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bg = row / N, n = row % N;
      for (const auto& [src, dst] : {std::pair{static_cast<const S*>(part.dB), static_cast<S*>(p.dB)},
                                     std::pair{static_cast<const S*>(part.dC), static_cast<S*>(p.dC)}}) {
        S* out = dst + row * L;
        const S* first = src + (bg * bpg * N + n) * L;
        for (int64_t t = 0; t < L; ++t) out[t] = first[t];
        for (int64_t j = 1; j < bpg; ++j) {
          const S* in = src + ((bg * bpg + j) * N + n) * L;
          for (int64_t t = 0; t < L; ++t) out[t] += in[t];
        }
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

template <typename S>
void run_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for) {
  const int64_t items = num_items(p.batch, p.dim, p.n_groups);
  std::vector<S> dBC(2 * static_cast<size_t>(items * p.dstate * p.seqlen));
  std::vector<S> dA(static_cast<size_t>(p.batch * p.dim * p.dstate));
  std::vector<S> dD(static_cast<size_t>(p.batch * p.dim)), dbias(static_cast<size_t>(p.batch * p.dim));
  BwdPartials part;
  part.dB = dBC.data();
  part.dC = dBC.data() + items * p.dstate * p.seqlen;
  part.dA = dA.data();
  part.dD = dD.data();
  part.ddelta_bias = dbias.data();
  const Isa isa = active_isa();
  parallel_for(items, [&](int64_t begin, int64_t end) {
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
  parallel_for(num_items(p.batch, p.dim, p.n_groups), [&](int64_t begin, int64_t end) {
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
  parallel_for(p.batch * p.dim, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvx512: return avx512::state_update_items(p, begin, end);
      case Isa::kAvx2: return avx2::state_update_items(p, begin, end);
      case Isa::kBaseline: return baseline::state_update_items(p, begin, end);
    }
  });
}

const char* cpu_isa() {
  switch (active_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace hamburg_mamba::cpu
