// Schemas of the hamburg_mamba ops, declared once; each backend registers its kernels in its own file
// (cpu/selective_scan_cpu_ops.cpp, cuda/selective_scan_cuda_ops.cpp). Autograd and fake (meta) kernels
// are registered in Python (hamburg_mamba/ops/selective_scan.py).
#include <Python.h>

#include <string>

#include <torch/library.h>

#include "cpu/selective_scan_cpu.h"

namespace {

std::string cpu_isa() { return hamburg_mamba::cpu::cpu_isa(); }

}  // namespace

TORCH_LIBRARY(hamburg_mamba, m) {
  m.def(
      "selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor? initial_state, Tensor? dt_scale, bool delta_softplus, bool save_checkpoints) "
      "-> (Tensor out, Tensor last_state, Tensor checkpoints)");
  m.def(
      "selective_scan_bwd(Tensor dout, Tensor? dlast_state, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, "
      "Tensor? D, Tensor? z, Tensor? delta_bias, Tensor? initial_state, Tensor? dt_scale, Tensor checkpoints, "
      "bool delta_softplus) -> (Tensor du, Tensor ddelta, Tensor dA, Tensor dB, Tensor dC, Tensor dD, Tensor dz, "
      "Tensor ddelta_bias, Tensor dinitial_state)");
  m.def(
      "selective_state_update(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? dt_bias, Tensor? dt_scale, bool dt_softplus) -> Tensor");
  // CPU only: one event of a whole Mamba block, for streaming (see MambaBlockStepParams).
  m.def(
      "mamba_block_step(Tensor x, Tensor norm_weight, float norm_eps, Tensor in_proj_weight, "
      "Tensor(a!) conv_state, Tensor conv_weight, Tensor? conv_bias, Tensor x_proj_weight, Tensor dt_proj_weight, "
      "Tensor dt_proj_bias, Tensor A, Tensor D, Tensor(b!) ssm_state, Tensor? dt_scale, Tensor out_proj_weight) "
      "-> Tensor");
  m.def("cpu_isa() -> str", &cpu_isa);
}

// Loading the module is all Python needs: the registrations above run as static initialisers.
// (Built with the limited API, so no pybind11 and no libtorch_python.)
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT,
                               "_C",
                               "hamburg_mamba compiled ops (torch.ops.hamburg_mamba)",
                               -1,
                               nullptr,
                               nullptr,
                               nullptr,
                               nullptr,
                               nullptr};
  return PyModule_Create(&module);
}
