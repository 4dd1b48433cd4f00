// CPU causal conv1d: torch-free entry points over raw pointers (see ../causal_conv1d.h for the layouts).
// The kernels are compiled for AVX2+FMA+F16C and for the x86-64 baseline, picked at run time by the shared ISA
// detection (../../common/cpu/isa.h; HAMBURG_MAMBA_CPU_ISA=baseline caps it). Parallelism is injected as in
// the scan (../../common/cpu/parallel.h): at::parallel_for from the torch binding, OpenMP in the C++ tests.
#pragma once

#include "causal_conv1d/causal_conv1d.h"
#include "common/cpu/parallel.h"

namespace hamburg_mamba::cpu {

void causal_conv1d_fwd(const CausalConv1dParams& p, const ParallelFor& parallel_for);
// Writes dx, dweight, dbias (when p.dbias) and dinitial_states (when p.dinitial_states).
void causal_conv1d_bwd(const CausalConv1dBwdParams& p, const ParallelFor& parallel_for);
void causal_conv1d_update(const CausalConv1dUpdateParams& p, const ParallelFor& parallel_for);

}  // namespace hamburg_mamba::cpu
