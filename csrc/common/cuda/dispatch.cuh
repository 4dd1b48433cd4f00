// The dtype dispatch of every CUDA launcher, torch-free: maps the ops' ScalarType onto the kernels' storage
// type, as PyTorch's AT_DISPATCH_* and causal-conv1d's DISPATCH_ITYPE_* macros do.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "common/common.h"

namespace hamburg_mamba::gpu {

// A type as a value, for a generic lambda: [&](auto type) { using T = typename decltype(type)::type; ... }.
template <typename T>
struct TypeTag {
  using type = T;
};

// Calls launch(TypeTag<T>{}) with T the storage type of `dtype` (float, __half or __nv_bfloat16) and returns the
// launch status (cudaGetLastError). float64 has no CUDA kernel: the host checks reject it before any launch.
template <typename Launch>
cudaError_t dispatch_dtype(ScalarType dtype, const Launch& launch) {
  switch (dtype) {
    case ScalarType::kFloat32: launch(TypeTag<float>{}); break;
    case ScalarType::kFloat16: launch(TypeTag<__half>{}); break;
    case ScalarType::kBFloat16: launch(TypeTag<__nv_bfloat16>{}); break;
    case ScalarType::kFloat64: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace hamburg_mamba::gpu
