// Host-side checks and parameter packing for the causal conv1d ops (shared by every backend).
#include "causal_conv1d_host.h"

#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {
namespace {

// The data tensor `x` (named `ref_name`): a floating dtype (float64 on the CPU only), shape (B, D, L), non-empty.
void check_x(const char* op, const at::Tensor& x) {
  TORCH_CHECK_TYPE(is_supported_input_dtype(x.scalar_type()), op,
                   ": argument 'x' must be float32, float16, bfloat16 or float64, got ", x.scalar_type());
  TORCH_CHECK_TYPE(x.scalar_type() != at::kDouble || x.is_cpu(), op,
                   ": float64 inputs are supported on the CPU only (got 'x' on ", x.device(), ")");
  TORCH_CHECK_VALUE(x.dim() == 3 && x.numel() > 0, op,
                    ": argument 'x' must have non-empty shape (batch, dim, seqlen), got ", shape_str(x.sizes()));
}

void check_device(const char* op, const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": argument '", name, "' is on ", t.device(), " but 'x' is on ",
                    x.device(), "; all tensors must be on the same device");
}

void check_shape(const char* op, const at::Tensor& t, const char* name, std::initializer_list<int64_t> shape,
                 const char* shape_names) {
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), op, ": argument '", name, "' must have shape ", shape_names,
                    " = ", shape_str(shape), ", got ", shape_str(t.sizes()));
}

// A tensor in x's dtype and shape `shape`, returned with contiguous steps (all of it contiguous when `contiguous`).
at::Tensor like_x(const char* op, const at::Tensor& t, const char* name, const at::Tensor& x,
                  std::initializer_list<int64_t> shape, const char* shape_names, bool contiguous) {
  check_device(op, t, name, x);
  check_shape(op, t, name, shape, shape_names);
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), op, ": argument '", name, "' must have the dtype of 'x' (",
                   x.scalar_type(), "), got ", t.scalar_type());
  if (contiguous) return t.contiguous();
  return t.stride(-1) == 1 ? t : t.contiguous();
}

// An int32 index tensor of shape `shape`, contiguous.
at::Tensor int32_index(const char* op, const at::Tensor& t, const char* name, const at::Tensor& x,
                       std::initializer_list<int64_t> shape, const char* shape_names) {
  check_device(op, t, name, x);
  check_shape(op, t, name, shape, shape_names);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, op, ": argument '", name, "' must be int32, got ", t.scalar_type());
  return t.contiguous();
}

struct ConvDims {
  int64_t batch, dim, seqlen, width;
  at::ScalarType compute;
};

// weight (D, W) with W in [kConvMinWidth, kConvMaxWidth] and bias (D,) in the weight's dtype; both returned
// converted to the compute type.
ConvDims check_weight(const char* op, const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                      at::Tensor& weight_c, at::Tensor& bias_c) {
  ConvDims d{x.size(0), x.size(1), x.size(2), 0, x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat};
  check_device(op, weight, "weight", x);
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == d.dim, op,
                    ": argument 'weight' must have shape (dim, width)", " with dim = ", d.dim, ", got ",
                    shape_str(weight.sizes()));
  d.width = weight.size(1);
  TORCH_CHECK_VALUE(d.width >= kConvMinWidth && d.width <= kConvMaxWidth, op,
                    ": kernel width = weight.shape[1] must be in [", kConvMinWidth, ", ", kConvMaxWidth, "], got ",
                    d.width);
  const at::ScalarType wt = weight.scalar_type();
  TORCH_CHECK_TYPE(is_supported_input_dtype(wt) && (wt != at::kDouble || weight.is_cpu()), op,
                   ": argument 'weight' must be float32, float16 or bfloat16", weight.is_cpu() ? " (or float64)" : "",
                   ", got ", wt);
  weight_c = weight.to(d.compute).contiguous();
  if (bias) {
    check_device(op, *bias, "bias", x);
    check_shape(op, *bias, "bias", {d.dim}, "(dim,)");
    TORCH_CHECK_TYPE(bias->scalar_type() == wt, op, ": argument 'bias' must have the dtype of 'weight' (", wt,
                     "), got ", bias->scalar_type());
    bias_c = bias->to(d.compute).contiguous();
  }
  return d;
}

// Fills the params shared by the forward and the backward; returns the tensors to keep alive.
std::vector<at::Tensor> fill_conv_params(const char* op, CausalConv1dParams& p, ConvDims& d, const at::Tensor& x,
                                         const at::Tensor& weight, const OptTensor& bias, const OptTensor& seq_idx,
                                         const OptTensor& initial_states, bool silu) {
  check_x(op, x);
  at::Tensor weight_c, bias_c, seq_c, init_c;
  d = check_weight(op, x, weight, bias, weight_c, bias_c);
  TORCH_CHECK_VALUE(!(seq_idx && initial_states), op,
                    ": arguments 'seq_idx' and 'initial_states' cannot both be given (an initial state belongs to "
                    "one sequence; with packed sequences each starts from zeros)");
  if (seq_idx) seq_c = int32_index(op, *seq_idx, "seq_idx", x, {d.batch, d.seqlen}, "(batch, seqlen)");
  if (initial_states) {
    init_c = like_x(op, *initial_states, "initial_states", x, {d.batch, d.dim, d.width - 1}, "(batch, dim, width - 1)",
                    true);
  }
  at::Tensor x_c = x.stride(2) == 1 ? x : x.contiguous();
  p.dtype = to_kernel_dtype(x.scalar_type());
  p.batch = d.batch;
  p.dim = d.dim;
  p.seqlen = d.seqlen;
  p.width = d.width;
  p.silu = silu;
  p.x_batch_stride = x_c.stride(0);
  p.x_c_stride = x_c.stride(1);
  p.x = x_c.const_data_ptr();
  p.weight = weight_c.const_data_ptr();
  p.bias = bias_c.defined() ? bias_c.const_data_ptr() : nullptr;
  p.seq_idx = seq_c.defined() ? seq_c.const_data_ptr<int32_t>() : nullptr;
  p.initial_states = init_c.defined() ? init_c.const_data_ptr() : nullptr;
  return {x_c, weight_c, bias_c, seq_c, init_c};
}

}  // namespace

ConvFwdPrepared prepare_conv_fwd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                 const OptTensor& seq_idx, const OptTensor& initial_states, bool return_final_states,
                                 bool silu) {
  const char* op = "hamburg_mamba.causal_conv1d_fwd";
  ConvFwdPrepared prep;
  ConvDims d{};
  prep.keep_alive = fill_conv_params(op, prep.params, d, x, weight, bias, seq_idx, initial_states, silu);
  TORCH_CHECK_VALUE(!(seq_idx && return_final_states), op,
                    ": 'return_final_states' cannot be used with 'seq_idx' (the final state of packed sequences is "
                    "the last sequence's only)");
  prep.out = at::empty({d.batch, d.dim, d.seqlen}, x.options());
  prep.final_states =
      return_final_states ? at::empty({d.batch, d.dim, d.width - 1}, x.options()) : at::empty({0}, x.options());
  CausalConv1dParams& p = prep.params;
  p.out_batch_stride = prep.out.stride(0);
  p.out_c_stride = prep.out.stride(1);
  p.out = prep.out.mutable_data_ptr();
  p.final_states = return_final_states ? prep.final_states.mutable_data_ptr() : nullptr;
  return prep;
}

ConvBwdPrepared prepare_conv_bwd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                 const at::Tensor& dout, const OptTensor& seq_idx, const OptTensor& initial_states,
                                 const OptTensor& dfinal_states, bool silu) {
  const char* op = "hamburg_mamba.causal_conv1d_bwd";
  ConvBwdPrepared prep;
  ConvDims d{};
  CausalConv1dBwdParams& p = prep.params;
  prep.keep_alive = fill_conv_params(op, p, d, x, weight, bias, seq_idx, initial_states, silu);
  prep.weight_dtype = weight.scalar_type();
  at::Tensor dout_c = like_x(op, dout, "dout", x, {d.batch, d.dim, d.seqlen}, "(batch, dim, seqlen)", false);
  prep.keep_alive.push_back(dout_c);
  p.dout = dout_c.const_data_ptr();
  p.dout_batch_stride = dout_c.stride(0);
  p.dout_c_stride = dout_c.stride(1);
  if (dfinal_states) {
    TORCH_CHECK_VALUE(!seq_idx, op, ": 'dfinal_states' cannot be used with 'seq_idx'");
    at::Tensor dfin =
        like_x(op, *dfinal_states, "dfinal_states", x, {d.batch, d.dim, d.width - 1}, "(batch, dim, width - 1)", true);
    prep.keep_alive.push_back(dfin);
    p.dfinal_states = dfin.const_data_ptr();
  }
  prep.dx = at::empty({d.batch, d.dim, d.seqlen}, x.options());
  p.dx = prep.dx.mutable_data_ptr();
  p.dx_batch_stride = prep.dx.stride(0);
  p.dx_c_stride = prep.dx.stride(1);
  prep.dweight = at::empty({d.dim, d.width}, x.options().dtype(d.compute));
  p.dweight = prep.dweight.mutable_data_ptr();
  if (bias) {
    prep.dbias = at::empty({d.dim}, x.options().dtype(d.compute));
    p.dbias = prep.dbias.mutable_data_ptr();
  }
  if (initial_states) {
    prep.dinitial_states = at::empty({d.batch, d.dim, d.width - 1}, x.options());
    p.dinitial_states = prep.dinitial_states.mutable_data_ptr();
  }
  return prep;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finalize_conv_bwd(const ConvBwdPrepared& prep) {
  const at::TensorOptions wopt = prep.dweight.options().dtype(prep.weight_dtype);
  return {prep.dx, prep.dweight.to(prep.weight_dtype),
          prep.dbias.defined() ? prep.dbias.to(prep.weight_dtype) : at::empty({0}, wopt),
          prep.dinitial_states.defined() ? prep.dinitial_states : at::empty({0}, prep.dx.options())};
}

ConvUpdatePrepared prepare_conv_update(const at::Tensor& x, const at::Tensor& conv_state, const at::Tensor& weight,
                                       const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                                       const OptTensor& conv_state_indices) {
  const char* op = "hamburg_mamba.causal_conv1d_update";
  check_x(op, x);
  at::Tensor weight_c, bias_c;
  const ConvDims d = check_weight(op, x, weight, bias, weight_c, bias_c);
  check_device(op, conv_state, "conv_state", x);
  TORCH_CHECK_VALUE(conv_state.dim() == 3 && conv_state.size(1) == d.dim && conv_state.size(2) >= d.width - 1, op,
                    ": argument 'conv_state' must have shape (batch, dim, state_len) with dim = ", d.dim,
                    " and state_len >= width - 1 = ", d.width - 1, ", got ", shape_str(conv_state.sizes()));
  TORCH_CHECK_TYPE(conv_state.scalar_type() == x.scalar_type(), op,
                   ": argument 'conv_state' must have the dtype of 'x' (", x.scalar_type(), "), got ",
                   conv_state.scalar_type());
  const int64_t cache_batch = conv_state.size(0), state_len = conv_state.size(2);

  ConvUpdatePrepared prep;
  CausalConv1dUpdateParams& p = prep.params;
  if (conv_state_indices) {
    at::Tensor idx = int32_index(op, *conv_state_indices, "conv_state_indices", x, {d.batch}, "(batch,)");
    // A device-side check would cost a synchronisation on CUDA (where the kernel writes NaN to an
    // out-of-range row's output instead), so the range and uniqueness checks run on the CPU only.
    if (idx.is_cpu()) {
      std::vector<bool> used(cache_batch, false);
      const int32_t* v = idx.const_data_ptr<int32_t>();
      for (int64_t b = 0; b < d.batch; ++b) {
        TORCH_CHECK_VALUE(v[b] < cache_batch, op, ": argument 'conv_state_indices' holds ", v[b], " at ", b,
                          ", beyond the ", cache_batch, " rows of 'conv_state' (negative marks a padding row)");
        if (v[b] < 0) continue;
        TORCH_CHECK_VALUE(!used[v[b]], op, ": argument 'conv_state_indices' names row ", v[b],
                          " twice; each batch row needs its own state row");
        used[v[b]] = true;
      }
    }
    prep.keep_alive.push_back(idx);
    p.conv_state_indices = idx.const_data_ptr<int32_t>();
  } else {
    TORCH_CHECK_VALUE(cache_batch == d.batch, op, ": argument 'conv_state' must have ", d.batch,
                      " rows (the batch of 'x') without 'conv_state_indices', got ", shape_str(conv_state.sizes()));
  }
  if (cache_seqlens) {
    at::Tensor lens = int32_index(op, *cache_seqlens, "cache_seqlens", x, {d.batch}, "(batch,)");
    prep.keep_alive.push_back(lens);
    p.cache_seqlens = lens.const_data_ptr<int32_t>();
  }
  at::Tensor x_c = x.contiguous();
  prep.keep_alive.insert(prep.keep_alive.end(), {x_c, weight_c, bias_c});
  prep.state_work = conv_state.stride(2) == 1 ? conv_state : conv_state.contiguous();
  prep.out = at::empty({d.batch, d.dim, d.seqlen}, x.options());

  p.dtype = to_kernel_dtype(x.scalar_type());
  p.batch = d.batch;
  p.dim = d.dim;
  p.seqlen = d.seqlen;
  p.width = d.width;
  p.state_len = state_len;
  p.cache_batch = cache_batch;
  p.silu = silu;
  p.state_batch_stride = prep.state_work.stride(0);
  p.state_c_stride = prep.state_work.stride(1);
  p.x = x_c.const_data_ptr();
  p.conv_state = prep.state_work.mutable_data_ptr();
  p.weight = weight_c.const_data_ptr();
  p.bias = bias_c.defined() ? bias_c.const_data_ptr() : nullptr;
  p.out = prep.out.mutable_data_ptr();
  return prep;
}

void finalize_conv_update(const at::Tensor& conv_state, const ConvUpdatePrepared& prep) {
  if (!prep.state_work.is_same(conv_state)) conv_state.copy_(prep.state_work);
}

}  // namespace hamburg_mamba
