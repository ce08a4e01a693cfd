// Shapes and strides (in elements), dim wrapping and broadcasting.
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace mg {

// A shape prints as "(4, 3)" in messages.
class Shape : public std::vector<int64_t> {
 public:
  using std::vector<int64_t>::vector;
  Shape() = default;
  Shape(const std::vector<int64_t>& v) : std::vector<int64_t>(v) {}
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : *this) n *= s;
    return n;
  }
  std::string str() const;
};

using Strides = std::vector<int64_t>;

Strides contiguous_strides(const Shape& shape);

// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Broadcast two shapes the NumPy way; throws naming `op` when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace mg

template <>
struct fmt::formatter<mg::Shape> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const mg::Shape& s, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
