// Host-side helpers for the CUDA branches of the ops (C++20: includes core/tensor.h, so never from a
// .cu file): the StridedIter of cuda/kernels.h built from tensors.
#pragma once
#include <array>
#include <vector>

#include "core/tensor.h"
#include "cuda/kernels.h"

namespace mg::cuda {

using mg::broadcast_strides;  // core/tensor.h: strides of a tensor broadcast to a shape

// An iterator over `shape` for tensors that have that shape (or broadcast to it: pass their
// broadcast_strides), in the order the launcher takes its operands.
template <int K>
StridedIter<K> iter(const char* op, const Shape& shape, std::array<std::vector<int64_t>, K> strides) {
  return make_iter<K>(shape, strides, op);
}

// The device index of a CUDA tensor.
inline int device_of(const Tensor& t) { return t.device().index; }

}  // namespace mg::cuda
