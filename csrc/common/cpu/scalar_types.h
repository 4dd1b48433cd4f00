// Storage types of the kernels' inputs, torch-free: float, double, IEEE half (_Float16) and bfloat16.
// Pointers from torch (c10::Half, c10::BFloat16) have the same bit layout and are reinterpreted.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(__FLT16_MAX__)
#error "hamburg_mamba's CPU kernels need a compiler with _Float16 (GCC >= 12 or Clang >= 15 on x86-64)"
#endif

namespace hamburg_mamba::cpu {

using half_t = _Float16;

struct bfloat16_t {
  uint16_t bits;
};

inline float to_compute(float x) { return x; }
inline double to_compute(double x) { return x; }
inline float to_compute(half_t x) { return static_cast<float>(x); }
inline float to_compute(bfloat16_t x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The compute type of an input type: double for double, float otherwise.
template <typename T>
struct ComputeOf {
  using type = float;
};
template <>
struct ComputeOf<double> {
  using type = double;
};

template <typename T>
inline T store_as(typename ComputeOf<T>::type x);
template <>
inline float store_as<float>(float x) {
  return x;
}
template <>
inline double store_as<double>(double x) {
  return x;
}
template <>
inline half_t store_as<half_t>(float x) {
  return static_cast<half_t>(x);
}
// Round to nearest even, NaN kept quiet: the same rounding as c10::BFloat16.
template <>
inline bfloat16_t store_as<bfloat16_t>(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16_t{0x7fc0};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bfloat16_t{static_cast<uint16_t>(u >> 16)};
}

}  // namespace hamburg_mamba::cpu
