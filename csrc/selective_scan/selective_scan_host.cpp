// Host-side checks and parameter packing for the selective-scan ops (shared by every backend).
#include "selective_scan_host.h"

#include <cmath>
#include <sstream>
#include <string>

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {
namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  os << (sizes.size() == 1 ? ",)" : ")");
  return os.str();
}

bool is_supported_input_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

ScalarType to_kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ScalarType::kFloat32;
    case at::kHalf: return ScalarType::kFloat16;
    case at::kBFloat16: return ScalarType::kBFloat16;
    default: return ScalarType::kFloat64;
  }
}

// Checks everything common to a tensor argument: device, rank and exact shape.
void check_tensor(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                  std::initializer_list<int64_t> shape, const char* shape_names) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(), " but 'u' is on ",
                    ref.device(), "; all tensors must be on the same device");
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), op, ": argument '", name, "' must have shape ", shape_names,
                    " = ", shape_str(shape), ", got ", shape_str(t.sizes()));
}

// Tensors in the input dtype: same dtype as the reference, last dimension contiguous.
at::Tensor input_like(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                      const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' must have the dtype of '",
                   ref_name, "' (", ref.scalar_type(), "), got ", t.scalar_type());
  return t.stride(-1) == 1 ? t : t.contiguous();
}

// Elapsed-time scales: every entry finite and >= 0. `x < 0` alone lets NaN through (every comparison with NaN is
// false), and a NaN or infinite scale turns the whole scan into NaN.
bool valid_elapsed(const at::Tensor& scale) { return ((scale >= 0) & at::isfinite(scale)).all().item<bool>(); }

// Parameters in the compute type (float32, or float64 for float64 inputs): float32 accepted everywhere,
// float64 on the CPU; converted and made contiguous.
at::Tensor param(const char* op, const at::Tensor& t, const char* name, at::ScalarType compute) {
  const bool ok = t.scalar_type() == at::kFloat || (t.scalar_type() == at::kDouble && t.is_cpu());
  TORCH_CHECK_TYPE(ok, op, ": argument '", name, "' must be float32", t.is_cpu() ? " or float64" : "", ", got ",
                   t.scalar_type());
  return t.to(compute).contiguous();
}

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

struct Dims {
  int64_t batch, dim, seqlen, dstate, groups;
  bool bc_3d;
  at::ScalarType compute;
};

Dims check_common(const char* op, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                  const at::Tensor& B, const at::Tensor& C) {
  TORCH_CHECK_TYPE(is_supported_input_dtype(u.scalar_type()), op,
                   ": argument 'u' must be float32, float16, bfloat16 or float64, got ", u.scalar_type());
  TORCH_CHECK_TYPE(u.scalar_type() != at::kDouble || u.is_cpu(), op,
                   ": float64 inputs are supported on the CPU only (got 'u' on ", u.device(), ")");
  TORCH_CHECK_VALUE(u.dim() == 3, op, ": argument 'u' must have shape (B, D, L), got ", shape_str(u.sizes()));
  TORCH_CHECK_VALUE(u.numel() > 0, op, ": argument 'u' must be non-empty (B, D, L all >= 1), got ",
                    shape_str(u.sizes()));
  Dims d{u.size(0), u.size(1), u.size(2), 0, 1, false, u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat};
  check_tensor(op, delta, "delta", u, {d.batch, d.dim, d.seqlen}, "(B, D, L)");
  TORCH_CHECK_VALUE(A.dim() == 2 && A.size(0) == d.dim, op, ": argument 'A' must have shape (D, N) with D = ", d.dim,
                    ", got ", shape_str(A.sizes()));
  d.dstate = A.size(1);
  TORCH_CHECK_VALUE(d.dstate >= 1 && d.dstate <= kMaxStateSize, op, ": state size N = A.shape[1] must be in [1, ",
                    kMaxStateSize, "], got ", d.dstate);
  check_tensor(op, A, "A", u, {d.dim, d.dstate}, "(D, N)");
  TORCH_CHECK_VALUE(B.dim() == 3 || B.dim() == 4, op, ": argument 'B' must have shape (B, N, L) or (B, G, N, L), got ",
                    shape_str(B.sizes()));
  d.bc_3d = B.dim() == 3;
  d.groups = d.bc_3d ? 1 : B.size(1);
  TORCH_CHECK_VALUE(d.groups >= 1 && d.dim % d.groups == 0, op, ": the number of groups G = B.shape[1] = ", d.groups,
                    " must divide D = ", d.dim);
  if (d.bc_3d) {
    check_tensor(op, B, "B", u, {d.batch, d.dstate, d.seqlen}, "(B, N, L)");
    check_tensor(op, C, "C", u, {d.batch, d.dstate, d.seqlen}, "(B, N, L) like 'B'");
  } else {
    check_tensor(op, B, "B", u, {d.batch, d.groups, d.dstate, d.seqlen}, "(B, G, N, L)");
    check_tensor(op, C, "C", u, {d.batch, d.groups, d.dstate, d.seqlen}, "(B, G, N, L) like 'B'");
  }
  return d;
}

// Fills the forward params shared by the forward and the backward; returns tensors to keep alive.
std::vector<at::Tensor> fill_fwd_params(const char* op, SelectiveScanParams& p, const Dims& d, const at::Tensor& u,
                                        const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                        const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                        const OptTensor& delta_bias, const OptTensor& initial_state,
                                        const OptTensor& dt_scale, bool delta_softplus) {
  p.dtype = to_kernel_dtype(u.scalar_type());
  p.batch = d.batch;
  p.dim = d.dim;
  p.seqlen = d.seqlen;
  p.dstate = d.dstate;
  p.n_groups = d.groups;
  p.delta_softplus = delta_softplus;

  at::Tensor u_c = u.stride(-1) == 1 ? u : u.contiguous();
  at::Tensor delta_c = input_like(op, delta, "delta", u, "u");
  // (B, N, L) is group-free: view it as (B, 1, N, L).
  at::Tensor B_c = input_like(op, d.bc_3d ? B.unsqueeze(1) : B, "B", u, "u");
  at::Tensor C_c = input_like(op, d.bc_3d ? C.unsqueeze(1) : C, "C", u, "u");
  at::Tensor A_c = param(op, A, "A", d.compute);
  at::Tensor z_c, D_c, bias_c, init_c, scale_c;
  if (z) {
    check_tensor(op, *z, "z", u, {d.batch, d.dim, d.seqlen}, "(B, D, L)");
    z_c = input_like(op, *z, "z", u, "u");
  }
  if (D) {
    check_tensor(op, *D, "D", u, {d.dim}, "(D,)");
    D_c = param(op, *D, "D", d.compute);
  }
  if (delta_bias) {
    check_tensor(op, *delta_bias, "delta_bias", u, {d.dim}, "(D,)");
    bias_c = param(op, *delta_bias, "delta_bias", d.compute);
  }
  if (initial_state) {
    check_tensor(op, *initial_state, "initial_state", u, {d.batch, d.dim, d.dstate}, "(B, D, N)");
    init_c = param(op, *initial_state, "initial_state", d.compute);
  }
  if (dt_scale) {
    check_tensor(op, *dt_scale, "dt_scale", u, {d.batch, d.seqlen}, "(B, L)");
    scale_c = param(op, *dt_scale, "dt_scale", d.compute);
    // A host-side check would cost a device synchronisation on CUDA, so it runs on the CPU only.
    if (scale_c.is_cpu()) {
      TORCH_CHECK_VALUE(valid_elapsed(scale_c), op,
                        ": argument 'dt_scale' must be finite and non-negative (elapsed time, 0 for padded steps)");
    }
  }

  p.u_batch_stride = u_c.stride(0);
  p.u_d_stride = u_c.stride(1);
  p.delta_batch_stride = delta_c.stride(0);
  p.delta_d_stride = delta_c.stride(1);
  p.B_batch_stride = B_c.stride(0);
  p.B_group_stride = B_c.stride(1);
  p.B_n_stride = B_c.stride(2);
  p.C_batch_stride = C_c.stride(0);
  p.C_group_stride = C_c.stride(1);
  p.C_n_stride = C_c.stride(2);
  if (z_c.defined()) {
    p.z_batch_stride = z_c.stride(0);
    p.z_d_stride = z_c.stride(1);
  }
  p.u = u_c.const_data_ptr();
  p.delta = delta_c.const_data_ptr();
  p.Bmat = B_c.const_data_ptr();
  p.Cmat = C_c.const_data_ptr();
  p.z = ptr_or_null(z_c);
  p.A = A_c.const_data_ptr();
  p.Dvec = ptr_or_null(D_c);
  p.delta_bias = ptr_or_null(bias_c);
  p.initial_state = ptr_or_null(init_c);
  p.dt_scale = ptr_or_null(scale_c);
  return {u_c, delta_c, B_c, C_c, A_c, z_c, D_c, bias_c, init_c, scale_c};
}

at::Tensor zeros_compute(at::IntArrayRef shape, const at::Tensor& u, at::ScalarType compute) {
  return at::zeros(shape, u.options().dtype(compute));
}

}  // namespace

FwdPrepared prepare_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                        const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                        const OptTensor& initial_state, const OptTensor& dt_scale, bool delta_softplus,
                        bool save_checkpoints) {
  const char* op = "hamburg_mamba.selective_scan_fwd";
  const Dims d = check_common(op, u, delta, A, B, C);
  FwdPrepared prep;
  prep.keep_alive =
      fill_fwd_params(op, prep.params, d, u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus);
  prep.out = at::empty({d.batch, d.dim, d.seqlen}, u.options());
  prep.last_state = at::empty({d.batch, d.dim, d.dstate}, u.options().dtype(d.compute));
  prep.checkpoints =
      save_checkpoints ? at::empty({d.batch, d.dim, num_checkpoints(d.seqlen), d.dstate}, u.options().dtype(d.compute))
                       : at::empty({0}, u.options().dtype(d.compute));
  SelectiveScanParams& p = prep.params;
  p.out_batch_stride = prep.out.stride(0);
  p.out_d_stride = prep.out.stride(1);
  p.out = prep.out.mutable_data_ptr();
  p.last_state = prep.last_state.mutable_data_ptr();
  p.checkpoints = save_checkpoints ? prep.checkpoints.mutable_data_ptr() : nullptr;
  return prep;
}

BwdPrepared prepare_bwd(const at::Tensor& dout, const OptTensor& dlast_state, const at::Tensor& u,
                        const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                        const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                        const OptTensor& initial_state, const OptTensor& dt_scale, const at::Tensor& checkpoints,
                        bool delta_softplus) {
  const char* op = "hamburg_mamba.selective_scan_bwd";
  const Dims d = check_common(op, u, delta, A, B, C);
  BwdPrepared prep;
  SelectiveScanBwdParams& p = prep.params;
  prep.keep_alive =
      fill_fwd_params(op, p, d, u, delta, A, B, C, D, z, delta_bias, initial_state, dt_scale, delta_softplus);

  check_tensor(op, dout, "dout", u, {d.batch, d.dim, d.seqlen}, "(B, D, L)");
  at::Tensor dout_c = input_like(op, dout, "dout", u, "u");
  prep.keep_alive.push_back(dout_c);
  p.dout = dout_c.const_data_ptr();
  p.dout_batch_stride = dout_c.stride(0);
  p.dout_d_stride = dout_c.stride(1);
  if (dlast_state) {
    check_tensor(op, *dlast_state, "dlast_state", u, {d.batch, d.dim, d.dstate}, "(B, D, N)");
    at::Tensor dlast_c = param(op, *dlast_state, "dlast_state", d.compute);
    prep.keep_alive.push_back(dlast_c);
    p.dlast_state = dlast_c.const_data_ptr();
  }
  TORCH_CHECK_VALUE(checkpoints.numel() > 0, op,
                    ": argument 'checkpoints' is empty: run selective_scan_fwd with save_checkpoints=True "
                    "before its backward");
  check_tensor(op, checkpoints, "checkpoints", u, {d.batch, d.dim, num_checkpoints(d.seqlen), d.dstate},
               "(B, D, ceil(L / 64), N)");
  TORCH_CHECK_TYPE(checkpoints.scalar_type() == d.compute, op, ": argument 'checkpoints' must be ", d.compute, ", got ",
                   checkpoints.scalar_type());
  at::Tensor chk_c = checkpoints.contiguous();
  prep.keep_alive.push_back(chk_c);
  p.checkpoints = const_cast<void*>(chk_c.const_data_ptr());

  prep.du = at::empty({d.batch, d.dim, d.seqlen}, u.options());
  prep.ddelta = at::empty({d.batch, d.dim, d.seqlen}, u.options());
  prep.dA = zeros_compute({d.dim, d.dstate}, u, d.compute);
  prep.dB = zeros_compute({d.batch, d.groups, d.dstate, d.seqlen}, u, d.compute);
  prep.dC = zeros_compute({d.batch, d.groups, d.dstate, d.seqlen}, u, d.compute);
  p.du = prep.du.mutable_data_ptr();
  p.ddelta = prep.ddelta.mutable_data_ptr();
  p.dA = prep.dA.mutable_data_ptr();
  p.dB = prep.dB.mutable_data_ptr();
  p.dC = prep.dC.mutable_data_ptr();
  if (z) {
    prep.dz = at::empty({d.batch, d.dim, d.seqlen}, u.options());
    p.dz = prep.dz.mutable_data_ptr();
  }
  if (D) {
    prep.dD = zeros_compute({d.dim}, u, d.compute);
    p.dD = prep.dD.mutable_data_ptr();
    prep.D_in = *D;
  }
  if (delta_bias) {
    prep.ddelta_bias = zeros_compute({d.dim}, u, d.compute);
    p.ddelta_bias = prep.ddelta_bias.mutable_data_ptr();
    prep.delta_bias_in = *delta_bias;
  }
  if (initial_state) {
    prep.dinitial_state = zeros_compute({d.batch, d.dim, d.dstate}, u, d.compute);
    p.dinitial_state = prep.dinitial_state.mutable_data_ptr();
    prep.initial_state_in = *initial_state;
  }
  prep.A_in = A;
  prep.B_in = B;
  prep.C_in = C;
  return prep;
}

BwdResult finalize_bwd(const BwdPrepared& prep) {
  auto empty = [&]() { return at::empty({0}, prep.dA.options()); };
  auto like = [&](const at::Tensor& grad, const at::Tensor& input) {
    return grad.defined() ? grad.to(input.scalar_type()).view(input.sizes()) : empty();
  };
  return {prep.du,
          prep.ddelta,
          like(prep.dA, prep.A_in),
          like(prep.dB, prep.B_in),
          like(prep.dC, prep.C_in),
          prep.dD.defined() ? like(prep.dD, prep.D_in) : empty(),
          prep.dz.defined() ? prep.dz : empty(),
          prep.ddelta_bias.defined() ? like(prep.ddelta_bias, prep.delta_bias_in) : empty(),
          prep.dinitial_state.defined() ? like(prep.dinitial_state, prep.initial_state_in) : empty()};
}

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

MambaBlockStepPrepared prepare_mamba_block_step(const at::Tensor& x, const at::Tensor& norm_weight, double norm_eps,
                                                const at::Tensor& in_proj_weight, const at::Tensor& conv_state,
                                                const at::Tensor& conv_weight, const OptTensor& conv_bias,
                                                const at::Tensor& x_proj_weight, const at::Tensor& dt_proj_weight,
                                                const at::Tensor& dt_proj_bias, const at::Tensor& A,
                                                const at::Tensor& D, const at::Tensor& ssm_state,
                                                const OptTensor& dt_scale, const at::Tensor& out_proj_weight) {
  const char* op = "hamburg_mamba.mamba_block_step";
  const at::ScalarType S = x.scalar_type();
  TORCH_CHECK_TYPE(S == at::kFloat || S == at::kDouble, op, ": argument 'x' must be float32 or float64, got ", S);
  TORCH_CHECK_VALUE(x.dim() == 2 && x.numel() > 0, op, ": argument 'x' must have non-empty shape (B, M), got ",
                    shape_str(x.sizes()));
  TORCH_CHECK_VALUE(x.is_contiguous(), op, ": argument 'x' must be contiguous");
  const at::ScalarType W = in_proj_weight.scalar_type();
  TORCH_CHECK_TYPE(W == S || (S == at::kFloat && (W == at::kHalf || W == at::kBFloat16)), op,
                   ": argument 'in_proj_weight' must have the dtype of 'x' (", S, ")",
                   S == at::kFloat ? ", float16 or bfloat16" : "", ", got ", W);
  TORCH_CHECK_VALUE(in_proj_weight.dim() == 2 && in_proj_weight.size(0) % 2 == 0, op,
                    ": argument 'in_proj_weight' must have shape (2E, M), got ", shape_str(in_proj_weight.sizes()));
  TORCH_CHECK_VALUE(conv_state.dim() == 3, op, ": argument 'conv_state' must have shape (B, E, K), got ",
                    shape_str(conv_state.sizes()));
  TORCH_CHECK_VALUE(A.dim() == 2, op, ": argument 'A' must have shape (E, N), got ", shape_str(A.sizes()));
  TORCH_CHECK_VALUE(x_proj_weight.dim() == 2, op, ": argument 'x_proj_weight' must have shape (R + 2N, E), got ",
                    shape_str(x_proj_weight.sizes()));
  const int64_t B = x.size(0), M = x.size(1), E = in_proj_weight.size(0) / 2, K = conv_state.size(2);
  const int64_t N = A.size(1), R = x_proj_weight.size(0) - 2 * N;
  TORCH_CHECK_VALUE(E >= 1 && K >= 1 && N >= 1 && R >= 1, op,
                    ": need E, K, N and R = x_proj_weight.shape[0] - 2N >= 1, "
                    "got E = ",
                    E, ", K = ", K, ", N = ", N, ", R = ", R);
  auto check = [&](const at::Tensor& t, const char* name, std::initializer_list<int64_t> shape, const char* shape_names,
                   at::ScalarType dtype) {
    TORCH_CHECK_VALUE(t.device() == x.device(), op, ": argument '", name, "' is on ", t.device(), " but 'x' is on ",
                      x.device(), "; all tensors must be on the same device");
    TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), op, ": argument '", name, "' must have shape ", shape_names,
                      " = ", shape_str(shape), ", got ", shape_str(t.sizes()));
    TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": argument '", name, "' must be ", dtype, ", got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.is_contiguous(), op, ": argument '", name, "' must be contiguous");
  };
  check(norm_weight, "norm_weight", {M}, "(M,)", S);
  check(in_proj_weight, "in_proj_weight", {2 * E, M}, "(2E, M)", W);
  check(conv_state, "conv_state", {B, E, K}, "(B, E, K)", S);
  check(conv_weight, "conv_weight", {E, K}, "(E, K)", S);
  if (conv_bias) check(*conv_bias, "conv_bias", {E}, "(E,)", S);
  check(x_proj_weight, "x_proj_weight", {R + 2 * N, E}, "(R + 2N, E)", W);
  check(dt_proj_weight, "dt_proj_weight", {E, R}, "(E, R)", W);
  check(dt_proj_bias, "dt_proj_bias", {E}, "(E,)", S);
  check(A, "A", {E, N}, "(E, N)", S);
  check(D, "D", {E}, "(E,)", S);
  check(ssm_state, "ssm_state", {B, E, N}, "(B, E, N)", S);
  check(out_proj_weight, "out_proj_weight", {M, E}, "(M, E)", W);

  MambaBlockStepPrepared prep;
  MambaBlockStepParams& p = prep.params;
  p.dtype = to_kernel_dtype(S);
  p.weight_dtype = to_kernel_dtype(W);
  p.batch = B;
  p.d_model = M;
  p.d_inner = E;
  p.d_conv = K;
  p.dt_rank = R;
  p.dstate = N;
  p.norm_eps = norm_eps;
  p.x = x.const_data_ptr();
  p.norm_weight = norm_weight.const_data_ptr();
  p.in_proj = in_proj_weight.const_data_ptr();
  p.conv_state = conv_state.mutable_data_ptr();
  p.conv_weight = conv_weight.const_data_ptr();
  p.conv_bias = conv_bias ? conv_bias->const_data_ptr() : nullptr;
  p.x_proj = x_proj_weight.const_data_ptr();
  p.dt_proj = dt_proj_weight.const_data_ptr();
  p.dt_bias = dt_proj_bias.const_data_ptr();
  p.A = A.const_data_ptr();
  p.Dvec = D.const_data_ptr();
  p.ssm_state = ssm_state.mutable_data_ptr();
  p.out_proj = out_proj_weight.const_data_ptr();
  if (dt_scale) {
    TORCH_CHECK_VALUE(dt_scale->device() == x.device() && dt_scale->sizes() == at::IntArrayRef{B}, op,
                      ": argument 'dt_scale' must have shape (B,) = (", B, ",) on ", x.device(), ", got ",
                      shape_str(dt_scale->sizes()), " on ", dt_scale->device());
    at::Tensor s = param(op, *dt_scale, "dt_scale", S);
    const auto* v = static_cast<const char*>(s.const_data_ptr());
    for (int64_t b = 0; b < B; ++b) {
      const double scale =
          S == at::kDouble ? reinterpret_cast<const double*>(v)[b] : reinterpret_cast<const float*>(v)[b];
      TORCH_CHECK_VALUE(scale >= 0 && std::isfinite(scale), op,
                        ": argument 'dt_scale' must be finite and non-negative, got ", scale, " at ", b);
    }
    prep.keep_alive.push_back(s);
    p.dt_scale = s.const_data_ptr();
  }
  at::Tensor workspace = at::empty({p.workspace_elements()}, x.options());
  prep.keep_alive.push_back(workspace);
  p.workspace = workspace.mutable_data_ptr();
  prep.out = at::empty({B, M}, x.options());
  p.out = prep.out.mutable_data_ptr();
  return prep;
}

}  // namespace hamburg_mamba
