// CPU selective-scan dispatcher: calls the kernel table of the active ISA level over the work items, split
// over threads, and reduces the backward's partial gradients in a fixed order.
#include "selective_scan_cpu.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "selective_scan_cpu_isa.h"

namespace hamburg_mamba::cpu {
namespace {

// The kernel table of the active ISA level, picked once.
const ScanKernels& kernels() {
  static const ScanKernels& table = select_isa(baseline::kScanKernels, avx2::kScanKernels, avx512::kScanKernels);
  return table;
}

int64_t num_items(int64_t batch, int64_t dim, int64_t groups) {
  const int64_t dpg = dim / groups;
  return batch * groups * ((dpg + kLanes - 1) / kLanes);
}

// Below this many state updates per task, waking another thread costs more than it saves (and on a busy
// machine a descheduled OpenMP thread stalls the whole team), so small problems run on fewer threads.
constexpr int64_t kMinTaskWork = int64_t{1} << 18;

template <typename S>
void reduce_partials(const SelectiveScanBwdParams& p, const BwdPartials& part, const ParallelFor& parallel_for) {
  const int64_t N = p.dstate, L = p.seqlen, D = p.dim, G = p.n_groups;
  const int64_t bpg = (D / G + kLanes - 1) / kLanes;
  // dB, dC (B, G, N, L) from partials (items, L, N): sum over the channel blocks of each group in
  // ascending order, one tile of kTile steps at a time (contiguous adds), then transpose to (N, L).
  constexpr int64_t kTile = 64;
  const int64_t n_tiles = (L + kTile - 1) / kTile;
  for_items(p.batch * G * n_tiles, 2 * bpg * kTile * N, kMinTaskWork, parallel_for, [&](int64_t begin, int64_t end) {
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
  const auto bwd_items = kernels().bwd_items;
  for_items(items, 3 * kLanes * p.seqlen * p.dstate, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { bwd_items(p, part, begin, end); });
  reduce_partials<S>(p, part, parallel_for);
}

}  // namespace

void selective_scan_fwd(const SelectiveScanParams& p, const ParallelFor& parallel_for) {
  const auto fwd_items = kernels().fwd_items;
  const int64_t work = kLanes * p.seqlen * p.dstate;
  for_items(num_items(p.batch, p.dim, p.n_groups), work, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { fwd_items(p, begin, end); });
}

void selective_scan_bwd(const SelectiveScanBwdParams& p, const ParallelFor& parallel_for) {
  if (p.dtype == ScalarType::kFloat64) {
    run_bwd<double>(p, parallel_for);
  } else {
    run_bwd<float>(p, parallel_for);
  }
}

}  // namespace hamburg_mamba::cpu
