// Selective state update: one step of the selective scan's recurrence for streaming inference (as mamba_ssm's
// selective_state_update), the plain parameter struct shared by every backend. Torch-free, like
// ../selective_scan/selective_scan.h, whose glossary and constants (kMaxStateSize) it shares.
#pragma once

#include <cstdint>

#include "selective_scan/selective_scan.h"

namespace hamburg_mamba {

// One step of the recurrence for streaming inference; the state is updated in place.
//   state (B, D, N) compute type, contiguous; x, dt, z, out (B, D) input dtype, contiguous;
//   Bmat, Cmat (B, G, N) input dtype, contiguous; A (D, N); Dvec, dt_bias (D,); dt_scale (B,) compute type.
struct StateUpdateParams {
  ScalarType dtype = ScalarType::kFloat32;
  int64_t batch = 0, dim = 0, dstate = 0, n_groups = 1;
  bool dt_softplus = false;
  void* state = nullptr;
  const void* x = nullptr;
  const void* dt = nullptr;
  const void* Bmat = nullptr;
  const void* Cmat = nullptr;
  const void* z = nullptr;
  const void* A = nullptr;
  const void* Dvec = nullptr;
  const void* dt_bias = nullptr;
  const void* dt_scale = nullptr;
  void* out = nullptr;

  int64_t dim_per_group() const { return dim / n_groups; }
};

}  // namespace hamburg_mamba
