// bfloat16: the top 16 bits of a float32 (sign, the same 8-bit exponent, 7 mantissa bits). Used for the
// matmul inputs of mixed precision (ops/autocast.h); tensors themselves stay float32. Converting rounds to
// nearest, ties to even (as PyTorch, the CUDA intrinsics and VCVTNEPS2BF16 do), and keeps NaN a NaN.
#pragma once
#include <cstdint>
#include <cstring>

// Also compiled into the CUDA kernels (cuda/blas.cu), so that the device rounds as the host does.
#if defined(__CUDACC__)
#define MG_BF16_HD __host__ __device__
#else
#define MG_BF16_HD
#endif

namespace mg {

MG_BF16_HD inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN: stays a (quiet) NaN
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // adds just under half an ulp, plus one if odd
}

MG_BF16_HD inline float bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// x rounded to the nearest bfloat16, as a float.
MG_BF16_HD inline float round_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

}  // namespace mg
