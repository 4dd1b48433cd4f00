// Definitions every op of the extension shares, torch-free (the CPU kernels, the CUDA kernels, the C++ tests
// and benches include them without torch's headers): the dtype tag of the parameter structs and softplus'
// threshold.
#pragma once

namespace hamburg_mamba {

// The input dtype of an op's parameter struct; the compute type is float, or double for kFloat64.
enum class ScalarType { kFloat32, kFloat16, kBFloat16, kFloat64 };

// softplus(x) = x above this, as torch.nn.functional.softplus's default threshold.
constexpr double kSoftplusThreshold = 20.0;

}  // namespace hamburg_mamba
