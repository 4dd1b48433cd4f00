// Google Benchmark of the torch-free CPU selective-scan kernels (csrc/selective_scan/cpu), float32.
//
// Glossary: B batch, D channels, L steps, N state size.
// items_per_second counts state updates (B * D * L * N per scan, B * D * N per streaming step), so the
// figures read as the "G state-updates/s" of bench/RESULTS.md. The inputs are those of a Mamba block:
// softplus(delta + delta_bias) step sizes, A = -(n + 1), a skip D and a gate z.
//
//   build/cmake/bench_selective_scan_cpu --benchmark_min_time=1    (v1.7.1: a plain number of seconds)
//
// threads:0 runs on OpenMP's default team (OMP_NUM_THREADS, else every core); threads:1 on one core.
// Rates are per wall-clock second; the CPU column is the whole process's CPU time (all threads), which
// gives a second reading on a machine shared with other work.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "openmp_for.h"
#include "selective_scan/cpu/selective_scan_cpu.h"
#include "selective_scan/selective_scan.h"
#include "state_update/cpu/state_update_cpu.h"

namespace {

using hamburg_mamba::ScalarType;
using hamburg_mamba::SelectiveScanBwdParams;
using hamburg_mamba::SelectiveScanParams;
using hamburg_mamba::StateUpdateParams;
using hamburg_mamba::cpu::make_openmp_for;

std::vector<float> random_vector(int64_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> mamba_A(int64_t dim, int64_t dstate) {
  std::vector<float> A(static_cast<size_t>(dim * dstate));
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t n = 0; n < dstate; ++n) A[d * dstate + n] = -static_cast<float>(n + 1);
  return A;
}

// Inputs and outputs of one scan, contiguous (B, D, L) and (B, 1, N, L) float32.
struct ScanBuffers {
  int64_t B, D, L, N;
  std::vector<float> u, delta, z, Bm, Cm, A, Dv, bias, dout;
  std::vector<float> out, last, checkpoints;
  std::vector<float> du, ddelta, dz, dA, dB, dC, dD, dbias;

  ScanBuffers(int64_t batch, int64_t dim, int64_t seqlen, int64_t dstate) : B(batch), D(dim), L(seqlen), N(dstate) {
    const int64_t bdl = B * D * L, bnl = B * N * L;
    u = random_vector(bdl, -1, 1, 1);
    delta = random_vector(bdl, -4, 0, 2);  // softplus(delta + bias) in about (0.001, 0.3), Mamba's dt range
    z = random_vector(bdl, -3, 3, 3);
    Bm = random_vector(bnl, -1, 1, 4);
    Cm = random_vector(bnl, -1, 1, 5);
    A = mamba_A(D, N);
    Dv = random_vector(D, -1, 1, 6);
    bias = random_vector(D, -3, -1, 7);
    dout = random_vector(bdl, -1, 1, 8);
    out.resize(bdl);
    last.resize(B * D * N);
    checkpoints.resize(B * D * hamburg_mamba::num_checkpoints(L) * N);
    du.resize(bdl);
    ddelta.resize(bdl);
    dz.resize(bdl);
    dA.resize(D * N);
    dB.resize(bnl);
    dC.resize(bnl);
    dD.resize(D);
    dbias.resize(D);
  }

  SelectiveScanParams forward_params(bool save_checkpoints) {
    SelectiveScanParams p;
    p.dtype = ScalarType::kFloat32;
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
    p.u = u.data();
    p.delta = delta.data();
    p.Bmat = Bm.data();
    p.Cmat = Cm.data();
    p.z = z.data();
    p.A = A.data();
    p.Dvec = Dv.data();
    p.delta_bias = bias.data();
    p.out = out.data();
    p.last_state = last.data();
    p.checkpoints = save_checkpoints ? checkpoints.data() : nullptr;
    return p;
  }

  SelectiveScanBwdParams backward_params() {
    SelectiveScanBwdParams p;
    static_cast<SelectiveScanParams&>(p) = forward_params(true);
    p.dout_batch_stride = D * L;
    p.dout_d_stride = L;
    p.dout = dout.data();
    p.du = du.data();
    p.ddelta = ddelta.data();
    p.dz = dz.data();
    p.dA = dA.data();
    p.dB = dB.data();
    p.dC = dC.data();
    p.dD = dD.data();
    p.ddelta_bias = dbias.data();
    return p;
  }
};

// Args: B, D, L, N, threads.
void BM_ScanForward(benchmark::State& state) {
  ScanBuffers buf(state.range(0), state.range(1), state.range(2), state.range(3));
  const auto parallel_for = make_openmp_for(static_cast<int>(state.range(4)));
  const SelectiveScanParams p = buf.forward_params(false);
  for (auto _ : state) {
    hamburg_mamba::cpu::selective_scan_fwd(p, parallel_for);
    benchmark::DoNotOptimize(buf.out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * buf.B * buf.D * buf.L * buf.N);
}

// Forward saving checkpoints, then the backward: one training step of the op.
void BM_ScanForwardBackward(benchmark::State& state) {
  ScanBuffers buf(state.range(0), state.range(1), state.range(2), state.range(3));
  const auto parallel_for = make_openmp_for(static_cast<int>(state.range(4)));
  const SelectiveScanParams fp = buf.forward_params(true);
  const SelectiveScanBwdParams bp = buf.backward_params();
  for (auto _ : state) {
    hamburg_mamba::cpu::selective_scan_fwd(fp, parallel_for);
    hamburg_mamba::cpu::selective_scan_bwd(bp, parallel_for);
    benchmark::DoNotOptimize(buf.du.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * buf.B * buf.D * buf.L * buf.N);
}

void scan_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "D", "L", "N", "threads"});
  for (int threads : {0, 1}) {
    b->Args({2, 1024, 512, 16, threads});
    b->Args({2, 1024, 512, 64, threads});
    b->Args({1, 2048, 4096, 16, threads});
  }
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_ScanForward)->Apply(scan_sizes);
BENCHMARK(BM_ScanForwardBackward)->Apply(scan_sizes);

// One streaming step for a batch of pathways: state (B, D, N) updated in place. Args: B, D, N, threads.
void BM_StateUpdate(benchmark::State& state) {
  const int64_t B = state.range(0), D = state.range(1), N = state.range(2);
  const auto parallel_for = make_openmp_for(static_cast<int>(state.range(3)));
  std::vector<float> st = random_vector(B * D * N, -1, 1, 11);
  const std::vector<float> x = random_vector(B * D, -1, 1, 12), dt = random_vector(B * D, -4, 0, 13);
  const std::vector<float> z = random_vector(B * D, -3, 3, 14), Bm = random_vector(B * N, -1, 1, 15);
  const std::vector<float> Cm = random_vector(B * N, -1, 1, 16), A = mamba_A(D, N);
  const std::vector<float> Dv = random_vector(D, -1, 1, 17), bias = random_vector(D, -3, -1, 18);
  std::vector<float> out(static_cast<size_t>(B * D));
  StateUpdateParams p;
  p.dtype = ScalarType::kFloat32;
  p.batch = B;
  p.dim = D;
  p.dstate = N;
  p.n_groups = 1;
  p.dt_softplus = true;
  p.state = st.data();
  p.x = x.data();
  p.dt = dt.data();
  p.Bmat = Bm.data();
  p.Cmat = Cm.data();
  p.z = z.data();
  p.A = A.data();
  p.Dvec = Dv.data();
  p.dt_bias = bias.data();
  p.out = out.data();
  for (auto _ : state) {
    hamburg_mamba::cpu::selective_state_update(p, parallel_for);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * B * D * N);
  // The state is read and written once per step: the memory traffic that bounds this op.
  state.SetBytesProcessed(state.iterations() * B * D * N * 2 * static_cast<int64_t>(sizeof(float)));
}

BENCHMARK(BM_StateUpdate)
    ->ArgNames({"B", "D", "N", "threads"})
    ->Args({1024, 1024, 64, 0})
    ->Args({1024, 1024, 64, 1})
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("hamburg_mamba_cpu_isa", hamburg_mamba::cpu::cpu_isa());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
