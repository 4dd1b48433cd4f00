// The fused block step: the plain parameter struct of mamba_block_step (CPU only), torch-free.
#pragma once

#include <cstdint>

#include "common/common.h"

namespace hamburg_mamba {

// One event of a pre-norm residual Mamba block for streaming inference (CPU):
//   out = x + out_proj(mixer(rmsnorm(x))); the mixer is in_proj -> (xi, z), the causal depthwise conv over the
//   last K inputs -> SiLU -> xc, x_proj(xc) -> (dt_r, B, C), dt = dt_proj(dt_r), then one step of the scan with
//   step softplus(dt + dt_bias) * dt_scale, the D skip and the SiLU(z) gate (as selective_state_update).
// Glossary: M d_model, E d_inner, K d_conv, R dt_rank; S the compute type (float or double); W the weight
// type of the four projections (S, or float16 / bfloat16 with S = float).
//   x, out                    : (B, M)      S
//   norm_weight               : (M,)        S
//   in_proj                   : (2E, M)     W, row-major (out_features x in_features, as torch's Linear)
//   conv_state                : (B, E, K)   S, updated in place, oldest input first
//   conv_weight               : (E, K)      S;  conv_bias (E,) S, optional
//   x_proj                    : (R + 2N, E) W;  dt_proj (E, R) W;  dt_bias (E,) S
//   A                         : (E, N)      S;  Dvec (E,) S
//   ssm_state                 : (B, E, N)   S, updated in place
//   dt_scale                  : (B,)        S, optional
//   out_proj                  : (M, E)      W
//   workspace                 : mamba_block_step_workspace() elements of S
// Everything contiguous.
struct MambaBlockStepParams {
  ScalarType dtype = ScalarType::kFloat32;
  ScalarType weight_dtype = ScalarType::kFloat32;
  int64_t batch = 0, d_model = 0, d_inner = 0, d_conv = 0, dt_rank = 0, dstate = 0;
  double norm_eps = 0;
  const void* x = nullptr;
  const void* norm_weight = nullptr;
  const void* in_proj = nullptr;
  void* conv_state = nullptr;
  const void* conv_weight = nullptr;
  const void* conv_bias = nullptr;
  const void* x_proj = nullptr;
  const void* dt_proj = nullptr;
  const void* dt_bias = nullptr;
  const void* A = nullptr;
  const void* Dvec = nullptr;
  void* ssm_state = nullptr;
  const void* dt_scale = nullptr;
  const void* out_proj = nullptr;
  void* workspace = nullptr;
  void* out = nullptr;

  // Scratch: the normed input (B, M), xi, z, xc, dt, y (B, E) each, dt_r (B, R), B and C (B, N) each.
  int64_t workspace_elements() const { return batch * (d_model + 5 * d_inner + dt_rank + 2 * dstate); }
};

}  // namespace hamburg_mamba
