// CPU loop helpers: dtype dispatch and a strided N-d loop over several operands.
#pragma once
#include <array>
#include <cstdint>

#include "core/parallel.h"
#include "core/tensor.h"

// Runs the lambda with `scalar_t` bound to the tensor's floating type (float or double).
#define MG_DISPATCH_FLOAT(dtype, op, ...)                                                        \
  [&] {                                                                                          \
    switch (dtype) {                                                                             \
      case ::mg::DType::f32: {                                                                   \
        using scalar_t = float;                                                                  \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
      case ::mg::DType::f64: {                                                                   \
        using scalar_t = double;                                                                 \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
      default:                                                                                   \
        MG_THROW("[{}] expects a floating tensor (float32 or float64), got {}", op,               \
                 ::mg::dtype_name(dtype));                                                       \
    }                                                                                            \
  }()

#define MG_DISPATCH_ALL(dtype, op, ...)                                                          \
  [&] {                                                                                          \
    switch (dtype) {                                                                             \
      case ::mg::DType::f32: {                                                                   \
        using scalar_t = float;                                                                  \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
      case ::mg::DType::f64: {                                                                   \
        using scalar_t = double;                                                                 \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
      case ::mg::DType::i64: {                                                                   \
        using scalar_t = int64_t;                                                                \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
    }                                                                                            \
  }()

namespace mg::cpu {

// Strides of `t` when broadcast to `shape` (0 on broadcast dims). `t`'s shape must broadcast.
inline Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  Strides st(shape.size(), 0);
  size_t off = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    st[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

// Calls f(offsets, n, inner_strides) for runs of `n` elements along the innermost (coalesced) dim,
// in parallel over runs. offsets[k] is operand k's element offset of the run's first element.
template <size_t K, class F>
void strided_loop(const Shape& shape_in, std::array<Strides, K> st, F&& f) {
  // Coalesce dims that are contiguous with the next one for every operand.
  Shape shape;
  std::array<Strides, K> cs;
  for (size_t d = 0; d < shape_in.size(); ++d) {
    if (shape_in[d] == 1) continue;
    bool merge = !shape.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = cs[k].back() == st[k][d] * shape_in[d];
    if (merge) {
      shape.back() *= shape_in[d];
      for (size_t k = 0; k < K; ++k) cs[k].back() = st[k][d];
    } else {
      shape.push_back(shape_in[d]);
      for (size_t k = 0; k < K; ++k) cs[k].push_back(st[k][d]);
    }
  }
  std::array<int64_t, K> zero{};
  if (shape_in.numel() == 0) return;
  if (shape.empty()) {
    f(zero, int64_t(1), zero);
    return;
  }
  const int64_t nd = (int64_t)shape.size();
  const int64_t inner = shape.back();
  std::array<int64_t, K> inner_st;
  for (size_t k = 0; k < K; ++k) inner_st[k] = cs[k].back();
  if (nd == 1) {
    parallel_for(inner, 1, [&](int64_t b, int64_t e) {
      std::array<int64_t, K> off;
      for (size_t k = 0; k < K; ++k) off[k] = b * inner_st[k];
      f(off, e - b, inner_st);
    });
    return;
  }
  const int64_t rows = shape.numel() / inner;
  parallel_for(rows, inner, [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(nd - 1);
    std::array<int64_t, K> off{};
    int64_t r = b;
    for (int64_t d = nd - 2; d >= 0; --d) {
      idx[d] = r % shape[d];
      r /= shape[d];
      for (size_t k = 0; k < K; ++k) off[k] += idx[d] * cs[k][d];
    }
    for (int64_t row = b; row < e; ++row) {
      f(off, inner, inner_st);
      for (int64_t d = nd - 2; d >= 0; --d) {
        ++idx[d];
        for (size_t k = 0; k < K; ++k) off[k] += cs[k][d];
        if (idx[d] < shape[d]) break;
        for (size_t k = 0; k < K; ++k) off[k] -= idx[d] * cs[k][d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace mg::cpu
