// CUDA launcher of selective_state_update, torch-free: it takes the plain params struct of ../state_update.h
// (pointers already on one device, checked and packed by ../state_update_host.cpp), enqueues the kernel on
// `stream` and returns the launch status (cudaGetLastError) for the binding to turn into an error message.
#pragma once

#include <cuda_runtime_api.h>

#include "state_update/state_update.h"

namespace hamburg_mamba::gpu {

// One streaming step, state updated in place.
cudaError_t selective_state_update_cuda(const StateUpdateParams& p, cudaStream_t stream);

}  // namespace hamburg_mamba::gpu
