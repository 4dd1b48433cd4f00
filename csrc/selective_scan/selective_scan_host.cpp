// Host-side checks and parameter packing of the selective-scan ops (shared by every backend).
#include "selective_scan_host.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {
namespace {

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

}  // namespace hamburg_mamba
