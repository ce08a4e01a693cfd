#include "core/shape.h"

#include <limits>

#include "core/error.h"

namespace mg {

std::string Shape::str() const {
  std::string s = "(";
  for (size_t i = 0; i < size(); ++i) {
    if (i) s += ", ";
    s += std::to_string((*this)[i]);
  }
  if (size() == 1) s += ",";
  return s + ")";
}

void Shape::throw_too_large(const char* op) const {
  MG_THROW(
      "[{}] shape {} has too many elements: the product of its sizes overflows int64 (a tensor holds at most "
      "{} elements)",
      op, *this, std::numeric_limits<int64_t>::max());
}

int64_t check_shape(const Shape& shape, const char* op) {
  for (auto s : shape) MG_CHECK(s >= 0, "[{}] negative size {} in shape {} (sizes must be 0 or more)", op, s, shape);
  int64_t n = 1;
  bool zero = false;
  for (auto s : shape) {
    if (s == 0) {
      zero = true;
      continue;
    }
    if (__builtin_mul_overflow(n, s, &n)) shape.throw_too_large(op);
  }
  return zero ? 0 : n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides st(shape.size());
  int64_t acc = 1;
  for (int64_t i = (int64_t)shape.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = -ndim, hi = ndim - 1;
  if (ndim == 0) lo = -1, hi = 0;  // a scalar accepts dim 0 / -1
  MG_CHECK(dim >= lo && dim <= hi, "[{}] dim {} is out of range for a tensor with {} dims (valid: {} to {})", op, dim,
           ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MG_CHECK(da == db || da == 1 || db == 1,
             "[{}] shapes {} and {} cannot be broadcast: dim {} has sizes {} and {} (each pair must be equal or one of "
             "them 1)",
             op, a, b, (int64_t)i - (int64_t)n, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace mg
