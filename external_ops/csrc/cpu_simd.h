// Shared by the elementwise CPU kernels: function multi-versioning and a vectorisable float32 exp.
#pragma once

#include <cstdint>
#include <cstring>

// Kernels compiled for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), x86-64-v3 (AVX2 + FMA) and baseline x86-64, picked at
// load time by the CPU (GCC function multi-versioning), so one binary runs everywhere with the widest vectors it
// has. (Each string is one clone: "avx2,fma" would be two clones, AVX2 without FMA and FMA without AVX2.)
// Results do not depend on the version picked beyond FMA contraction: no kernel here reduces across SIMD lanes.
// The helpers below are always_inline because GCC does not inline a default-target function into an arch= clone,
// and a call in the loop blocks its vectorisation. The clamps vectorise thanks to -fno-trapping-math (setup.py).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PADDLEMIX_EVA_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define PADDLEMIX_EVA_INLINE __attribute__((always_inline)) inline
#else
#define PADDLEMIX_EVA_SIMD_CLONES
#define PADDLEMIX_EVA_INLINE inline
#endif

namespace paddlemix_eva {
namespace simd {

// exp(x) in float32 to within ~2 ulp, written as straight-line arithmetic so `omp simd` loops vectorise it
// (libm's expf is a call per element). x = n ln2 + r with |r| <= ln2/2; e^r from its Taylor series to r^7
// (truncation error < 1e-8 relative there), times 2^n built in the exponent bits. Inputs are clamped to
// [-87, 88], where 2^n stays a normal float: exp(-87) ~ 1.6e-38, exp(88) ~ 1.7e38. n = round(x log2 e) by
// adding and subtracting 1.5 * 2^23 (exact for |n| < 2^22; no rounding instruction needed on baseline x86-64).
PADDLEMIX_EVA_INLINE float exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 rounded to 17 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723e-6f;  // ln 2 - kLn2Hi
  constexpr float kRound = 12582912.0f;              // 1.5 * 2^23
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  const float nf = (x * kLog2e + kRound) - kRound;
  const int32_t n = static_cast<int32_t>(nf);
  const float r = (x - nf * kLn2Hi) - nf * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// 1 / (1 + e^-x)
PADDLEMIX_EVA_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

}  // namespace simd
}  // namespace paddlemix_eva
