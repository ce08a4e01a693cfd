// Host-side helpers for the CUDA branches of the ops (C++20: includes core/tensor.h, so never from a
// .cu file): the StridedIter of cuda/kernels.h built from tensors.
#pragma once
#include <array>
#include <vector>

#include "core/tensor.h"
#include "cuda/kernels.h"

namespace mg::cuda {

// Strides of `t` broadcast to `shape` (0 on broadcast dims); `t`'s shape must broadcast to it.
inline std::vector<int64_t> broadcast_strides(const Tensor& t, const Shape& shape) {
  std::vector<int64_t> st(shape.size(), 0);
  const size_t off = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i) st[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

// An iterator over `shape` for tensors that have that shape (or broadcast to it: pass their
// broadcast_strides), in the order the launcher takes its operands.
template <int K>
StridedIter<K> iter(const char* op, const Shape& shape, std::array<std::vector<int64_t>, K> strides) {
  return make_iter<K>(shape, strides, op);
}

// The device index of a CUDA tensor.
inline int device_of(const Tensor& t) { return t.device().index; }

}  // namespace mg::cuda
