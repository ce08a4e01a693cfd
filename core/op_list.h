// Every differentiable primitive, by name. mg::record() (autograd/node.h) takes an OpId from this
// list, so an op cannot record a backward without being listed here, and the gradcheck registry test
// fails for any listed op that has no gradcheck case: a differentiable op cannot go unchecked. It lives
// in core, free of other headers (C++17), because the kernels name their unary functions by these ids
// too (core/unary_functors.h, cuda/kernels.h).
#pragma once
#include <array>
#include <string_view>

#define MG_DIFFERENTIABLE_OPS(X)                                                                 \
  X(add) X(sub) X(mul) X(div) X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(pow) X(sigmoid) X(silu)    \
  X(softplus) X(tanh) X(add_scalar) X(mul_scalar) X(sum) X(mean) X(max) X(matmul) X(linear)      \
  X(reshape) X(transpose) X(permute) X(narrow) X(split) X(expand) X(cat) X(contiguous) X(to_dtype) \
  X(to_device)                                                                                   \
  X(embedding) X(log_softmax) X(cross_entropy) X(rms_norm) X(selective_scan) X(causal_conv1d) \
  X(selective_state_update) X(causal_conv1d_update)

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
