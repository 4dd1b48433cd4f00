// Schema of selective_state_update, a fragment of the hamburg_mamba library (declared in
// ../common/module.cpp). Each backend registers its kernel in its own file (cpu/state_update_cpu_ops.cpp,
// cuda/state_update_cuda_ops.cpp); the fake kernel is registered in Python (hamburg_mamba/ops/selective_scan.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hamburg_mamba, m) {
  m.def(
      "selective_state_update(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? dt_bias, Tensor? dt_scale, bool dt_softplus) -> Tensor");
}
