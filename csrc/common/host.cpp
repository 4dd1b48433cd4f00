// Host-side helpers shared by the ops' argument checks (see host.h).
#include "host.h"

#include <sstream>

#include <ATen/TensorOperators.h>
#include <ATen/ops/isfinite.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {

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

void check_tensor(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                  std::initializer_list<int64_t> shape, const char* shape_names) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(), " but 'u' is on ",
                    ref.device(), "; all tensors must be on the same device");
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), op, ": argument '", name, "' must have shape ", shape_names,
                    " = ", shape_str(shape), ", got ", shape_str(t.sizes()));
}

at::Tensor input_like(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                      const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' must have the dtype of '",
                   ref_name, "' (", ref.scalar_type(), "), got ", t.scalar_type());
  return t.stride(-1) == 1 ? t : t.contiguous();
}

at::Tensor param(const char* op, const at::Tensor& t, const char* name, at::ScalarType compute) {
  const bool ok = t.scalar_type() == at::kFloat || (t.scalar_type() == at::kDouble && t.is_cpu());
  TORCH_CHECK_TYPE(ok, op, ": argument '", name, "' must be float32", t.is_cpu() ? " or float64" : "", ", got ",
                   t.scalar_type());
  return t.to(compute).contiguous();
}

// `x < 0` alone lets NaN through (every comparison with NaN is false), and a NaN or infinite scale turns the whole
// scan into NaN.
bool valid_elapsed(const at::Tensor& scale) { return ((scale >= 0) & at::isfinite(scale)).all().item<bool>(); }

}  // namespace hamburg_mamba
