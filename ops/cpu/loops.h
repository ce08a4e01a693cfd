// CPU loop helpers: a strided N-d loop over several operands (the dtype dispatch macros are in
// core/dispatch.h, included here for the CPU kernels' callers).
#pragma once
#include <array>
#include <cstdint>

#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace mg::cpu {

using mg::broadcast_strides;  // core/tensor.h: strides of a tensor broadcast to a shape

// Calls f(offsets, n, inner_strides) for runs of `n` elements along the innermost (coalesced) dim,
// in parallel over runs. offsets[k] is operand k's element offset of the run's first element.
template <size_t K, class F>
void strided_loop(const Shape& shape_in, std::array<Strides, K> st, F&& f) {
  Shape shape;
  std::array<Strides, K> cs;
  coalesce_dims<K>(shape_in, st, shape, cs);  // core/strided.h
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
