#include "core/shape.h"

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
  MG_CHECK(dim >= lo && dim <= hi, "[{}] dim {} is out of range for a tensor with {} dims (valid: {} to {})",
           op, dim, ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MG_CHECK(da == db || da == 1 || db == 1,
             "[{}] shapes {} and {} cannot be broadcast: dim {} has sizes {} and {} (each pair must be equal or one of them 1)",
             op, a, b, (int64_t)i - (int64_t)n, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace mg
