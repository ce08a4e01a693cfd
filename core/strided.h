// Strided iteration over several operands, written once for the CPU loops (ops/cpu/loops.h) and the
// CUDA iterator (cuda/kernels.h): the strides of a broadcast operand and the coalescing of dims.
// C++17 and free of other headers of ours, so that .cu files can include it.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mg {

// Strides of an operand (its shape and strides) broadcast to `to`: 0 on broadcast dims. The shape
// must broadcast to `to`.
inline std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                                              const std::vector<int64_t>& to) {
  std::vector<int64_t> st(to.size(), 0);
  const size_t off = to.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) st[off + i] = shape[i] == 1 ? 0 : strides[i];
  return st;
}

// The same iteration as `shape` with `strides[k]` for operand k, in the fewest dims: size-1 dims are
// dropped, and a dim is merged into the one before it when that is contiguous with it for every
// operand (so contiguous operands become one dim). Element order is unchanged (row-major).
template <size_t K>
void coalesce_dims(const std::vector<int64_t>& shape, const std::array<std::vector<int64_t>, K>& strides,
                   std::vector<int64_t>& out_shape, std::array<std::vector<int64_t>, K>& out_strides) {
  out_shape.clear();
  for (auto& s : out_strides) s.clear();
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !out_shape.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = out_strides[k].back() == strides[k][d] * shape[d];
    if (merge) {
      out_shape.back() *= shape[d];
      for (size_t k = 0; k < K; ++k) out_strides[k].back() = strides[k][d];
    } else {
      out_shape.push_back(shape[d]);
      for (size_t k = 0; k < K; ++k) out_strides[k].push_back(strides[k][d]);
    }
  }
}

}  // namespace mg
