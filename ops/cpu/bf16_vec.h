// bf16 rounding eight floats at a time, for the packing of the bf16 gemm's ways (gemm.cpp's fp32 way,
// gemm_amx.cpp's tiles): core/bf16.h's round_bf16 (nearest, ties to even, NaN kept a quiet NaN) as
// vector bit operations and a select instead of its branch, so the same bits (checked for all 2^32
// floats once; tests/test_gemm.cpp checks the special values). GCC vector types: AVX2, or two SSE2
// halves in a portable build.
#pragma once
#include <cstdint>
#include <cstring>

namespace mg::cpu {

using Bits8 = uint32_t __attribute__((vector_size(32)));

// Eight floats (as their bits) rounded to bf16, each kept in the top half of its 32 bits.
// (static: each file gets its own copy, compiled for its own vector width, never one shared through the
// linker by files built for different ones.)
static inline Bits8 round_bits(Bits8 u) {
  using F = float __attribute__((vector_size(32)));
  const F f = (F)u;
  const Bits8 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const Bits8 quiet = (u | 0x400000u) & 0xffff0000u;
  return f != f ? quiet : rounded;  // NaN: a compare and a blend
}

static inline Bits8 load_bits(const float* p) {
  Bits8 u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

}  // namespace mg::cpu
