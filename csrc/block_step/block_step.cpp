// Schema of mamba_block_step, a fragment of the hamburg_mamba library (declared in ../common/module.cpp), CPU
// only: one event of a whole Mamba block, for streaming (see block_step.h). Its kernel is registered in
// cpu/block_step_cpu_ops.cpp, its fake kernel in Python (hamburg_mamba/ops/block_step.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hamburg_mamba, m) {
  m.def(
      "mamba_block_step(Tensor x, Tensor norm_weight, float norm_eps, Tensor in_proj_weight, "
      "Tensor(a!) conv_state, Tensor conv_weight, Tensor? conv_bias, Tensor x_proj_weight, Tensor dt_proj_weight, "
      "Tensor dt_proj_bias, Tensor A, Tensor D, Tensor(b!) ssm_state, Tensor? dt_scale, Tensor out_proj_weight) "
      "-> Tensor");
}
