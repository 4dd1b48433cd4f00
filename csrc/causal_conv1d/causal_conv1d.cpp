// Schemas of the causal conv1d ops, a fragment of the hamburg_mamba library (declared in
// ../selective_scan/selective_scan.cpp). Each backend registers its kernels in its own file
// (cpu/causal_conv1d_cpu_ops.cpp, cuda/causal_conv1d_cuda_ops.cpp); fake kernels and autograd are
// registered in Python (hamburg_mamba/ops/causal_conv1d.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(hamburg_mamba, m) {
  m.def(
      "causal_conv1d_fwd(Tensor x, Tensor weight, Tensor? bias, Tensor? seq_idx, Tensor? initial_states, "
      "bool return_final_states, bool silu) -> (Tensor out, Tensor final_states)");
  m.def(
      "causal_conv1d_bwd(Tensor x, Tensor weight, Tensor? bias, Tensor dout, Tensor? seq_idx, "
      "Tensor? initial_states, Tensor? dfinal_states, bool silu) "
      "-> (Tensor dx, Tensor dweight, Tensor dbias, Tensor dinitial_states)");
  m.def(
      "causal_conv1d_update(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, bool silu, "
      "Tensor? cache_seqlens, Tensor? conv_state_indices) -> Tensor");
}
