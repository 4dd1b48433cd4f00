// Unit tests of the torch-free CPU selective-scan kernels (csrc/selective_scan/cpu), of the state update
// (csrc/state_update/cpu) and of the fused block step (csrc/block_step/cpu).
//
// Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C), Dg = D / G.
//
// The kernels are compared with an independent scalar float64 reference written here from the math of
// hamburg_mamba/ops/reference.py (sequential loops, one channel at a time), whose backward is itself checked
// against central finite differences. Suites whose names start with "Isa" exercise the kernels; ctest runs
// them once more under each capped ISA level (HAMBURG_MAMBA_CPU_ISA, see CMakeLists.txt), because the level is
// picked once per process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "block_step/cpu/block_step_cpu.h"
#include "common/cpu/isa.h"
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
using hamburg_mamba::cpu::ParallelFor;
using hamburg_mamba::cpu::serial_for;
using Vec = std::vector<double>;

// torch.nn.functional.softplus's default threshold, as in the reference.
constexpr double kSoftplusThreshold = 20.0;

// Tolerances in relative L2 norm against the float64 reference: the project's targets for float32; float16 and
// bfloat16 errors come from rounding the stored results (unit roundoff 2^-11 and 2^-8). Measured with the
// AVX-512 kernels, at most: 1e-15 (float64), 2.5e-7 (float32), 2.3e-4 (float16), 1.7e-3 (bfloat16).
constexpr double kTolFloat64 = 1e-12;
constexpr double kTolFloat32Out = 1e-5;
constexpr double kTolFloat32Grad = 1e-4;
constexpr double kTolFloat16 = 1e-3;
constexpr double kTolBFloat16 = 8e-3;

// ---------------------------------------------------------------------------------------------------------
// A problem: every input in float64, already rounded to what the kernel will see.

struct Shape {
  int64_t B, D, L, N, G;
};

struct Options {
  bool softplus = false, has_D = false, has_z = false, has_bias = false, has_init = false, has_scale = false;
  bool has_dlast = true;  // backward: a gradient arrives through the last state too

  static Options from_mask(unsigned mask) {
    Options o;
    o.softplus = mask & 1;
    o.has_D = mask & 2;
    o.has_z = mask & 4;
    o.has_bias = mask & 8;
    o.has_init = mask & 16;
    o.has_scale = mask & 32;
    return o;
  }
  static Options all() { return from_mask(63); }
  std::string str() const {
    std::string s;
    const std::pair<bool, const char*> flags[] = {{softplus, "softplus"}, {has_D, "D"},       {has_z, "z"},
                                                  {has_bias, "bias"},     {has_init, "init"}, {has_scale, "dt_scale"},
                                                  {has_dlast, "dlast"}};
    for (auto [on, name] : flags)
      if (on) s += std::string(s.empty() ? "" : ",") + name;
    return "{" + s + "}";
  }
};

struct Problem {
  Shape s;
  Options o;
  Vec u, delta, z, dout;  // (B, D, L)
  Vec Bm, Cm;             // (B, G, N, L)
  Vec A;                  // (D, N)
  Vec Dv, bias;           // (D,)
  Vec init, dlast;        // (B, D, N)
  Vec scale;              // (B, L)

  int64_t bdl(int64_t b, int64_t d, int64_t t) const { return (b * s.D + d) * s.L + t; }
  int64_t bgnl(int64_t b, int64_t g, int64_t n, int64_t t) const { return ((b * s.G + g) * s.N + n) * s.L + t; }
  int64_t bdn(int64_t b, int64_t d, int64_t n) const { return (b * s.D + d) * s.N + n; }
  int64_t group_of(int64_t d) const { return d / (s.D / s.G); }
};

// ---------------------------------------------------------------------------------------------------------
// Storage types. Half and bfloat16 tensors are raw uint16 buffers, as torch hands them to the kernels.

uint16_t bf16_bits(float x) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint16_t half_bits(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof bits);
  return bits;
}
float half_value(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, sizeof h);
  return static_cast<float>(h);
}

ScalarType compute_of(ScalarType t) { return t == ScalarType::kFloat64 ? ScalarType::kFloat64 : ScalarType::kFloat32; }
size_t size_of(ScalarType t) {
  switch (t) {
    case ScalarType::kFloat64: return 8;
    case ScalarType::kFloat32: return 4;
    default: return 2;
  }
}
const char* name_of(ScalarType t) {
  switch (t) {
    case ScalarType::kFloat64: return "float64";
    case ScalarType::kFloat32: return "float32";
    case ScalarType::kFloat16: return "float16";
    default: return "bfloat16";
  }
}

double round_to(double x, ScalarType t) {
  switch (t) {
    case ScalarType::kFloat64: return x;
    case ScalarType::kFloat32: return static_cast<float>(x);
    case ScalarType::kFloat16: return half_value(half_bits(static_cast<float>(x)));
    default: return bf16_value(bf16_bits(static_cast<float>(x)));
  }
}

void round_all(Vec& v, ScalarType t) {
  for (double& x : v) x = round_to(x, t);
}

// The problem as the kernel sees it in dtype t: inputs in t, parameters in the compute type.
Problem rounded(Problem p, ScalarType t) {
  for (Vec* v : {&p.u, &p.delta, &p.z, &p.dout, &p.Bm, &p.Cm}) round_all(*v, t);
  for (Vec* v : {&p.A, &p.Dv, &p.bias, &p.init, &p.dlast, &p.scale}) round_all(*v, compute_of(t));
  return p;
}

// Random inputs in the ranges of a trained Mamba block. The values are exact in float32, so one float64
// reference serves the float64 and the float32 kernels.
Problem make_problem(Shape s, Options o, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto fill = [&](int64_t n, double lo, double hi) {
    Vec v(static_cast<size_t>(n));
    for (double& x : v) x = uniform(lo, hi);
    return v;
  };
  Problem p;
  p.s = s;
  p.o = o;
  const int64_t bdl = s.B * s.D * s.L, bgnl = s.B * s.G * s.N * s.L;
  p.u = fill(bdl, -1, 1);
  // Step sizes of a trained Mamba: softplus(delta + bias) mostly in (0.01, 2).
  p.delta = o.softplus ? fill(bdl, -4, 1) : fill(bdl, 0.01, 0.5);
  p.z = o.has_z ? fill(bdl, -3, 3) : Vec{};
  p.dout = fill(bdl, -1, 1);
  p.Bm = fill(bgnl, -1, 1);
  p.Cm = fill(bgnl, -1, 1);
  p.A.resize(static_cast<size_t>(s.D * s.N));
  for (double& a : p.A) a = -std::exp(uniform(-2, 1.5));
  p.Dv = o.has_D ? fill(s.D, -1, 1) : Vec{};
  p.bias = o.has_bias ? (o.softplus ? fill(s.D, -1, 0.5) : fill(s.D, 0, 0.1)) : Vec{};
  p.init = o.has_init ? fill(s.B * s.D * s.N, -1, 1) : Vec{};
  p.dlast = o.has_dlast ? fill(s.B * s.D * s.N, -1, 1) : Vec{};
  if (o.has_scale) {
    p.scale = fill(s.B * s.L, 0, 2);
    for (double& x : p.scale)
      if (uniform(0, 1) < 0.2) x = 0;  // padded steps
  }
  return rounded(p, ScalarType::kFloat32);
}

// A tensor in kernel storage: `rows` rows of `cols` elements, row pitch `pitch` >= cols (padding never read).
struct Buffer {
  ScalarType type = ScalarType::kFloat32;
  int64_t rows = 0, cols = 0, pitch = 0;
  std::vector<unsigned char> bytes;

  Buffer() = default;
  Buffer(ScalarType t, int64_t n_rows, int64_t n_cols, int64_t row_pitch)
      : type(t), rows(n_rows), cols(n_cols), pitch(row_pitch) {
    // Padding filled with a NaN pattern (0xff bytes), so a kernel reading it would show.
    bytes.assign(static_cast<size_t>(rows * pitch) * size_of(t), 0xff);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) set(r * pitch + c, 0.0);
  }
  static Buffer encode(const Vec& v, ScalarType t, int64_t n_cols, int64_t pad = 0) {
    const int64_t n_rows = v.empty() ? 0 : static_cast<int64_t>(v.size()) / n_cols;
    Buffer b(t, n_rows, n_cols, n_cols + pad);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t c = 0; c < n_cols; ++c) b.set(r * b.pitch + c, v[static_cast<size_t>(r * n_cols + c)]);
    return b;
  }
  static Buffer flat(const Vec& v, ScalarType t) { return encode(v, t, std::max<int64_t>(1, v.size())); }
  static Buffer zeros(int64_t n, ScalarType t) { return Buffer(t, 1, n, n); }

  void set(int64_t i, double x) {
    unsigned char* at = bytes.data() + static_cast<size_t>(i) * size_of(type);
    if (type == ScalarType::kFloat64) {
      std::memcpy(at, &x, 8);
    } else if (type == ScalarType::kFloat32) {
      const float f = static_cast<float>(x);
      std::memcpy(at, &f, 4);
    } else {
      const uint16_t h =
          type == ScalarType::kFloat16 ? half_bits(static_cast<float>(x)) : bf16_bits(static_cast<float>(x));
      std::memcpy(at, &h, 2);
    }
  }
  double get(int64_t i) const {
    const unsigned char* at = bytes.data() + static_cast<size_t>(i) * size_of(type);
    if (type == ScalarType::kFloat64) {
      double x;
      std::memcpy(&x, at, 8);
      return x;
    }
    if (type == ScalarType::kFloat32) {
      float f;
      std::memcpy(&f, at, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, at, 2);
    return type == ScalarType::kFloat16 ? half_value(h) : bf16_value(h);
  }
  Vec decode() const {
    Vec v(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] = get(r * pitch + c);
    return v;
  }
  // Whether the row padding still holds its 0xff pattern: nothing wrote past the end of a row.
  bool padding_intact() const {
    for (int64_t r = 0; r < rows; ++r) {
      const size_t begin = static_cast<size_t>(r * pitch + cols) * size_of(type);
      const size_t end = static_cast<size_t>((r + 1) * pitch) * size_of(type);
      for (size_t i = begin; i < end; ++i)
        if (bytes[i] != 0xff) return false;
    }
    return true;
  }
  // The elements only (row padding excluded), for bitwise comparisons.
  std::vector<unsigned char> element_bytes() const {
    std::vector<unsigned char> out;
    const size_t row_bytes = static_cast<size_t>(cols) * size_of(type);
    for (int64_t r = 0; r < rows; ++r) {
      const unsigned char* row = bytes.data() + static_cast<size_t>(r * pitch) * size_of(type);
      out.insert(out.end(), row, row + row_bytes);
    }
    return out;
  }
  void* data() { return bytes.empty() ? nullptr : bytes.data(); }
  const void* data() const { return bytes.empty() ? nullptr : bytes.data(); }
};

// ---------------------------------------------------------------------------------------------------------
// The float64 reference, sequential, straight from the math.

double softplus(double x) { return x > kSoftplusThreshold ? x : std::log1p(std::exp(x)); }
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// x_t = delta_t + bias; s_t = softplus?(x_t) * dt_scale_t.
double pre_step(const Problem& p, int64_t b, int64_t d, int64_t t) {
  return p.delta[p.bdl(b, d, t)] + (p.o.has_bias ? p.bias[d] : 0.0);
}
double step_of(const Problem& p, int64_t b, int64_t d, int64_t t) {
  const double x = pre_step(p, b, d, t);
  const double s = p.o.softplus ? softplus(x) : x;
  return p.o.has_scale ? s * p.scale[b * p.s.L + t] : s;
}

struct RefForward {
  Vec out, last;  // (B, D, L), (B, D, N)
};

// hs receives the states h_0..h_L of channel (b, d), (L + 1, N); ys the y_t before D and gating.
void ref_channel(const Problem& p, int64_t b, int64_t d, Vec& hs, Vec& ys) {
  const int64_t L = p.s.L, N = p.s.N, g = p.group_of(d);
  hs.assign(static_cast<size_t>((L + 1) * N), 0.0);
  ys.assign(static_cast<size_t>(L), 0.0);
  if (p.o.has_init)
    for (int64_t n = 0; n < N; ++n) hs[n] = p.init[p.bdn(b, d, n)];
  for (int64_t t = 0; t < L; ++t) {
    const double s = step_of(p, b, d, t), u = p.u[p.bdl(b, d, t)];
    double y = 0;
    for (int64_t n = 0; n < N; ++n) {
      const double h = std::exp(s * p.A[d * N + n]) * hs[t * N + n] + s * p.Bm[p.bgnl(b, g, n, t)] * u;
      hs[(t + 1) * N + n] = h;
      y += p.Cm[p.bgnl(b, g, n, t)] * h;
    }
    ys[t] = y;
  }
}

RefForward ref_forward(const Problem& p) {
  const int64_t B = p.s.B, D = p.s.D, L = p.s.L, N = p.s.N;
  RefForward r;
  r.out.assign(static_cast<size_t>(B * D * L), 0.0);
  r.last.assign(static_cast<size_t>(B * D * N), 0.0);
  Vec hs, ys;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      ref_channel(p, b, d, hs, ys);
      for (int64_t t = 0; t < L; ++t) {
        const double u = p.u[p.bdl(b, d, t)];
        double y = ys[t] + (p.o.has_D ? p.Dv[d] * u : 0.0);
        if (p.o.has_z) {
          const double z = p.z[p.bdl(b, d, t)];
          y *= z * sigmoid(z);
        }
        r.out[p.bdl(b, d, t)] = y;
      }
      for (int64_t n = 0; n < N; ++n) r.last[p.bdn(b, d, n)] = hs[L * N + n];
    }
  }
  return r;
}

struct Grads {
  Vec du, ddelta, dz, dA, dB, dC, dD, dbias, dinit;
};

// Reverse-mode derivative of loss = <dout, out> + <dlast, last_state>, derived by hand:
//   out_t = y_t silu(z_t), y_t = <C_t, h_t> + D u_t, h_t = a_t h_{t-1} + s_t B_t u_t, a_t = exp(s_t A).
// With G_t the total gradient of h_t (G_L starts at dlast): G_t = C_t dy_t + a_{t+1} G_{t+1}, and
//   dz_t = dout_t y_t silu'(z_t),  dy_t = dout_t silu(z_t),  dC_t = dy_t h_t,  dB_t = G_t s_t u_t,
//   dA += G_t a_t s_t h_{t-1},  ds_t = <G_t, A a_t h_{t-1} + B_t u_t>,  du_t = D dy_t + s_t <G_t, B_t>,
//   ddelta_t = ds_t dt_scale_t softplus'(x_t),  dh_0 = a_1 G_1.
Grads ref_backward(const Problem& p) {
  const int64_t B = p.s.B, D = p.s.D, L = p.s.L, N = p.s.N, G = p.s.G;
  Grads r;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  r.du.assign(sz(B * D * L), 0.0);
  r.ddelta.assign(sz(B * D * L), 0.0);
  r.dz.assign(p.o.has_z ? sz(B * D * L) : 0, 0.0);
  r.dA.assign(sz(D * N), 0.0);
  r.dB.assign(sz(B * G * N * L), 0.0);
  r.dC.assign(sz(B * G * N * L), 0.0);
  r.dD.assign(p.o.has_D ? sz(D) : 0, 0.0);
  r.dbias.assign(p.o.has_bias ? sz(D) : 0, 0.0);
  r.dinit.assign(p.o.has_init ? sz(B * D * N) : 0, 0.0);
  Vec hs, ys, Gh(sz(N));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = p.group_of(d);
      ref_channel(p, b, d, hs, ys);
      for (int64_t n = 0; n < N; ++n) Gh[n] = p.o.has_dlast ? p.dlast[p.bdn(b, d, n)] : 0.0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t i = p.bdl(b, d, t);
        const double u = p.u[i], s = step_of(p, b, d, t), x = pre_step(p, b, d, t);
        double dy = p.dout[i];
        if (p.o.has_z) {
          const double z = p.z[i], sg = sigmoid(z);
          const double y = ys[t] + (p.o.has_D ? p.Dv[d] * u : 0.0);
          r.dz[i] = dy * y * sg * (1 + z * (1 - sg));
          dy *= z * sg;
        }
        double du = 0, ds = 0;
        if (p.o.has_D) {
          r.dD[d] += dy * u;
          du += p.Dv[d] * dy;
        }
        for (int64_t n = 0; n < N; ++n) {
          const int64_t j = p.bgnl(b, g, n, t);
          const double An = p.A[d * N + n], a = std::exp(s * An), hprev = hs[t * N + n];
          r.dC[j] += dy * hs[(t + 1) * N + n];
          Gh[n] += dy * p.Cm[j];
          r.dB[j] += Gh[n] * s * u;
          r.dA[d * N + n] += Gh[n] * a * s * hprev;
          ds += Gh[n] * (An * a * hprev + p.Bm[j] * u);
          du += s * Gh[n] * p.Bm[j];
          Gh[n] *= a;
        }
        double dx = p.o.has_scale ? ds * p.scale[b * L + t] : ds;
        if (p.o.softplus && x <= kSoftplusThreshold) dx *= sigmoid(x);
        r.du[i] = du;
        r.ddelta[i] = dx;
        if (p.o.has_bias) r.dbias[d] += dx;
      }
      if (p.o.has_init)
        for (int64_t n = 0; n < N; ++n) r.dinit[p.bdn(b, d, n)] = Gh[n];
    }
  }
  return r;
}

double ref_loss(const Problem& p) {
  const RefForward f = ref_forward(p);
  double loss = 0;
  for (size_t i = 0; i < f.out.size(); ++i) loss += p.dout[i] * f.out[i];
  if (p.o.has_dlast)
    for (size_t i = 0; i < f.last.size(); ++i) loss += p.dlast[i] * f.last[i];
  return loss;
}

// ---------------------------------------------------------------------------------------------------------
// Running the kernels.

struct KernelRun {
  Buffer out, last, checkpoints;
  Buffer du, ddelta, dz, dA, dB, dC, dD, dbias, dinit;  // after a backward
};

struct RunConfig {
  ScalarType type = ScalarType::kFloat32;
  bool backward = false;
  int64_t pad = 0;  // extra elements per row of u, delta, z, out, dout, B and C (strided inputs)
  int64_t pad_C = 0;  // further extra elements per row of C alone, so that B's and C's strides differ
};

KernelRun run_scan(const Problem& p, const RunConfig& cfg, const ParallelFor& parallel_for) {
  const ScalarType t = cfg.type, c = compute_of(t);
  const int64_t B = p.s.B, D = p.s.D, L = p.s.L, N = p.s.N, G = p.s.G, pitch = L + cfg.pad;
  const Buffer u = Buffer::encode(p.u, t, L, cfg.pad), delta = Buffer::encode(p.delta, t, L, cfg.pad);
  const Buffer z = Buffer::encode(p.z, t, L, cfg.pad), dout = Buffer::encode(p.dout, t, L, cfg.pad);
  const int64_t pitch_C = pitch + cfg.pad_C;
  const Buffer Bm = Buffer::encode(p.Bm, t, L, cfg.pad), Cm = Buffer::encode(p.Cm, t, L, cfg.pad + cfg.pad_C);
  const Buffer A = Buffer::flat(p.A, c), Dv = Buffer::flat(p.Dv, c), bias = Buffer::flat(p.bias, c);
  const Buffer init = Buffer::flat(p.init, c), scale = Buffer::flat(p.scale, c), dlast = Buffer::flat(p.dlast, c);

  KernelRun r;
  r.out = Buffer(t, B * D, L, pitch);
  r.last = Buffer::zeros(B * D * N, c);
  r.checkpoints = Buffer::zeros(B * D * hamburg_mamba::num_checkpoints(L) * N, c);

  SelectiveScanParams fp;
  fp.dtype = t;
  fp.batch = B;
  fp.dim = D;
  fp.seqlen = L;
  fp.dstate = N;
  fp.n_groups = G;
  fp.delta_softplus = p.o.softplus;
  fp.u_batch_stride = fp.delta_batch_stride = fp.z_batch_stride = fp.out_batch_stride = D * pitch;
  fp.u_d_stride = fp.delta_d_stride = fp.z_d_stride = fp.out_d_stride = pitch;
  fp.B_batch_stride = G * N * pitch;
  fp.B_group_stride = N * pitch;
  fp.B_n_stride = pitch;
  fp.C_batch_stride = G * N * pitch_C;
  fp.C_group_stride = N * pitch_C;
  fp.C_n_stride = pitch_C;
  fp.u = u.data();
  fp.delta = delta.data();
  fp.Bmat = Bm.data();
  fp.Cmat = Cm.data();
  fp.z = p.o.has_z ? z.data() : nullptr;
  fp.A = A.data();
  fp.Dvec = p.o.has_D ? Dv.data() : nullptr;
  fp.delta_bias = p.o.has_bias ? bias.data() : nullptr;
  fp.initial_state = p.o.has_init ? init.data() : nullptr;
  fp.dt_scale = p.o.has_scale ? scale.data() : nullptr;
  fp.out = r.out.data();
  fp.last_state = r.last.data();
  fp.checkpoints = cfg.backward ? r.checkpoints.data() : nullptr;
  hamburg_mamba::cpu::selective_scan_fwd(fp, parallel_for);
  if (!cfg.backward) return r;

  SelectiveScanBwdParams bp;
  static_cast<SelectiveScanParams&>(bp) = fp;
  bp.dout_batch_stride = D * pitch;
  bp.dout_d_stride = pitch;
  bp.dout = dout.data();
  bp.dlast_state = p.o.has_dlast ? dlast.data() : nullptr;
  // Outputs the header documents as possibly accumulated into start at zero, like the torch binding's.
  r.du = Buffer::zeros(B * D * L, t);
  r.ddelta = Buffer::zeros(B * D * L, t);
  r.dz = Buffer::zeros(p.o.has_z ? B * D * L : 0, t);
  r.dA = Buffer::zeros(D * N, c);
  r.dB = Buffer::zeros(B * G * N * L, c);
  r.dC = Buffer::zeros(B * G * N * L, c);
  r.dD = Buffer::zeros(p.o.has_D ? D : 0, c);
  r.dbias = Buffer::zeros(p.o.has_bias ? D : 0, c);
  r.dinit = Buffer::zeros(p.o.has_init ? B * D * N : 0, c);
  bp.du = r.du.data();
  bp.ddelta = r.ddelta.data();
  bp.dz = r.dz.data();
  bp.dA = r.dA.data();
  bp.dB = r.dB.data();
  bp.dC = r.dC.data();
  bp.dD = r.dD.data();
  bp.ddelta_bias = r.dbias.data();
  bp.dinitial_state = r.dinit.data();
  hamburg_mamba::cpu::selective_scan_bwd(bp, parallel_for);
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Comparisons.

double rel_l2(const Vec& got, const Vec& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  if (std::isnan(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Named {
  const char* name;
  const Buffer& got;
  const Vec& want;
};

void expect_close(std::initializer_list<Named> items, double tol, const std::string& context) {
  for (const Named& it : items) {
    const Vec got = it.got.decode();
    ASSERT_EQ(got.size(), it.want.size()) << it.name << " " << context;
    EXPECT_LE(rel_l2(got, it.want), tol) << it.name << " " << context;
  }
}

// p must be exact in t (see rounded); ref is its reference.
void check_forward(const Problem& p, const RefForward& ref, ScalarType t, double tol, const ParallelFor& pf,
                   const std::string& context) {
  const KernelRun k = run_scan(p, {t, false, 0}, pf);
  expect_close({{"out", k.out, ref.out}, {"last_state", k.last, ref.last}}, tol,
               std::string(name_of(t)) + " " + context);
}

void check_backward(const Problem& p, const RefForward& ref, const Grads& g, ScalarType t, double tol_out,
                    double tol_grad, const ParallelFor& pf, const std::string& context) {
  const KernelRun k = run_scan(p, {t, true, 0}, pf);
  const std::string ctx = std::string(name_of(t)) + " " + context;
  expect_close({{"out", k.out, ref.out}, {"last_state", k.last, ref.last}}, tol_out, ctx);
  expect_close({{"du", k.du, g.du},
                {"ddelta", k.ddelta, g.ddelta},
                {"dz", k.dz, g.dz},
                {"dA", k.dA, g.dA},
                {"dB", k.dB, g.dB},
                {"dC", k.dC, g.dC},
                {"dD", k.dD, g.dD},
                {"ddelta_bias", k.dbias, g.dbias},
                {"dinitial_state", k.dinit, g.dinit}},
               tol_grad, ctx);
}

void expect_backward_matches(const Problem& raw, ScalarType t, double tol_out, double tol_grad, const ParallelFor& pf,
                             const std::string& context) {
  const Problem p = rounded(raw, t);
  check_backward(p, ref_forward(p), ref_backward(p), t, tol_out, tol_grad, pf, context);
}

// The float64 and the float32 kernels against one reference (make_problem's inputs are float32-exact).
void expect_forward_f64_f32(const Problem& p, const ParallelFor& pf, const std::string& context) {
  const RefForward ref = ref_forward(p);
  check_forward(p, ref, ScalarType::kFloat64, kTolFloat64, pf, context);
  check_forward(p, ref, ScalarType::kFloat32, kTolFloat32Out, pf, context);
}

void expect_backward_f64_f32(const Problem& p, const ParallelFor& pf, const std::string& context) {
  const RefForward ref = ref_forward(p);
  const Grads g = ref_backward(p);
  check_backward(p, ref, g, ScalarType::kFloat64, kTolFloat64, kTolFloat64, pf, context);
  check_backward(p, ref, g, ScalarType::kFloat32, kTolFloat32Out, kTolFloat32Grad, pf, context);
}

std::string describe(const Shape& s, const Options& o) {
  return "B=" + std::to_string(s.B) + " D=" + std::to_string(s.D) + " L=" + std::to_string(s.L) +
         " N=" + std::to_string(s.N) + " G=" + std::to_string(s.G) + " " + o.str();
}

const ParallelFor& two_threads() {
  static const ParallelFor pf = make_openmp_for(2);
  return pf;
}

// ---------------------------------------------------------------------------------------------------------
// The reference's backward against central finite differences of its forward (so that comparing the
// kernels' gradients with it means something).

class ReferenceGradients : public ::testing::TestWithParam<unsigned> {};

TEST_P(ReferenceGradients, MatchFiniteDifferences) {
  Options o = Options::from_mask(GetParam());
  Problem p = make_problem({2, 6, 9, 3, 2}, o, 7 + GetParam());
  // One channel's pre-activation above the softplus threshold, to cover the identity branch.
  if (o.softplus && o.has_bias) p.bias[4] = 25.0;
  const Grads g = ref_backward(p);
  constexpr double kEps = 1e-6;
  auto check = [&](const char* name, Vec& x, const Vec& grad) {
    ASSERT_EQ(grad.size(), x.size()) << name;
    for (size_t i = 0; i < x.size(); ++i) {
      const double keep = x[i];
      x[i] = keep + kEps;
      const double up = ref_loss(p);
      x[i] = keep - kEps;
      const double down = ref_loss(p);
      x[i] = keep;
      const double fd = (up - down) / (2 * kEps);
      EXPECT_NEAR(grad[i], fd, 1e-6 * (1 + std::abs(fd))) << name << "[" << i << "] " << o.str();
    }
  };
  check("du", p.u, g.du);
  check("ddelta", p.delta, g.ddelta);
  check("dA", p.A, g.dA);
  check("dB", p.Bm, g.dB);
  check("dC", p.Cm, g.dC);
  check("dz", p.z, g.dz);
  check("dD", p.Dv, g.dD);
  check("ddelta_bias", p.bias, g.dbias);
  check("dinitial_state", p.init, g.dinit);
}

INSTANTIATE_TEST_SUITE_P(Reference, ReferenceGradients, ::testing::Values(0u, 1u, 63u, 62u, 0b101010u),
                         [](const auto& info) { return "mask" + std::to_string(info.param); });

// ---------------------------------------------------------------------------------------------------------
// The dispatcher picks the best level this CPU has, capped by HAMBURG_MAMBA_CPU_ISA.

TEST(Isa, ReportsTheExpectedLevel) {
  std::string best = "baseline";
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = "avx2";
  if (best == "avx2" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    best = "avx512";
#endif
  std::string expected = best;
  if (const char* cap = std::getenv("HAMBURG_MAMBA_CPU_ISA")) {
    if (std::string(cap) == "baseline") expected = "baseline";
    if (std::string(cap) == "avx2" && best == "avx512") expected = "avx2";
  }
  EXPECT_EQ(hamburg_mamba::cpu::cpu_isa(), expected);
  std::printf("[          ] kernels at ISA level %s\n", hamburg_mamba::cpu::cpu_isa());
}

// ---------------------------------------------------------------------------------------------------------
// Forward over odd sizes: every (L, N) of the grid in float64 and float32, twice: D = 19 channels in one group
// (a full 16-lane block and a 3-channel tail) and D = 38 in two groups of 19; the optional inputs rotate
// with the grid point, the second configuration taking the complement. One test case per L.

constexpr int64_t kGridSeqlens[] = {1, 2, 7, 63, 64, 65, 255, 300};
constexpr int64_t kGridStateSizes[] = {1, 3, 16, 17, 64, 256};

unsigned rotating_mask(int64_t L, int64_t N) { return static_cast<unsigned>((L * 7 + N * 13) % 64); }

std::string seqlen_name(const ::testing::TestParamInfo<int64_t>& info) { return "L" + std::to_string(info.param); }

class IsaForwardGrid : public ::testing::TestWithParam<int64_t> {};

TEST_P(IsaForwardGrid, MatchesReference) {
  const int64_t L = GetParam();
  for (const int64_t N : kGridStateSizes) {
    const unsigned mask = rotating_mask(L, N);
    const std::pair<Shape, Options> configs[] = {{{2, 19, L, N, 1}, Options::from_mask(mask)},
                                                 {{1, 38, L, N, 2}, Options::from_mask(~mask & 63u)}};
    for (const auto& [shape, opts] : configs) {
      const Problem p = make_problem(shape, opts, 1000 + L * 1000 + N);
      expect_forward_f64_f32(p, two_threads(), describe(shape, opts));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaForwardGrid, ::testing::ValuesIn(kGridSeqlens), seqlen_name);

// Every combination of the optional inputs (64 masks, 8 per test case), with D/G = 19 (a 16-lane block and
// a tail of 3) and G = 3, and with 40 channels in one group (blocks of 16, 16 and 8).
constexpr unsigned kMasksPerCase = 8;

std::string masks_name(const ::testing::TestParamInfo<unsigned>& info) {
  return "masks" + std::to_string(info.param * kMasksPerCase) + "to" +
         std::to_string(info.param * kMasksPerCase + kMasksPerCase - 1);
}

class IsaForwardOptions : public ::testing::TestWithParam<unsigned> {};

TEST_P(IsaForwardOptions, MatchesReference) {
  for (unsigned mask = GetParam() * kMasksPerCase; mask < (GetParam() + 1) * kMasksPerCase; ++mask) {
    const Options o = Options::from_mask(mask);
    for (const Shape& s : {Shape{2, 57, 65, 17, 3}, Shape{1, 40, 70, 5, 1}}) {
      const Problem p = make_problem(s, o, 50 + mask);
      expect_forward_f64_f32(p, two_threads(), describe(s, o));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaForwardOptions, ::testing::Range(0u, 64u / kMasksPerCase), masks_name);

// A fast exp must not cost accuracy over long sequences: once with the random problem, once with Mamba's
// initialisation (A = -(n + 1), step sizes log-uniform in [1e-3, 1e-1]), whose slowly decaying channels
// accumulate the per-step error over thousands of steps.
TEST(IsaLongSequence, Float32ForwardAndBackwardBeyond4096Steps) {
  const Shape s{1, 19, 5000, 16, 1};
  const Options o = Options::all();
  const Problem p = make_problem(s, o, 4242);
  expect_backward_matches(p, ScalarType::kFloat32, kTolFloat32Out, kTolFloat32Grad, two_threads(), describe(s, o));
}

TEST(IsaLongSequence, Float32WithMambaInitialisation) {
  const Shape s{1, 19, 5000, 16, 1};
  const Options o = Options::from_mask(2 | 4 | 16 | 32);  // D, z, initial state, dt_scale
  Problem p = make_problem(s, o, 4343);
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> log_step(std::log(1e-3), std::log(1e-1));
  for (double& x : p.delta) x = std::exp(log_step(rng));
  for (int64_t d = 0; d < s.D; ++d)
    for (int64_t n = 0; n < s.N; ++n) p.A[d * s.N + n] = -static_cast<double>(n + 1);
  expect_backward_matches(p, ScalarType::kFloat32, kTolFloat32Out, kTolFloat32Grad, two_threads(),
                          describe(s, o) + " Mamba init");
}

// ---------------------------------------------------------------------------------------------------------
// Backward: every gradient against the reference, with dlast_state given.

class IsaBackwardGrid : public ::testing::TestWithParam<int64_t> {};

TEST_P(IsaBackwardGrid, MatchesReference) {
  const int64_t L = GetParam();
  for (const int64_t N : kGridStateSizes) {
    const unsigned mask = rotating_mask(L, N);
    const std::pair<Shape, Options> configs[] = {{{2, 19, L, N, 1}, Options::from_mask(mask | 1u)},
                                                 {{1, 38, L, N, 2}, Options::from_mask(~mask & 63u)}};
    for (const auto& [shape, opts] : configs) {
      const Problem p = make_problem(shape, opts, 2000 + L * 1000 + N);
      expect_backward_f64_f32(p, two_threads(), describe(shape, opts));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaBackwardGrid, ::testing::ValuesIn(kGridSeqlens), seqlen_name);

// Every combination of the optional inputs in float64, with dlast_state given for two masks out of three.
class IsaBackwardOptions : public ::testing::TestWithParam<unsigned> {};

TEST_P(IsaBackwardOptions, MatchesReference) {
  for (unsigned mask = GetParam() * kMasksPerCase; mask < (GetParam() + 1) * kMasksPerCase; ++mask) {
    Options o = Options::from_mask(mask);
    o.has_dlast = mask % 3 != 0;
    const Shape s{2, 57, 70, 17, 3};
    const Problem p = make_problem(s, o, 90 + mask);
    expect_backward_matches(p, ScalarType::kFloat64, kTolFloat64, kTolFloat64, two_threads(), describe(s, o));
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaBackwardOptions, ::testing::Range(0u, 64u / kMasksPerCase), masks_name);

// ---------------------------------------------------------------------------------------------------------
// float16 and bfloat16 storage (raw uint16 buffers), arithmetic in float32.

class IsaLowPrecision : public ::testing::TestWithParam<ScalarType> {};

TEST_P(IsaLowPrecision, ForwardAndBackwardMatchReference) {
  const ScalarType t = GetParam();
  const double tol = t == ScalarType::kFloat16 ? kTolFloat16 : kTolBFloat16;
  for (const Shape& s : {Shape{2, 38, 65, 17, 2}, Shape{1, 19, 300, 16, 1}}) {
    for (unsigned mask : {0u, 63u}) {
      const Options o = Options::from_mask(mask);
      const Problem p = make_problem(s, o, 300 + mask + s.L);
      expect_backward_matches(p, t, tol, tol, two_threads(), describe(s, o));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaLowPrecision, ::testing::Values(ScalarType::kFloat16, ScalarType::kBFloat16),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---------------------------------------------------------------------------------------------------------
// Padded steps (dt_scale = 0) are exact no-ops: the state passes through bitwise, in the forward and in the
// backward, so a right-padded batch returns the last state of its real steps and the padding adds nothing
// to any gradient.

Problem take_steps(const Problem& p, const std::vector<int64_t>& keep) {
  Problem q = p;
  q.s.L = static_cast<int64_t>(keep.size());
  auto take = [&](const Vec& v, int64_t rows) {
    if (v.empty()) return Vec{};
    Vec out;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t : keep) out.push_back(v[static_cast<size_t>(r * p.s.L + t)]);
    return out;
  };
  const int64_t bd = p.s.B * p.s.D, bgn = p.s.B * p.s.G * p.s.N;
  q.u = take(p.u, bd);
  q.delta = take(p.delta, bd);
  q.z = take(p.z, bd);
  q.dout = take(p.dout, bd);
  q.Bm = take(p.Bm, bgn);
  q.Cm = take(p.Cm, bgn);
  q.scale = take(p.scale, p.s.B);
  return q;
}

using BufferPair = std::tuple<const char*, const Buffer*, const Buffer*>;

void expect_bitwise(const Buffer& a, const Buffer& b, const std::string& what) {
  EXPECT_TRUE(a.element_bytes() == b.element_bytes()) << what << " differs bitwise";
}

class IsaPadding : public ::testing::TestWithParam<ScalarType> {};

TEST_P(IsaPadding, ZeroStepsLeaveTheStateBitwiseUnchanged) {
  const ScalarType t = GetParam();
  const Shape s{2, 38, 150, 17, 2};
  Problem p = rounded(make_problem(s, Options::all(), 77), t);
  for (double& x : p.scale)
    if (x == 0) x = 0.5;
  // Steps 20..29 are gaps, steps 110.. are right padding; the padding's dout is zero, as after a masked loss.
  std::vector<int64_t> real;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t k = 0; k < s.L; ++k)
      if ((k >= 20 && k < 30) || k >= 110) p.scale[b * s.L + k] = 0;
  for (int64_t k = 0; k < s.L; ++k)
    if (!((k >= 20 && k < 30) || k >= 110)) real.push_back(k);
  for (int64_t bd = 0; bd < s.B * s.D; ++bd)
    for (int64_t k = 110; k < s.L; ++k) p.dout[bd * s.L + k] = 0;

  // Forward with gaps and padding == forward over the real steps only.
  const KernelRun full = run_scan(p, {t, false, 0}, serial_for);
  const KernelRun kept = run_scan(take_steps(p, real), {t, false, 0}, serial_for);
  expect_bitwise(full.last, kept.last, "last_state");
  const Vec out_full = full.out.decode(), out_kept = kept.out.decode();
  for (int64_t bd = 0; bd < s.B * s.D; ++bd)
    for (size_t j = 0; j < real.size(); ++j) {
      const double a = out_full[bd * s.L + real[j]], b = out_kept[bd * real.size() + j];
      ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "out at row " << bd << " step " << real[j];
    }

  // Backward with right padding only == backward over the first 110 steps.
  Problem right = p;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t k = 20; k < 30; ++k) right.scale[b * s.L + k] = 0.5;
  std::vector<int64_t> first(110);
  for (int64_t k = 0; k < 110; ++k) first[k] = k;
  const KernelRun g_full = run_scan(right, {t, true, 0}, serial_for);
  const KernelRun g_kept = run_scan(take_steps(right, first), {t, true, 0}, serial_for);
  expect_bitwise(g_full.last, g_kept.last, "last_state");
  const BufferPair sums[] = {{"dA", &g_full.dA, &g_kept.dA},
                             {"dD", &g_full.dD, &g_kept.dD},
                             {"ddelta_bias", &g_full.dbias, &g_kept.dbias},
                             {"dinitial_state", &g_full.dinit, &g_kept.dinit}};
  for (auto [name, a, b] : sums) expect_bitwise(*a, *b, name);
  // Per-step gradients: equal on the real steps, exactly zero on the padding (du keeps D * dout = 0 too).
  const std::tuple<const char*, const Buffer*, const Buffer*, int64_t> per_step[] = {
      {"du", &g_full.du, &g_kept.du, s.B * s.D},
      {"ddelta", &g_full.ddelta, &g_kept.ddelta, s.B * s.D},
      {"dz", &g_full.dz, &g_kept.dz, s.B * s.D},
      {"dB", &g_full.dB, &g_kept.dB, s.B * s.G * s.N},
      {"dC", &g_full.dC, &g_kept.dC, s.B * s.G * s.N}};
  for (auto [name, a, b, rows] : per_step) {
    const Vec va = a->decode(), vb = b->decode();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < s.L; ++k) {
        const double x = va[r * s.L + k], y = k < 110 ? vb[r * 110 + k] : 0.0;
        ASSERT_TRUE(k < 110 ? std::memcmp(&x, &y, sizeof x) == 0 : x == 0.0)
            << name << " row " << r << " step " << k << ": " << x << " vs " << y;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaPadding, ::testing::Values(ScalarType::kFloat32, ScalarType::kFloat64),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---------------------------------------------------------------------------------------------------------
// Determinism: bitwise identical between a serial and a 2-thread run, and between two runs; strided rows give
// the same bits as contiguous ones, also with B's and C's strides different.

void expect_runs_bitwise_equal(const KernelRun& a, const KernelRun& b, const std::string& what) {
  const BufferPair all[] = {{"out", &a.out, &b.out},
                            {"last_state", &a.last, &b.last},
                            {"du", &a.du, &b.du},
                            {"ddelta", &a.ddelta, &b.ddelta},
                            {"dz", &a.dz, &b.dz},
                            {"dA", &a.dA, &b.dA},
                            {"dB", &a.dB, &b.dB},
                            {"dC", &a.dC, &b.dC},
                            {"dD", &a.dD, &b.dD},
                            {"ddelta_bias", &a.dbias, &b.dbias},
                            {"dinitial_state", &a.dinit, &b.dinit}};
  for (auto [name, x, y] : all) expect_bitwise(*x, *y, std::string(name) + " (" + what + ")");
}

class IsaDeterminism : public ::testing::TestWithParam<ScalarType> {};

TEST_P(IsaDeterminism, BitwiseAcrossThreadCountsRunsAndStrides) {
  const ScalarType t = GetParam();
  const Problem p = make_problem({3, 57, 130, 17, 3}, Options::all(), 11);
  const KernelRun serial = run_scan(p, {t, true, 0}, serial_for);
  const KernelRun two = run_scan(p, {t, true, 0}, two_threads());
  const KernelRun again = run_scan(p, {t, true, 0}, two_threads());
  const KernelRun three = run_scan(p, {t, true, 0}, make_openmp_for(3));
  const KernelRun strided = run_scan(p, {t, true, 5, 2}, two_threads());
  expect_runs_bitwise_equal(serial, two, "serial vs 2 threads");
  expect_runs_bitwise_equal(two, again, "two runs");
  expect_runs_bitwise_equal(serial, three, "serial vs 3 threads");
  expect_runs_bitwise_equal(serial, strided, "contiguous vs padded rows, C strided unlike B");
  EXPECT_TRUE(strided.out.padding_intact()) << "the forward wrote into the padding between rows of out";
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaDeterminism,
                         ::testing::Values(ScalarType::kFloat32, ScalarType::kFloat64, ScalarType::kBFloat16),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---------------------------------------------------------------------------------------------------------
// selective_state_update equals one step of the scan, step after step.

struct StepBuffers {
  Buffer x, dt, z, Bm, Cm, scale, out;
};

// Column t of the problem as the (B, D) / (B, G, N) / (B,) tensors of one streaming step.
StepBuffers step_inputs(const Problem& p, int64_t t, ScalarType type) {
  const int64_t B = p.s.B, D = p.s.D, L = p.s.L, N = p.s.N, G = p.s.G;
  auto column = [&](const Vec& v, int64_t rows) {
    Vec out;
    if (v.empty()) return out;
    for (int64_t r = 0; r < rows; ++r) out.push_back(v[static_cast<size_t>(r * L + t)]);
    return out;
  };
  StepBuffers s;
  s.x = Buffer::flat(column(p.u, B * D), type);
  s.dt = Buffer::flat(column(p.delta, B * D), type);
  s.z = Buffer::flat(column(p.z, B * D), type);
  s.Bm = Buffer::flat(column(p.Bm, B * G * N), type);
  s.Cm = Buffer::flat(column(p.Cm, B * G * N), type);
  s.scale = Buffer::flat(column(p.scale, B), compute_of(type));
  s.out = Buffer::zeros(B * D, type);
  return s;
}

// One selective_state_update call on step t of the problem, advancing `state` (compute type); returns out (B, D).
Vec run_state_update(const Problem& p, int64_t t, ScalarType type, Buffer& state, const ParallelFor& pf) {
  const ScalarType c = compute_of(type);
  const Buffer A = Buffer::flat(p.A, c), Dv = Buffer::flat(p.Dv, c), bias = Buffer::flat(p.bias, c);
  StepBuffers in = step_inputs(p, t, type);
  StateUpdateParams sp;
  sp.dtype = type;
  sp.batch = p.s.B;
  sp.dim = p.s.D;
  sp.dstate = p.s.N;
  sp.n_groups = p.s.G;
  sp.dt_softplus = p.o.softplus;
  sp.state = state.data();
  sp.x = in.x.data();
  sp.dt = in.dt.data();
  sp.Bmat = in.Bm.data();
  sp.Cmat = in.Cm.data();
  sp.z = p.o.has_z ? in.z.data() : nullptr;
  sp.A = A.data();
  sp.Dvec = p.o.has_D ? Dv.data() : nullptr;
  sp.dt_bias = p.o.has_bias ? bias.data() : nullptr;
  sp.dt_scale = p.o.has_scale ? in.scale.data() : nullptr;
  sp.out = in.out.data();
  hamburg_mamba::cpu::selective_state_update(sp, pf);
  return in.out.decode();
}

double output_tolerance(ScalarType t) {
  return t == ScalarType::kFloat64   ? kTolFloat64
         : t == ScalarType::kFloat32 ? kTolFloat32Out
         : t == ScalarType::kFloat16 ? kTolFloat16
                                     : kTolBFloat16;
}

class IsaStateUpdate : public ::testing::TestWithParam<ScalarType> {};

TEST_P(IsaStateUpdate, EqualsTheScanStepByStep) {
  const ScalarType t = GetParam();
  const double tol = output_tolerance(t);
  constexpr int64_t kSteps = 7;
  // (N, options mask): the state update always starts from a state (mask 16), with or without the rest.
  constexpr std::pair<int64_t, unsigned> kCases[] = {{1, 16u}, {1, 63u}, {17, 16u}, {17, 63u}, {64, 63u}, {256, 63u}};
  for (const auto& [N, mask] : kCases) {
    for (const Shape& s : {Shape{3, 19, kSteps, N, 1}, Shape{2, 38, kSteps, N, 2}}) {
      const Options o = Options::from_mask(mask);
      const Problem p = rounded(make_problem(s, o, 500 + N + mask), t);
      const std::string ctx = std::string(name_of(t)) + " " + describe(s, o);
      const RefForward ref = ref_forward(p);
      const KernelRun scan = run_scan(p, {t, false, 0}, serial_for);
      const Vec scan_out = scan.out.decode();

      Buffer state = Buffer::flat(p.init, compute_of(t));
      Vec out_steps(static_cast<size_t>(s.B * s.D * kSteps));
      for (int64_t k = 0; k < kSteps; ++k) {
        const Vec y = run_state_update(p, k, t, state, two_threads());
        for (int64_t bd = 0; bd < s.B * s.D; ++bd) out_steps[bd * kSteps + k] = y[bd];
      }
      EXPECT_LE(rel_l2(out_steps, ref.out), tol) << "out vs reference " << ctx;
      EXPECT_LE(rel_l2(state.decode(), ref.last), tol) << "state vs reference " << ctx;
      // Against the scan kernel itself: only the summation order over n differs.
      EXPECT_LE(rel_l2(out_steps, scan_out), tol) << "out vs scan " << ctx;
      EXPECT_LE(rel_l2(state.decode(), scan.last.decode()), tol) << "state vs scan " << ctx;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaStateUpdate,
                         ::testing::Values(ScalarType::kFloat64, ScalarType::kFloat32, ScalarType::kFloat16,
                                           ScalarType::kBFloat16),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---------------------------------------------------------------------------------------------------------
// The step size across every branch of softplus (far below, around and above the threshold), and NaN / inf
// steps: NaN in gives NaN exactly where the reference has NaN (softplus(NaN) = NaN, as torch's), so a wrong
// branch for NaN (a step of about 20) shows.

constexpr double kPreSteps[] = {
    -1000, -100, -30, -5, 0, 5, kSoftplusThreshold - 1e-3, kSoftplusThreshold, kSoftplusThreshold + 1e-3, 25, 40};

// 2 * values.size() channels: channel i carries values[i] in delta_bias (delta 0, exact in every dtype),
// channel values.size() + i carries it in delta (bias 0).
Problem pre_step_problem(Shape s, const std::vector<double>& values, uint64_t seed) {
  const int64_t k = static_cast<int64_t>(values.size());
  s.D = 2 * k;
  Problem p = make_problem(s, Options::all(), seed);
  for (int64_t d = 0; d < s.D; ++d) {
    const double v = values[static_cast<size_t>(d % k)];
    p.bias[d] = d < k ? v : 0.0;
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t t = 0; t < s.L; ++t) p.delta[p.bdl(b, d, t)] = d < k ? 0.0 : v;
  }
  return p;
}

// Magnitude per element below which values compare absolutely. The float32 kernels flush exp(x) to 0 for
// x < -88, so softplus(-100) = 3.7e-44 and the gradients it scales (about 1e-41) come out as 0: FLT_MIN /
// FLT_EPSILON sits 2^23 below the normal range. float16 keeps its subnormals: its floor is 2^-14.
double underflow_floor(ScalarType t) {
  switch (t) {
    case ScalarType::kFloat64: return 2.2250738585072014e-308 / 2.220446049250313e-16;
    case ScalarType::kFloat16: return 6.103515625e-05;
    case ScalarType::kBFloat16: return 1.1754943508222875e-38;
    default: return 1.1754943508222875e-38 / 1.1920928955078125e-07;
  }
}

// Largest relative L2 error over the channels c of an (outer, channels, inner) array, over the finite reference
// entries only; -1 when got and want do not have the same non-finite entries (NaN for NaN, inf for inf; with
// exact == false only finite for finite).
double max_channel_error(const Buffer& got_buf, const Vec& want, int64_t outer, int64_t channels, int64_t inner,
                         bool exact = true) {
  const Vec got = got_buf.decode();
  EXPECT_EQ(got.size(), want.size());
  if (got.size() != want.size()) return INFINITY;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = exact ? (std::isnan(got[i]) == std::isnan(want[i]) &&
                               (std::isinf(got[i]) ? got[i] == want[i] : !std::isinf(want[i])))
                            : std::isfinite(got[i]) == std::isfinite(want[i]);
    if (!same) return -1;
  }
  const double floor = underflow_floor(got_buf.type);
  double worst = 0;
  for (int64_t c = 0; c < channels; ++c) {
    double num = 0, den = 0;
    int64_t n = 0;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const size_t j = static_cast<size_t>((o * channels + c) * inner + i);
        if (!std::isfinite(want[j])) continue;
        num += (got[j] - want[j]) * (got[j] - want[j]);
        den += want[j] * want[j];
        ++n;
      }
    if (n > 0) worst = std::max(worst, std::sqrt(num) / std::max(std::sqrt(den), floor * std::sqrt(double(n))));
  }
  return worst;
}

// Per-channel tolerances (outputs, gradients). Measured at the three ISA levels on these problems, at most
// (outputs / gradients): float64 4.8e-16 / 5.8e-14; float32 3.0e-7 / 7.4e-6 (ddelta_bias, a sum over B and L
// with cancellation); float16 4.0e-4 / 3.1e-4; bfloat16 3.5e-3 / 2.9e-3 (the rounding of the stored half
// outputs, unit roundoff 2^-11 and 2^-8). Each bound is 2x or more the measurement and below 1 %, so a 1 %
// error in any channel fails.
std::pair<double, double> branch_tolerance(ScalarType t) {
  switch (t) {
    case ScalarType::kFloat64: return {1e-12, 1e-12};
    case ScalarType::kFloat32: return {1e-5, 2e-5};
    case ScalarType::kFloat16: return {2e-3, 2e-3};
    default: return {8e-3, 8e-3};
  }
}

// Forward and every gradient, channel by channel; gradients need only the same finite entries (with an
// infinite step the kernel factors it out of sum_n G_n B_n, where the reference meets inf - inf = NaN).
void expect_channels_match(const Problem& p, ScalarType t, const std::string& ctx) {
  const auto [tol_out, tol_grad] = branch_tolerance(t);
  const int64_t B = p.s.B, D = p.s.D, L = p.s.L, N = p.s.N;
  const RefForward ref = ref_forward(p);
  const Grads g = ref_backward(p);
  const KernelRun k = run_scan(p, {t, true, 0}, two_threads());
  auto within = [](double err, double tol) { return err >= 0 && err <= tol; };
  EXPECT_PRED2(within, max_channel_error(k.out, ref.out, B, D, L), tol_out) << "out " << ctx;
  EXPECT_PRED2(within, max_channel_error(k.last, ref.last, B, D, N), tol_out) << "last_state " << ctx;
  const std::tuple<const char*, const Buffer*, const Vec*, int64_t, int64_t, int64_t> grads[] = {
      {"du", &k.du, &g.du, B, D, L},
      {"ddelta", &k.ddelta, &g.ddelta, B, D, L},
      {"dz", &k.dz, &g.dz, B, D, L},
      {"dA", &k.dA, &g.dA, 1, D, N},
      {"dD", &k.dD, &g.dD, 1, D, 1},
      {"ddelta_bias", &k.dbias, &g.dbias, 1, D, 1},
      {"dinitial_state", &k.dinit, &g.dinit, B, D, N},
      {"dB", &k.dB, &g.dB, 1, 1, static_cast<int64_t>(g.dB.size())},
      {"dC", &k.dC, &g.dC, 1, 1, static_cast<int64_t>(g.dC.size())}};
  for (const auto& [name, got, want, outer, channels, inner] : grads)
    EXPECT_PRED2(within, max_channel_error(*got, *want, outer, channels, inner, false), tol_grad) << name << " " << ctx;
}

class IsaSoftplusBranches : public ::testing::TestWithParam<ScalarType> {};

TEST_P(IsaSoftplusBranches, ScanForwardAndBackwardMatchReferencePerChannel) {
  const ScalarType t = GetParam();
  const std::vector<double> values(std::begin(kPreSteps), std::end(kPreSteps));
  // L = 70: two checkpoint chunks; G = 2 groups of 11 channels (a 16-lane block's tail).
  const Problem p = rounded(pre_step_problem({2, 0, 70, 8, 2}, values, 900), t);
  expect_channels_match(p, t, name_of(t));
}

TEST_P(IsaSoftplusBranches, NanAndInfStepsPropagateLikeTheReference) {
  const ScalarType t = GetParam();
  const Shape s{2, 20, 70, 8, 2};
  Problem p = make_problem(s, Options::all(), 901);
  p.delta[p.bdl(0, 1, 5)] = NAN;
  p.delta[p.bdl(0, 2, 66)] = INFINITY;  // in the second checkpoint chunk
  p.delta[p.bdl(1, 3, 9)] = -INFINITY;
  p.bias[17] = NAN;
  expect_channels_match(rounded(p, t), t, name_of(t));
}

TEST_P(IsaSoftplusBranches, StateUpdateMatchesReferencePerChannel) {
  const ScalarType t = GetParam();
  std::vector<double> values(std::begin(kPreSteps), std::end(kPreSteps));
  values.insert(values.end(), {NAN, INFINITY, -INFINITY});
  // One step of the scan from the initial state is one state update.
  const Problem p = rounded(pre_step_problem({2, 0, 1, 17, 1}, values, 902), t);
  const RefForward ref = ref_forward(p);
  Buffer state = Buffer::flat(p.init, compute_of(t));
  Buffer out = Buffer::flat(run_state_update(p, 0, t, state, two_threads()), t);
  const double tol = branch_tolerance(t).first;
  auto within = [](double err, double tol) { return err >= 0 && err <= tol; };
  EXPECT_PRED2(within, max_channel_error(out, ref.out, p.s.B, p.s.D, 1), tol) << "out " << name_of(t);
  EXPECT_PRED2(within, max_channel_error(state, ref.last, p.s.B, p.s.D, p.s.N), tol) << "state " << name_of(t);
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaSoftplusBranches,
                         ::testing::Values(ScalarType::kFloat64, ScalarType::kFloat32, ScalarType::kFloat16,
                                           ScalarType::kBFloat16),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---------------------------------------------------------------------------------------------------------
// mamba_block_step: one event of the pre-norm residual Mamba block, two events in a row (so the conv window
// and the state carry over), against a float64 reference written out stage by stage. Sizes put every kernel
// path to work: d_model 21 and d_inner 40 are not multiples of 16 (vector blocks and a tail, an odd 16-wide
// block in the projections' inputs), dt_rank 3 is all tail, N 18 one state block and a tail, and batch 7 is
// a pass of 4 rows plus a remainder of 3.

struct BlockSizes {
  int64_t B, M, E, K, R, N;
};

// Every input in float64, float32-exact; the projections rounded to the weight type under test.
struct BlockProblem {
  BlockSizes s;
  Vec x0, x1;               // the two events' inputs, (B, M)
  Vec norm_weight;          // (M,)
  Vec in_proj;              // (2E, M)
  Vec conv_state;           // (B, E, K), oldest first
  Vec conv_weight, conv_bias;  // (E, K), (E,)
  Vec x_proj;               // (R + 2N, E)
  Vec dt_proj;              // (E, R)
  Vec dt_bias, A, Dv;       // (E,), (E, N), (E,)
  Vec ssm_state;            // (B, E, N)
  Vec dt_scale;             // (B,)
  Vec out_proj;             // (M, E)
};

constexpr double kBlockNormEps = 1e-5;

BlockProblem make_block_problem(BlockSizes s, ScalarType weight_type, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto fill = [&](int64_t n, double lo, double hi) {
    Vec v(static_cast<size_t>(n));
    for (double& x : v) x = static_cast<float>(std::uniform_real_distribution<double>(lo, hi)(rng));
    return v;
  };
  auto weights = [&](int64_t rows, int64_t in) {
    const double bound = 1 / std::sqrt(static_cast<double>(in));  // torch's Linear initialisation
    Vec w = fill(rows * in, -bound, bound);
    round_all(w, weight_type);
    return w;
  };
  BlockProblem p;
  p.s = s;
  p.x0 = fill(s.B * s.M, -2, 2);
  p.x1 = fill(s.B * s.M, -2, 2);
  p.norm_weight = fill(s.M, 0.5, 1.5);
  p.in_proj = weights(2 * s.E, s.M);
  p.conv_state = fill(s.B * s.E * s.K, -1, 1);
  p.conv_weight = fill(s.E * s.K, -0.5, 0.5);
  p.conv_bias = fill(s.E, -0.2, 0.2);
  p.x_proj = weights(s.R + 2 * s.N, s.E);
  p.dt_proj = weights(s.E, s.R);
  // dt + dt_bias on both sides of 0, so softplus matters.
  p.dt_bias = fill(s.E, -2, 1);
  p.A = fill(s.E * s.N, -3, -0.1);
  p.Dv = fill(s.E, -1, 1);
  p.ssm_state = fill(s.B * s.E * s.N, -1, 1);
  p.dt_scale = fill(s.B, 0.5, 1.5);
  p.out_proj = weights(s.M, s.E);
  return p;
}

// out[r] = sum_i W[first_row + r, i] v[i] for `rows` rows of a row-major (., in) weight.
Vec matvec(const Vec& W, int64_t first_row, int64_t rows, int64_t in, const double* v) {
  Vec out(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < in; ++i) out[r] += W[(first_row + r) * in + i] * v[i];
  return out;
}

// One event for every batch row, advancing conv_state and ssm_state in place; returns out (B, M).
Vec ref_block_step(const BlockProblem& p, const Vec& x, Vec& conv_state, Vec& ssm_state) {
  const auto [B, M, E, K, R, N] = p.s;
  Vec out(static_cast<size_t>(B * M));
  for (int64_t b = 0; b < B; ++b) {
    const double* xb = x.data() + b * M;
    double squares = 0;
    for (int64_t m = 0; m < M; ++m) squares += xb[m] * xb[m];
    const double inv = 1 / std::sqrt(squares / M + kBlockNormEps);
    Vec normed(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) normed[m] = xb[m] * inv * p.norm_weight[m];
    const Vec xi = matvec(p.in_proj, 0, E, M, normed.data());
    const Vec z = matvec(p.in_proj, E, E, M, normed.data());
    Vec xc(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double* window = conv_state.data() + (b * E + e) * K;
      std::rotate(window, window + 1, window + K);  // oldest input out, newest in at the end
      window[K - 1] = xi[e];
      double acc = p.conv_bias[e];
      for (int64_t k = 0; k < K; ++k) acc += window[k] * p.conv_weight[e * K + k];
      xc[e] = acc * sigmoid(acc);
    }
    const Vec dt_r = matvec(p.x_proj, 0, R, E, xc.data());
    const Vec Bv = matvec(p.x_proj, R, N, E, xc.data());
    const Vec Cv = matvec(p.x_proj, R + N, N, E, xc.data());
    const Vec dt = matvec(p.dt_proj, 0, E, R, dt_r.data());
    Vec y(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      const double step = softplus(dt[e] + p.dt_bias[e]) * p.dt_scale[b];
      double ye = p.Dv[e] * xc[e];
      for (int64_t n = 0; n < N; ++n) {
        double& h = ssm_state[(b * E + e) * N + n];
        h = std::exp(step * p.A[e * N + n]) * h + step * xc[e] * Bv[n];
        ye += Cv[n] * h;
      }
      y[e] = ye * z[e] * sigmoid(z[e]);
    }
    const Vec proj = matvec(p.out_proj, 0, M, E, y.data());
    for (int64_t m = 0; m < M; ++m) out[b * M + m] = xb[m] + proj[m];
  }
  return out;
}

struct BlockRun {
  Vec out0, out1, conv_state, ssm_state;
};

// The two events through the kernel: activations in `type` (float64 or float32), projections in `weight_type`.
BlockRun run_block_steps(const BlockProblem& p, ScalarType type, ScalarType weight_type, const ParallelFor& pf) {
  const auto [B, M, E, K, R, N] = p.s;
  const Buffer norm_weight = Buffer::flat(p.norm_weight, type), in_proj = Buffer::flat(p.in_proj, weight_type),
               conv_weight = Buffer::flat(p.conv_weight, type), conv_bias = Buffer::flat(p.conv_bias, type),
               x_proj = Buffer::flat(p.x_proj, weight_type), dt_proj = Buffer::flat(p.dt_proj, weight_type),
               dt_bias = Buffer::flat(p.dt_bias, type), A = Buffer::flat(p.A, type), Dv = Buffer::flat(p.Dv, type),
               dt_scale = Buffer::flat(p.dt_scale, type), out_proj = Buffer::flat(p.out_proj, weight_type);
  Buffer conv_state = Buffer::flat(p.conv_state, type), ssm_state = Buffer::flat(p.ssm_state, type);
  hamburg_mamba::MambaBlockStepParams bp;
  bp.dtype = type;
  bp.weight_dtype = weight_type;
  bp.batch = B;
  bp.d_model = M;
  bp.d_inner = E;
  bp.d_conv = K;
  bp.dt_rank = R;
  bp.dstate = N;
  bp.norm_eps = kBlockNormEps;
  bp.norm_weight = norm_weight.data();
  bp.in_proj = in_proj.data();
  bp.conv_state = conv_state.data();
  bp.conv_weight = conv_weight.data();
  bp.conv_bias = conv_bias.data();
  bp.x_proj = x_proj.data();
  bp.dt_proj = dt_proj.data();
  bp.dt_bias = dt_bias.data();
  bp.A = A.data();
  bp.Dvec = Dv.data();
  bp.ssm_state = ssm_state.data();
  bp.dt_scale = dt_scale.data();
  bp.out_proj = out_proj.data();
  Buffer workspace = Buffer::zeros(bp.workspace_elements(), type);
  bp.workspace = workspace.data();
  BlockRun r;
  for (const Vec* x : {&p.x0, &p.x1}) {
    const Buffer xb = Buffer::flat(*x, type);
    Buffer out = Buffer::zeros(B * M, type);
    bp.x = xb.data();
    bp.out = out.data();
    hamburg_mamba::cpu::mamba_block_step(bp, pf);
    (x == &p.x0 ? r.out0 : r.out1) = out.decode();
  }
  r.conv_state = conv_state.decode();
  r.ssm_state = ssm_state.decode();
  return r;
}

class IsaBlockStep : public ::testing::TestWithParam<std::pair<ScalarType, ScalarType>> {};

TEST_P(IsaBlockStep, TwoEventsMatchReference) {
  const auto [type, weight_type] = GetParam();
  const BlockSizes s{7, 21, 40, 4, 3, 18};
  const BlockProblem p = make_block_problem(s, weight_type, 1000);
  Vec conv_state = p.conv_state, ssm_state = p.ssm_state;
  const Vec out0 = ref_block_step(p, p.x0, conv_state, ssm_state);
  const Vec out1 = ref_block_step(p, p.x1, conv_state, ssm_state);
  // The weights are exact in every type, so float32 differs from the reference by float32 arithmetic only.
  const double tol = type == ScalarType::kFloat64 ? kTolFloat64 : kTolFloat32Out;
  const std::string ctx = std::string(name_of(type)) + " weights " + name_of(weight_type);
  for (const ParallelFor& pf : {ParallelFor(serial_for), two_threads()}) {
    const BlockRun k = run_block_steps(p, type, weight_type, pf);
    EXPECT_LE(rel_l2(k.out0, out0), tol) << "first event's out " << ctx;
    EXPECT_LE(rel_l2(k.out1, out1), tol) << "second event's out " << ctx;
    EXPECT_LE(rel_l2(k.conv_state, conv_state), tol) << "conv_state " << ctx;
    EXPECT_LE(rel_l2(k.ssm_state, ssm_state), tol) << "ssm_state " << ctx;
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, IsaBlockStep,
                         ::testing::Values(std::pair{ScalarType::kFloat64, ScalarType::kFloat64},
                                           std::pair{ScalarType::kFloat32, ScalarType::kFloat32},
                                           std::pair{ScalarType::kFloat32, ScalarType::kFloat16},
                                           std::pair{ScalarType::kFloat32, ScalarType::kBFloat16}),
                         [](const auto& info) {
                           return std::string(name_of(info.param.first)) + "_weights_" + name_of(info.param.second);
                         });

}  // namespace
