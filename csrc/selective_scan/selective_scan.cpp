// Schemas of the selective-scan ops, a fragment of the hamburg_mamba library (declared in
// ../common/module.cpp). Each backend registers its kernels in its own file (cpu/selective_scan_cpu_ops.cpp,
// cuda/selective_scan_cuda_ops.cpp); autograd and fake kernels are registered in Python
// (hamburg_mamba/ops/selective_scan.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hamburg_mamba, m) {
  m.def(
      "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor? initial_state, Tensor? dt_scale, bool delta_softplus, bool save_checkpoints) "
      "-> (Tensor out, Tensor last_state, Tensor checkpoints)");
  m.def(
      "selective_scan_bwd(Tensor dout, Tensor? dlast_state, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, "
      "Tensor? D, Tensor? z, Tensor? delta_bias, Tensor? initial_state, Tensor? dt_scale, Tensor checkpoints, "
      "bool delta_softplus) -> (Tensor du, Tensor ddelta, Tensor dA, Tensor dB, Tensor dC, Tensor dD, Tensor dz, "
      "Tensor ddelta_bias, Tensor dinitial_state)");
}
