// Host-side checks and parameter packing of mamba_block_step (CPU only).
#include "block_step_host.h"

#include <cmath>

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {

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
