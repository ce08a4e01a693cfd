// Overflow-checked arithmetic for sizes, element counts and byte counts. A product or sum of sizes
// that a tensor, a window of data or a buffer is made from goes through these, so a huge request
// (`--batch 18014398509481984 --seq 1024`) throws an mg::Error naming what overflowed instead of
// wrapping around to a small or negative number that is then allocated and written past.
#pragma once
#include <cstdint>
#include <limits>
#include <string_view>

#include "core/error.h"

namespace mg {

namespace detail {
[[noreturn]] inline void throw_overflow(std::string_view op, std::string_view what, int64_t a, char sym, int64_t b) {
  MG_THROW("[{}] {} overflows int64: {} {} {} is out of range (int64 holds at most {})", op, what, a, sym, b,
           std::numeric_limits<int64_t>::max());
}
}  // namespace detail

// a * b, or throws "[op] what overflows int64: a * b is out of range (...)".
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view op, std::string_view what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) [[unlikely]]
    detail::throw_overflow(op, what, a, '*', b);
  return r;
}

// a + b, or throws "[op] what overflows int64: a + b is out of range (...)".
inline int64_t checked_add(int64_t a, int64_t b, std::string_view op, std::string_view what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) [[unlikely]]
    detail::throw_overflow(op, what, a, '+', b);
  return r;
}

}  // namespace mg
