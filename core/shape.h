// Shapes and strides (in elements), dim wrapping and broadcasting.
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/format.h"

namespace mg {

// A shape prints as "(4, 3)" in messages.
//
// Every tensor's shape passed check_shape() when the tensor was made: its sizes are >= 0 and its
// non-zero sizes multiply to at most 2^63 - 1, so any product of some of its sizes (an element
// count, a stride, the rows of a reduction) fits in int64 too, whatever the zero sizes are.
class Shape : public std::vector<int64_t> {
 public:
  using std::vector<int64_t>::vector;
  Shape() = default;
  Shape(const std::vector<int64_t>& v) : std::vector<int64_t>(v) {}
  // The number of elements; throws mg::Error when the non-zero sizes multiply past int64.
  int64_t numel() const {
    int64_t n = 1;
    bool zero = false;
    for (auto s : *this) {
      if (s == 0) {
        zero = true;
        continue;
      }
      if (__builtin_mul_overflow(n, s, &n)) [[unlikely]]
        throw_too_large("numel");
    }
    return zero ? 0 : n;
  }
  std::string str() const;
  [[noreturn]] void throw_too_large(const char* op) const;
};

// Checks that `shape` can be a tensor's: no negative size, and the non-zero sizes multiply to at
// most 2^63 - 1 elements. Returns numel(); throws mg::Error naming `op` and the shape.
int64_t check_shape(const Shape& shape, const char* op);

using Strides = std::vector<int64_t>;

Strides contiguous_strides(const Shape& shape);

// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Broadcast two shapes the NumPy way; throws naming `op` when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace mg

template <>
struct fmt::formatter<mg::Shape> : mg::StrFormatter<mg::Shape> {};
