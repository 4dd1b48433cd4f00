// Helpers of the CUDA torch bindings (csrc/<op>/cuda/*_ops.cpp): the launch status as an error, and the stream
// to launch on. c10/cuda headers only: ATen/cuda/CUDAContext.h needs cusparse headers the minimal toolkit lacks.
#pragma once

#include <cuda_runtime_api.h>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

namespace hamburg_mamba {

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// The current stream of the tensor's device.
inline cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

}  // namespace hamburg_mamba
