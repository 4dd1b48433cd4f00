// Unit tests of the torch-free CPU causal conv1d kernels (csrc/causal_conv1d/cpu).
//
// Glossary: B batch, D channels, L steps, W kernel width, H = W - 1 history steps, S conv_state length.
//
// The kernels are compared with an independent scalar float64 reference written here from the math of
// csrc/causal_conv1d/causal_conv1d.h (one output at a time, every tap spelled out), whose backward is itself
// checked against central finite differences. Suites whose names start with "Isa" run once more under each
// capped ISA level (HAMBURG_MAMBA_CPU_ISA, see CMakeLists.txt).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "causal_conv1d/causal_conv1d.h"
#include "causal_conv1d/cpu/causal_conv1d_cpu.h"
#include "openmp_for.h"

namespace {

using hamburg_mamba::CausalConv1dBwdParams;
using hamburg_mamba::CausalConv1dParams;
using hamburg_mamba::CausalConv1dUpdateParams;
using hamburg_mamba::ScalarType;
using hamburg_mamba::cpu::make_openmp_for;
using hamburg_mamba::cpu::serial_for;
using Vec = std::vector<double>;

// Relative L2 bounds against the float64 reference (whose inputs are not rounded to float32): float64 sums
// of W terms; float32 outputs. float32 gradients get 10x more: dbias and dweight are sums over B * L
// steps of random sign, whose cancellation magnifies the float32 rounding of each term (measured up to
// 1.5e-6 on dbias).
constexpr double kTolFloat64 = 1e-13;
constexpr double kTolFloat32 = 1e-6;
constexpr double kTolFloat32Grad = 1e-5;

struct Problem {
  int64_t B, D, L, W;
  bool silu, has_init, has_seq;
  Vec x, weight, bias, init, dout, dfinal;
  std::vector<int32_t> seq;

  int64_t H() const { return W - 1; }
  double x_ext(int64_t b, int64_t c, int64_t s) const {
    if (s >= 0) return x[(b * D + c) * L + s];
    return has_init ? init[(b * D + c) * H() + s + H()] : 0.0;
  }
  bool joins(int64_t b, int64_t s, int64_t t) const { return !has_seq || (s >= 0 && seq[b * L + s] == seq[b * L + t]); }
  bool padding(int64_t b, int64_t t) const { return has_seq && seq[b * L + t] < 0; }
  double pre(int64_t b, int64_t c, int64_t t) const {
    if (padding(b, t)) return 0.0;
    double acc = bias[c];
    for (int64_t k = 0; k < W; ++k)
      if (joins(b, t - H() + k, t)) acc += weight[c * W + k] * x_ext(b, c, t - H() + k);
    return acc;
  }
  static double silu_of(double v) { return v / (1.0 + std::exp(-v)); }
  double out(int64_t b, int64_t c, int64_t t) const { return silu ? silu_of(pre(b, c, t)) : pre(b, c, t); }
  // <out, dout> + <final_states, dfinal>: the loss whose gradient the backward computes.
  double loss() const {
    double total = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < D; ++c) {
        for (int64_t t = 0; t < L; ++t) total += out(b, c, t) * dout[(b * D + c) * L + t];
        if (!has_seq)
          for (int64_t k = 0; k < H(); ++k) total += x_ext(b, c, L - H() + k) * dfinal[(b * D + c) * H() + k];
      }
    return total;
  }
};

Problem make_problem(int64_t B, int64_t D, int64_t L, int64_t W, bool silu, bool has_init, bool has_seq,
                     unsigned seed = 0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  auto fill = [&](int64_t n, double scale) {
    Vec v(n);
    for (auto& e : v) e = normal(gen) * scale;
    return v;
  };
  Problem p{B, D, L, W, silu, has_init, has_seq};
  p.x = fill(B * D * L, 1.0);
  p.weight = fill(D * W, 1.0 / std::sqrt(double(W)));
  p.bias = fill(D, 0.3);
  p.init = fill(B * D * (W - 1), 1.0);
  p.dout = fill(B * D * L, 1.0);
  p.dfinal = fill(B * D * (W - 1), 1.0);
  p.seq.assign(B * L, 0);
  // Sequence boundaries at L/3 and L/3 + 1 (a one-step sequence), padding over the last 5 steps.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) p.seq[b * L + t] = t >= L - 5 ? -1 : int32_t(t >= L / 3) + int32_t(t >= L / 3 + 1);
  return p;
}

// The reference backward, straight from the chain rule (checked against finite differences below).
struct Grads {
  Vec dx, dweight, dbias, dinit;
};

// Adds d to the gradient of x_ext[s] of row (b, c): dx for s >= 0, dinitial_states before.
void add_input_grad(const Problem& p, Grads& g, int64_t b, int64_t c, int64_t s, double d) {
  if (s >= 0) {
    g.dx[(b * p.D + c) * p.L + s] += d;
  } else if (p.has_init) {
    g.dinit[(b * p.D + c) * p.H() + s + p.H()] += d;
  }
}

Grads reference_grads(const Problem& p) {
  const int64_t H = p.H();
  Grads g{Vec(p.B * p.D * p.L), Vec(p.D * p.W), Vec(p.D), Vec(p.B * p.D * H)};
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t c = 0; c < p.D; ++c) {
      for (int64_t t = 0; t < p.L; ++t) {
        if (p.padding(b, t)) continue;
        const double v = p.pre(b, c, t), sig = 1.0 / (1.0 + std::exp(-v));
        const double gt = p.dout[(b * p.D + c) * p.L + t] * (p.silu ? sig * (1.0 + v * (1.0 - sig)) : 1.0);
        g.dbias[c] += gt;
        for (int64_t k = 0; k < p.W; ++k) {
          const int64_t s = t - H + k;
          if (!p.joins(b, s, t)) continue;
          g.dweight[c * p.W + k] += gt * p.x_ext(b, c, s);
          add_input_grad(p, g, b, c, s, gt * p.weight[c * p.W + k]);
        }
      }
      if (p.has_seq) continue;
      for (int64_t k = 0; k < H; ++k) {
        const int64_t s = p.L - H + k;
        add_input_grad(p, g, b, c, s, p.dfinal[(b * p.D + c) * H + k]);
      }
    }
  return g;
}

double rel_l2(const Vec& got, const Vec& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

template <typename T>
std::vector<T> as(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <typename T>
Vec to_double(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}

template <typename T>
constexpr ScalarType kDtype = std::is_same_v<T, double> ? ScalarType::kFloat64 : ScalarType::kFloat32;

// The kernels' forward and backward on problem p in type T (float or double).
struct KernelRun {
  Vec out, final_states;
  Grads grads;
};

template <typename T>
KernelRun run_kernels(const Problem& p, const hamburg_mamba::cpu::ParallelFor& parallel_for) {
  const int64_t H = p.H();
  auto x = as<T>(p.x), weight = as<T>(p.weight), bias = as<T>(p.bias), init = as<T>(p.init);
  auto dout = as<T>(p.dout), dfinal = as<T>(p.dfinal);
  std::vector<T> out(p.B * p.D * p.L), fin(p.B * p.D * H), dx(out.size()), dw(p.D * p.W), db(p.D), dinit(p.B * p.D * H);
  CausalConv1dBwdParams q;
  q.dtype = kDtype<T>;
  q.batch = p.B, q.dim = p.D, q.seqlen = p.L, q.width = p.W, q.silu = p.silu;
  q.x_batch_stride = q.out_batch_stride = q.dout_batch_stride = q.dx_batch_stride = p.D * p.L;
  q.x_c_stride = q.out_c_stride = q.dout_c_stride = q.dx_c_stride = p.L;
  q.x = x.data(), q.weight = weight.data(), q.bias = bias.data(), q.out = out.data();
  q.seq_idx = p.has_seq ? p.seq.data() : nullptr;
  q.initial_states = p.has_init ? init.data() : nullptr;
  q.final_states = p.has_seq ? nullptr : fin.data();
  hamburg_mamba::cpu::causal_conv1d_fwd(q, parallel_for);
  q.dout = dout.data(), q.dfinal_states = p.has_seq ? nullptr : dfinal.data();
  q.dx = dx.data(), q.dweight = dw.data(), q.dbias = db.data();
  q.dinitial_states = p.has_init ? dinit.data() : nullptr;
  hamburg_mamba::cpu::causal_conv1d_bwd(q, parallel_for);
  return {to_double(out), to_double(fin), {to_double(dx), to_double(dw), to_double(db), to_double(dinit)}};
}

template <typename T>
void check_against_reference(const Problem& p, double tol, double tol_grad) {
  const KernelRun run = run_kernels<T>(p, make_openmp_for());
  Vec want(p.B * p.D * p.L), want_final(p.B * p.D * p.H());
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t c = 0; c < p.D; ++c) {
      for (int64_t t = 0; t < p.L; ++t) want[(b * p.D + c) * p.L + t] = double(T(p.out(b, c, t)));
      for (int64_t k = 0; k < p.H(); ++k) want_final[(b * p.D + c) * p.H() + k] = T(p.x_ext(b, c, p.L - p.H() + k));
    }
  EXPECT_LT(rel_l2(run.out, want), tol);
  if (!p.has_seq) {
    EXPECT_EQ(run.final_states, want_final);
  }
  const Grads g = reference_grads(p);
  EXPECT_LT(rel_l2(run.grads.dx, g.dx), tol_grad) << "dx";
  EXPECT_LT(rel_l2(run.grads.dweight, g.dweight), tol_grad) << "dweight";
  EXPECT_LT(rel_l2(run.grads.dbias, g.dbias), tol_grad) << "dbias";
  if (p.has_init) {
    EXPECT_LT(rel_l2(run.grads.dinit, g.dinit), tol_grad) << "dinitial_states";
  }
}

TEST(Reference, BackwardMatchesFiniteDifferences) {
  for (const bool has_seq : {false, true}) {
    Problem p = make_problem(2, 2, 12, 4, true, !has_seq, has_seq, 7);
    const Grads g = reference_grads(p);
    const double eps = 1e-6;
    auto fd = [&](Vec& v, int64_t i) {
      const double keep = v[i];
      v[i] = keep + eps;
      const double up = p.loss();
      v[i] = keep - eps;
      const double down = p.loss();
      v[i] = keep;
      return (up - down) / (2 * eps);
    };
    for (int64_t i = 0; i < int64_t(p.x.size()); ++i) EXPECT_NEAR(fd(p.x, i), g.dx[i], 1e-7) << "dx " << i;
    for (int64_t i = 0; i < int64_t(p.weight.size()); ++i) EXPECT_NEAR(fd(p.weight, i), g.dweight[i], 1e-7);
    for (int64_t i = 0; i < int64_t(p.bias.size()); ++i) EXPECT_NEAR(fd(p.bias, i), g.dbias[i], 1e-7);
    if (!has_seq) {
      for (int64_t i = 0; i < int64_t(p.init.size()); ++i) EXPECT_NEAR(fd(p.init, i), g.dinit[i], 1e-7);
    }
  }
}

class IsaConv : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(IsaConv, MatchesReference) {
  const auto [W, L] = GetParam();
  for (const bool silu : {false, true}) {
    check_against_reference<double>(make_problem(2, 3, L, W, silu, true, false), kTolFloat64, kTolFloat64);
    check_against_reference<float>(make_problem(2, 3, L, W, silu, true, false), kTolFloat32, kTolFloat32Grad);
  }
  if (L > 5) {
    check_against_reference<float>(make_problem(2, 3, L, W, true, false, true), kTolFloat32, kTolFloat32Grad);
  }
}

// Widths 2..4 (causal-conv1d's) and 8 (the widest); lengths below W - 1, around the 256-step tile, and longer.
INSTANTIATE_TEST_SUITE_P(WidthsAndLengths, IsaConv,
                         ::testing::Combine(::testing::Values(2, 3, 4, 8), ::testing::Values(1, 2, 40, 256, 257, 600)));

TEST(IsaConvThreads, ResultsDoNotDependOnTheThreadCount) {
  const Problem p = make_problem(3, 64, 700, 4, true, true, false);
  const KernelRun one = run_kernels<float>(p, serial_for);
  const KernelRun many = run_kernels<float>(p, make_openmp_for(2));
  EXPECT_EQ(one.out, many.out);
  EXPECT_EQ(one.grads.dx, many.grads.dx);
  EXPECT_EQ(one.grads.dweight, many.grads.dweight);
}

TEST(IsaConvUpdate, StepsEqualTheLastStepsOfTheForward) {
  // Both state layouts: a shifting window of S = W + 2 inputs, and a circular buffer of S slots.
  const int64_t B = 2, D = 5, W = 4, S = W + 2, history = 9, n = 3;
  const Problem p = make_problem(B, D, history + n, W, true, false, false, 3);
  for (const bool circular : {false, true}) {
    std::vector<float> state(B * D * S), x(B * D * n), out(B * D * n);
    std::vector<int32_t> lens = {11, 4};
    auto weight = as<float>(p.weight), bias = as<float>(p.bias);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < D; ++c) {
        for (int64_t j = 1; j <= S; ++j) {
          const int64_t slot = circular ? ((lens[b] - j) % S + S) % S : S - j;
          state[(b * D + c) * S + slot] = float(p.x_ext(b, c, history - j));
        }
        for (int64_t i = 0; i < n; ++i) x[(b * D + c) * n + i] = float(p.x_ext(b, c, history + i));
      }
    CausalConv1dUpdateParams q;
    q.dtype = ScalarType::kFloat32;
    q.batch = B, q.dim = D, q.seqlen = n, q.width = W, q.state_len = S, q.cache_batch = B, q.silu = true;
    q.state_batch_stride = D * S, q.state_c_stride = S;
    q.x = x.data(), q.conv_state = state.data(), q.weight = weight.data(), q.bias = bias.data(), q.out = out.data();
    q.cache_seqlens = circular ? lens.data() : nullptr;
    hamburg_mamba::cpu::causal_conv1d_update(q, serial_for);
    Vec got = to_double(out), want(out.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < D; ++c)
        for (int64_t i = 0; i < n; ++i) want[(b * D + c) * n + i] = p.out(b, c, history + i);
    EXPECT_LT(rel_l2(got, want), kTolFloat32) << (circular ? "circular" : "shifting");
    // The state now holds the last S inputs, at their slots.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < D; ++c)
        for (int64_t j = 1; j <= S; ++j) {
          const int64_t slot = circular ? ((lens[b] + n - j) % S + S) % S : S - j;
          EXPECT_EQ(state[(b * D + c) * S + slot], float(p.x_ext(b, c, history + n - j)));
        }
  }
}

}  // namespace
