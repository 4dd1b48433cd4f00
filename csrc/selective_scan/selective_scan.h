// Selective scan (Mamba S6): the plain parameter structs shared by every backend.
//
// Glossary: B batch, D channels, L steps, N state size, G groups sharing (B, C), Dg = D / G.
// This header is torch-free on purpose: the CPU kernels, the CUDA kernels, the C++ tests and the
// C++ benches all include it without paying for torch's headers.
//
// Layouts (element strides; the step dimension L is always contiguous, stride 1):
//   u, delta, z, out, dout, du, ddelta, dz : (B, D, L)    input dtype T
//   Bmat, Cmat                             : (B, G, N, L) input dtype T
//   A                                      : (D, N)       compute type, contiguous
//   Dvec, delta_bias                       : (D,)         compute type, contiguous
//   dt_scale                               : (B, L)       compute type, contiguous
//   initial_state, last_state              : (B, D, N)    compute type, contiguous
//   checkpoints                            : (B, D, n_chunks, N) compute type, contiguous; entry k is the
//                                            state *before* step k * kCheckpointInterval.
// The compute type is float for float32/float16/bfloat16 inputs and double for float64 inputs.
#pragma once

#include <cstdint>

namespace hamburg_mamba {

// Largest supported state size: bounds per-thread scratch on the CPU and shared memory on the GPU.
constexpr int64_t kMaxStateSize = 256;
// Steps between two saved states. Memory for the backward's checkpoints is O(B*D*N*L / 64) and the
// backward recomputes at most 64 steps of states per checkpoint.
constexpr int64_t kCheckpointInterval = 64;
// softplus(x) = x above this, as torch.nn.functional.softplus's default threshold.
constexpr double kSoftplusThreshold = 20.0;

inline int64_t num_checkpoints(int64_t seqlen) { return (seqlen + kCheckpointInterval - 1) / kCheckpointInterval; }

enum class ScalarType { kFloat32, kFloat16, kBFloat16, kFloat64 };

struct SelectiveScanParams {
  ScalarType dtype = ScalarType::kFloat32;
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0, n_groups = 1;
  bool delta_softplus = false;

  int64_t u_batch_stride = 0, u_d_stride = 0;
  int64_t delta_batch_stride = 0, delta_d_stride = 0;
  int64_t B_batch_stride = 0, B_group_stride = 0, B_n_stride = 0;
  int64_t C_batch_stride = 0, C_group_stride = 0, C_n_stride = 0;
  int64_t z_batch_stride = 0, z_d_stride = 0;
  int64_t out_batch_stride = 0, out_d_stride = 0;

  // Inputs in the input dtype.
  const void* u = nullptr;
  const void* delta = nullptr;
  const void* Bmat = nullptr;
  const void* Cmat = nullptr;
  const void* z = nullptr;  // optional
  // Inputs in the compute type.
  const void* A = nullptr;
  const void* Dvec = nullptr;           // optional
  const void* delta_bias = nullptr;     // optional
  const void* initial_state = nullptr;  // optional
  const void* dt_scale = nullptr;       // optional
  // Outputs.
  void* out = nullptr;          // input dtype
  void* last_state = nullptr;   // compute type
  void* checkpoints = nullptr;  // compute type; nullptr when the backward will not run

  int64_t dim_per_group() const { return dim / n_groups; }
};

struct SelectiveScanBwdParams : SelectiveScanParams {
  int64_t dout_batch_stride = 0, dout_d_stride = 0;
  const void* dout = nullptr;         // input dtype
  const void* dlast_state = nullptr;  // compute type (B, D, N), optional

  // Gradients. du, ddelta, dz: input dtype, contiguous (B, D, L). All others: compute type, contiguous,
  // zero-initialised by the caller where a backend accumulates into them.
  void* du = nullptr;
  void* ddelta = nullptr;
  void* dz = nullptr;              // when z is given
  void* dA = nullptr;              // (D, N)
  void* dB = nullptr;              // (B, G, N, L)
  void* dC = nullptr;              // (B, G, N, L)
  void* dD = nullptr;              // (D,) when Dvec is given
  void* ddelta_bias = nullptr;     // (D,) when delta_bias is given
  void* dinitial_state = nullptr;  // (B, D, N) when initial_state is given
};

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
