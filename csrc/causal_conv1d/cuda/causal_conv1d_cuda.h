// CUDA launchers of the causal conv1d ops, torch-free: they take the plain params structs of
// ../causal_conv1d.h (pointers on one device, checked and packed by ../causal_conv1d_host.cpp; float32,
// float16 or bfloat16 inputs, float32 weights) and enqueue the kernels on `stream`. Each returns the launch
// status (cudaGetLastError) for the binding to turn into an error message.
#pragma once

#include <cuda_runtime_api.h>

#include "causal_conv1d/causal_conv1d.h"

namespace hamburg_mamba::gpu {

// Fills out and, when p.final_states is set, the final states.
cudaError_t causal_conv1d_fwd_cuda(const CausalConv1dParams& p, cudaStream_t stream);

// Writes dx, dweight, dbias (when set) and dinitial_states (when set); dweight and dbias are summed over
// batch and steps per channel by one block in a fixed order (deterministic).
cudaError_t causal_conv1d_bwd_cuda(const CausalConv1dBwdParams& p, cudaStream_t stream);

// Streaming steps, conv_state updated in place.
cudaError_t causal_conv1d_update_cuda(const CausalConv1dUpdateParams& p, cudaStream_t stream);

}  // namespace hamburg_mamba::gpu
