// The extension module hamburg_mamba._C and its torch library `hamburg_mamba`, declared once here with the one
// op every build has, cpu_isa. Each op folder adds its schemas as a fragment (csrc/<op>/<op>.cpp) and each
// backend registers its kernels in its own file (csrc/<op>/cpu/*_ops.cpp, csrc/<op>/cuda/*_ops.cpp). Autograd
// and fake (meta) kernels are registered in Python (hamburg_mamba/ops/).
#include <Python.h>

#include <string>

#include <torch/library.h>

#include "common/cpu/isa.h"

namespace {

std::string cpu_isa() { return hamburg_mamba::cpu::cpu_isa(); }

}  // namespace

TORCH_LIBRARY(hamburg_mamba, m) { m.def("cpu_isa() -> str", &cpu_isa); }

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
