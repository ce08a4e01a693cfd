// The library's differentiable primitives, by name: the catalogue of its own ops (their OpIds), with the
// unary elementwise ops of core/unary_ops.h, which name themselves from their own list. The gradcheck
// registry test fails for any op of either list that has no gradcheck case, so a differentiable op
// cannot go unchecked. A user's op is not listed: it gets an OpKind of its own (autograd/function.h).
// It lives in core, free of other headers (C++17).
#pragma once
#include <array>
#include <string_view>

// clang-format off
#define MG_DIFFERENTIABLE_OPS(X)                                                                                     \
  X(add) X(sub) X(mul) X(div) X(sum) X(mean) X(max) X(matmul) X(linear) X(reshape) X(transpose) X(permute)          \
  X(narrow) X(split) X(expand) X(cat) X(contiguous) X(to_dtype) X(to_device) X(embedding) X(log_softmax)            \
  X(cross_entropy) X(rms_norm) X(selective_scan) X(causal_conv1d) X(selective_state_update) X(causal_conv1d_update)
// clang-format on

namespace mg {

enum class OpId {
#define MG_X(name) name,
  MG_DIFFERENTIABLE_OPS(MG_X)
#undef MG_X
};

inline constexpr std::array kAllOpNames = {
#define MG_X(name) std::string_view(#name),
    MG_DIFFERENTIABLE_OPS(MG_X)
#undef MG_X
};

constexpr std::string_view op_name(OpId id) { return kAllOpNames[static_cast<size_t>(id)]; }

}  // namespace mg
