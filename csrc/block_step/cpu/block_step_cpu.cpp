// CPU block-step dispatcher: one event of a Mamba block as a sequence of stages (RMS norm, projections, conv
// step, the state update's kernel, output projection with the residual), each calling the kernel table of the
// active ISA level over its items, split over threads.
#include "block_step_cpu.h"

#include "block_step_cpu_isa.h"
#include "common/cpu/isa.h"
#include "state_update/cpu/state_update_cpu.h"

namespace hamburg_mamba::cpu {
namespace {

// As the scan's dispatcher: below this much work per task, another thread costs more than it saves.
constexpr int64_t kMinTaskWork = int64_t{1} << 18;

}  // namespace

void mamba_block_step(const MambaBlockStepParams& p, const ParallelFor& parallel_for) {
  static const BlockStepKernels& kernels =
      select_isa(baseline::kBlockStepKernels, avx2::kBlockStepKernels, avx512::kBlockStepKernels);
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

  for_items(B, M, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { kernels.rms_norm_items(p, normed, begin, end); });
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
    for_items((rows + kLanes - 1) / kLanes, kLanes * in * B, kMinTaskWork, parallel_for,
              [&](int64_t begin, int64_t end) { kernels.gemv_items(j, begin, end); });
  };
  auto rows_of = [&](const void* weight, int64_t first_row, int64_t in) {
    return static_cast<const char*>(weight) + first_row * in * w_size;
  };
  gemv(p.in_proj, E, M, normed, xi, nullptr);
  gemv(rows_of(p.in_proj, E, M), E, M, normed, z, nullptr);
  for_items(B * E, p.d_conv, kMinTaskWork, parallel_for,
            [&](int64_t begin, int64_t end) { kernels.conv_step_items(p, xi, xc, begin, end); });
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

}  // namespace hamburg_mamba::cpu
