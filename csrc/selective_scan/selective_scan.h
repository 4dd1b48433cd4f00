// Selective scan (Mamba S6): the plain parameter structs of the forward and the backward, shared by every backend.
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

#include "common/common.h"

namespace hamburg_mamba {

// Largest supported state size: bounds per-thread scratch on the CPU and shared memory on the GPU.
constexpr int64_t kMaxStateSize = 256;
// Steps between two saved states. Memory for the backward's checkpoints is O(B*D*N*L / 64) and the
// backward recomputes at most 64 steps of states per checkpoint.
constexpr int64_t kCheckpointInterval = 64;

inline int64_t num_checkpoints(int64_t seqlen) { return (seqlen + kCheckpointInterval - 1) / kCheckpointInterval; }

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

}  // namespace hamburg_mamba
