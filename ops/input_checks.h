// Argument checks shared by the ops' check functions, and the row layout their kernels read.
#pragma once
#include <initializer_list>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace mg {

// Whether a C++ conversion of `value` to int64 is defined: finite and in [-2^63, 2^63) (the bounds are
// powers of two, exact in double; NaN fails both comparisons). to_dtype refuses other values per element.
inline bool fits_int64(double value) { return value >= -0x1p63 && value < 0x1p63; }

// A value that fills an int64 tensor (full, fill_) must be one an int64 holds (fits_int64).
inline void check_int64_value(DType dtype, double value, const char* op) {
  if (dtype != DType::i64) return;
  MG_CHECK(fits_int64(value), "[{}] cannot fill an int64 tensor with {} (valid: finite values in [-2^63, 2^63))", op,
           value);
}

// Every defined tensor of `inputs` has the dtype and the device of `ref` (named `ref_name`); the error
// names the op, the input and both dtypes or devices.
inline void check_same_dtype_device(const char* op, const char* ref_name, const Tensor& ref,
                                    std::initializer_list<std::pair<const char*, const Tensor*>> inputs) {
  for (auto& [name, t] : inputs) {
    if (!t->defined()) continue;
    MG_CHECK(t->dtype() == ref.dtype(), "[{}] {} is {} but {} is {}: all inputs must share one dtype", op, name,
             t->dtype(), ref_name, ref.dtype());
    MG_CHECK(t->device() == ref.device(), "[{}] {} is on {} but {} is on {}: all inputs must be on one device", op,
             name, t->device(), ref_name, ref.device());
  }
}

// The operands a scan and its one-step update share, checked against the input x (named `x_name`, the
// channels its last dimension d) and A (d, n): B and C of shape `bn`, and the optional D (d), z (like x)
// and bias (d, named `bias_name`). Each error names the op, the operand, the shape it must have and why.
inline void check_scan_operands(const char* op, const char* x_name, const Tensor& x, const Tensor& A, const Shape& bn,
                                const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& z,
                                const char* bias_name, const Tensor& bias) {
  for (auto [name, t] : {std::pair{"B", &B}, std::pair{"C", &C}})
    MG_CHECK(t->shape() == bn, "[{}] {} must be {} to match {} {} and A {}, got {}", op, name, bn, x_name, x.shape(),
             A.shape(), t->shape());
  const Shape dd{x.size(x.dim() - 1)};
  MG_CHECK(!D.defined() || D.shape() == dd, "[{}] D must be {} to match {} {}, got {}", op, dd, x_name, x.shape(),
           D.shape());
  MG_CHECK(!z.defined() || z.shape() == x.shape(), "[{}] z must be {} like {}, got {}", op, x.shape(), x_name,
           z.shape());
  MG_CHECK(!bias.defined() || bias.shape() == dd, "[{}] {} must be {} to match {} {}, got {}", op, bias_name, dd,
           x_name, x.shape(), bias.shape());
}

// The stride between consecutive rows of t, its last dim a row and its leading dims flattened in row-major
// order, when those rows are evenly spaced (whatever the leading dims' own strides); -1 when they are not.
// With one row (or none), the row's length.
inline int64_t even_row_stride(const Tensor& t) {
  int64_t rs = -1, next = 0;
  for (int64_t d = t.dim() - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (rs < 0)
      rs = t.stride(d);
    else if (t.stride(d) != next)
      return -1;
    next = t.stride(d) * t.size(d);
  }
  return rs >= 0 ? rs : t.dim() > 0 ? t.size(-1) : 1;
}

// An input as the kernels that read it row by row take it (the scan's z, B and C, the step kernels'
// operands): itself, detached, when the elements of a row are adjacent and its rows evenly spaced, as in a
// narrow of a wider tensor's last dim (a split of a projection's output), else a contiguous copy.
inline Tensor rows_of(const Tensor& t) {
  if (!t.defined()) return Tensor();
  Tensor v = t.detach();
  const bool adjacent = v.dim() == 0 || v.size(-1) <= 1 || v.stride(-1) == 1;
  return adjacent && even_row_stride(v) >= 0 ? v : contiguous(v);
}
// The row stride the kernels take for a tensor rows_of returned (0 for an undefined one).
inline int64_t row_stride(const Tensor& t) { return t.defined() ? even_row_stride(t) : 0; }

}  // namespace mg
