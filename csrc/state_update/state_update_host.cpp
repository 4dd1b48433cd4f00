// Host-side checks and parameter packing of selective_state_update (shared by every backend).
#include "state_update_host.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {

StateUpdatePrepared prepare_state_update(const at::Tensor& state, const at::Tensor& x, const at::Tensor& dt,
                                         const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                         const OptTensor& D, const OptTensor& z, const OptTensor& dt_bias,
                                         const OptTensor& dt_scale, bool dt_softplus) {
  const char* op = "hamburg_mamba.selective_state_update";
  TORCH_CHECK_TYPE(is_supported_input_dtype(x.scalar_type()), op,
                   ": argument 'x' must be float32, float16, bfloat16 or float64, got ", x.scalar_type());
  TORCH_CHECK_TYPE(x.scalar_type() != at::kDouble || x.is_cpu(), op,
                   ": float64 inputs are supported on the CPU only (got 'x' on ", x.device(), ")");
  TORCH_CHECK_VALUE(x.dim() == 2 && x.numel() > 0, op, ": argument 'x' must have non-empty shape (B, D), got ",
                    shape_str(x.sizes()));
  const int64_t batch = x.size(0), dim = x.size(1);
  const at::ScalarType compute = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_VALUE(state.dim() == 3, op, ": argument 'state' must have shape (B, D, N), got ",
                    shape_str(state.sizes()));
  const int64_t dstate = state.size(2);
  TORCH_CHECK_VALUE(dstate >= 1 && dstate <= kMaxStateSize, op, ": state size N = state.shape[2] must be in [1, ",
                    kMaxStateSize, "], got ", dstate);
  check_tensor(op, state, "state", x, {batch, dim, dstate}, "(B, D, N)");
  TORCH_CHECK_TYPE(state.scalar_type() == compute, op, ": argument 'state' must be ", compute,
                   " (the compute type for ", x.scalar_type(), " inputs), got ", state.scalar_type());
  check_tensor(op, dt, "dt", x, {batch, dim}, "(B, D)");
  check_tensor(op, A, "A", x, {dim, dstate}, "(D, N)");
  TORCH_CHECK_VALUE(B.dim() == 2 || B.dim() == 3, op, ": argument 'B' must have shape (B, N) or (B, G, N), got ",
                    shape_str(B.sizes()));
  const bool bc_2d = B.dim() == 2;
  const int64_t groups = bc_2d ? 1 : B.size(1);
  TORCH_CHECK_VALUE(groups >= 1 && dim % groups == 0, op, ": the number of groups G = B.shape[1] = ", groups,
                    " must divide D = ", dim);
  if (bc_2d) {
    check_tensor(op, B, "B", x, {batch, dstate}, "(B, N)");
    check_tensor(op, C, "C", x, {batch, dstate}, "(B, N) like 'B'");
  } else {
    check_tensor(op, B, "B", x, {batch, groups, dstate}, "(B, G, N)");
    check_tensor(op, C, "C", x, {batch, groups, dstate}, "(B, G, N) like 'B'");
  }

  StateUpdatePrepared prep;
  StateUpdateParams& p = prep.params;
  p.dtype = to_kernel_dtype(x.scalar_type());
  p.batch = batch;
  p.dim = dim;
  p.dstate = dstate;
  p.n_groups = groups;
  p.dt_softplus = dt_softplus;
  auto contig_input = [&](const at::Tensor& t, const char* name) {
    at::Tensor c = input_like(op, t, name, x, "x").contiguous();
    prep.keep_alive.push_back(c);
    return c.const_data_ptr();
  };
  auto contig_param = [&](const at::Tensor& t, const char* name) {
    at::Tensor c = param(op, t, name, compute);
    prep.keep_alive.push_back(c);
    return c.const_data_ptr();
  };
  p.x = contig_input(x, "x");
  p.dt = contig_input(dt, "dt");
  p.Bmat = contig_input(B, "B");
  p.Cmat = contig_input(C, "C");
  p.A = contig_param(A, "A");
  if (z) {
    check_tensor(op, *z, "z", x, {batch, dim}, "(B, D)");
    p.z = contig_input(*z, "z");
  }
  if (D) {
    check_tensor(op, *D, "D", x, {dim}, "(D,)");
    p.Dvec = contig_param(*D, "D");
  }
  if (dt_bias) {
    check_tensor(op, *dt_bias, "dt_bias", x, {dim}, "(D,)");
    p.dt_bias = contig_param(*dt_bias, "dt_bias");
  }
  if (dt_scale) {
    check_tensor(op, *dt_scale, "dt_scale", x, {batch}, "(B,)");
    at::Tensor s = param(op, *dt_scale, "dt_scale", compute);
    if (s.is_cpu()) {
      TORCH_CHECK_VALUE(valid_elapsed(s), op, ": argument 'dt_scale' must be finite and non-negative");
    }
    prep.keep_alive.push_back(s);
    p.dt_scale = s.const_data_ptr();
  }
  prep.state_work = state.is_contiguous() ? state : state.contiguous();
  p.state = prep.state_work.mutable_data_ptr();
  prep.out = at::empty({batch, dim}, x.options());
  p.out = prep.out.mutable_data_ptr();
  return prep;
}

void finalize_state_update(const at::Tensor& state, const StateUpdatePrepared& prep) {
  if (!prep.state_work.is_same(state)) state.copy_(prep.state_work);
}

}  // namespace hamburg_mamba
