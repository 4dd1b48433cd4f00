// Host-side helpers shared by the ops' argument checks and parameter packing (the *_host.cpp of each op,
// used by every backend's torch binding). Every check names the op, the argument and what was expected.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

#include "common/common.h"

namespace hamburg_mamba {

using OptTensor = std::optional<at::Tensor>;

// "(2, 3)", "(4,)": a shape as Python prints it.
std::string shape_str(at::IntArrayRef sizes);

// float32, float16, bfloat16 or float64.
bool is_supported_input_dtype(at::ScalarType t);

// The kernels' tag of a supported input dtype.
ScalarType to_kernel_dtype(at::ScalarType t);

// Checks a tensor argument's device (that of `ref`, the argument 'u') and exact shape.
void check_tensor(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                  std::initializer_list<int64_t> shape, const char* shape_names);

// A tensor in the input dtype: the dtype of `ref` (named `ref_name`); returned with its last dimension
// contiguous.
at::Tensor input_like(const char* op, const at::Tensor& t, const char* name, const at::Tensor& ref,
                      const char* ref_name);

// A parameter in the compute type (float32, or float64 for float64 inputs): float32 accepted everywhere,
// float64 on the CPU; converted and made contiguous.
at::Tensor param(const char* op, const at::Tensor& t, const char* name, at::ScalarType compute);

// Elapsed-time scales: every entry finite and >= 0.
bool valid_elapsed(const at::Tensor& scale);

}  // namespace hamburg_mamba
