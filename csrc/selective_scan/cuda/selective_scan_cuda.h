// CUDA launchers of the selective-scan ops, torch-free: they take the plain params structs of
// ../selective_scan.h (pointers already on one device, checked and packed by ../selective_scan_host.cpp)
// and enqueue the kernels on `stream`. Each returns the launch status (cudaGetLastError) for the
// binding to turn into an error message.
#pragma once

#include <cuda_runtime_api.h>

#include "selective_scan/selective_scan.h"

namespace hamburg_mamba::gpu {

// Forward: fills out, last_state and, when p.checkpoints is set, the checkpoints.
cudaError_t selective_scan_fwd_cuda(const SelectiveScanParams& p, cudaStream_t stream);

// Backward: writes du, ddelta, dz; accumulates (atomically) into the zero-initialised dA, dB, dC, dD,
// ddelta_bias; writes dinitial_state.
cudaError_t selective_scan_bwd_cuda(const SelectiveScanBwdParams& p, cudaStream_t stream);

}  // namespace hamburg_mamba::gpu
