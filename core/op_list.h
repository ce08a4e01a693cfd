// The library's differentiable primitives, by name: the catalogue of its own ops (their OpIds), with the
// unary elementwise ops of core/unary_ops.h, which name themselves from their own list. The gradcheck
// registry test fails for any op of either list that has no gradcheck case, so a differentiable op
// cannot go unchecked. A user's op is not listed: it gets an OpKind of its own (core/op_kind.h).
// Each entry also names the op's tensor inputs, in the order its record() call passes them (the
// parameter names of its declaration in ops/ops.h or ops/scan.h); anomaly mode's messages name an input
// by them. "xs..." is a list: input i is "xs[i]".
// It lives in core, free of other headers (C++17).
#pragma once
#include <array>
#include <string_view>

// clang-format off
#define MG_DIFFERENTIABLE_OPS(X)                                                                                     \
  X(add, "a b") X(sub, "a b") X(mul, "a b") X(div, "a b") X(sum, "x") X(mean, "x") X(max, "x")                      \
  X(matmul, "a b") X(linear, "x w b") X(reshape, "x") X(transpose, "x") X(permute, "x") X(narrow, "x")              \
  X(split, "x") X(expand, "x") X(cat, "xs...") X(contiguous, "x") X(to_dtype, "x") X(to_device, "x")                \
  X(embedding, "weight ids") X(log_softmax, "x") X(cross_entropy, "logits targets") X(rms_norm, "x weight")         \
  X(selective_scan, "u delta A B C D z delta_bias initial_state")                                                  \
  X(causal_conv1d, "x weight bias initial_state")                                                                  \
  X(selective_state_update, "state x dt A B C D z dt_bias")                                                        \
  X(causal_conv1d_update, "conv_state x weight bias")
// clang-format on

namespace mg {

enum class OpId {
#define MG_X(name, inputs) name,
  MG_DIFFERENTIABLE_OPS(MG_X)
#undef MG_X
};

inline constexpr std::array kAllOpNames = {
#define MG_X(name, inputs) std::string_view(#name),
    MG_DIFFERENTIABLE_OPS(MG_X)
#undef MG_X
};

// Each op's tensor inputs, space-separated, by OpId.
inline constexpr std::array kOpInputNames = {
#define MG_X(name, inputs) std::string_view(inputs),
    MG_DIFFERENTIABLE_OPS(MG_X)
#undef MG_X
};

constexpr std::string_view op_name(OpId id) { return kAllOpNames[static_cast<size_t>(id)]; }

}  // namespace mg
