// The library's unary elementwise ops, one entry each: name, value f(x, p), derivative df(x, y, p)
// (dy/dx given x, y = f(x) and the op's scalar p), and the interval its gradcheck case draws x from.
// Everything else is generated from the entry: the functor (host and device, MG_HD), the CPU loop and
// the op's definition with its autograd node (ops/elementwise.cpp), the CUDA kernels
// (cuda/elementwise.cu instantiates its launchers for every entry, so none can be left out), the
// gradcheck case, and the op's name in the catalogue. Adding an op: an entry here, its declaration in
// ops/ops.h, and its test (docs/internals.md, "Adding an elementwise op"). Only the files that run the
// list include this header, so an entry rebuilds them and not every other kernel.
//
// MG_UNARY_OPS: Tensor name(const Tensor& x). MG_UNARY_SCALAR_OPS: Tensor name(const Tensor& x, double p),
// whose gradcheck case uses p = the entry's last field.
#pragma once
#include <array>
#include <string_view>

#include "core/unary_functors.h"

//        name       f(x, p)                    df(x, y, p)                                   gradcheck x in
#define MG_UNARY_OPS(X)                                          \
  X(neg, -x, T(-1), -2, 2)                                       \
  X(exp, std::exp(x), y, -2, 2)                                  \
  X(log, std::log(x), T(1) / x, 0.5, 3)                          \
  X(log1p, std::log1p(x), T(1) / (T(1) + x), -0.5, 2)            \
  X(sqrt, std::sqrt(x), T(0.5) / y, 0.5, 3)                      \
  X(rsqrt, T(1) / std::sqrt(x), T(-0.5) * y * y * y, 0.5, 3)     \
  X(sigmoid, sigmoid(x), y*(T(1) - y), -4, 4)                    \
  X(silu, silu(x), silu_grad(x), -4, 4)                          \
  X(softplus, softplus(x), x > T(20) ? T(1) : sigmoid(x), -4, 4) \
  X(tanh, std::tanh(x), T(1) - y * y, -2, 2)

//        name        f(x, p)                                   df(x, y, p)                               x in     p
#define MG_UNARY_SCALAR_OPS(X)                    \
  X(pow, pow_p(x, p), pow_p_grad(x, p), -2, 2, 2) \
  X(add_scalar, x + p, T(1), -2, 2, 1.5)          \
  X(mul_scalar, x* p, p, -2, 2, -0.7)

namespace mg {

namespace fn {
// One functor per entry: fn::exp_op::f(x, p), fn::exp_op::df(x, y, p), fn::exp_op::name.
#define MG_UNARY_FUNCTOR(op, f_expr, df_expr, ...) \
  struct op##_op {                                 \
    static constexpr const char* name = #op;       \
    template <class T>                             \
    MG_HD static T f(T x, T p) {                   \
      (void)p;                                     \
      return f_expr;                               \
    }                                              \
    template <class T>                             \
    MG_HD static T df(T x, T y, T p) {             \
      (void)x, (void)y, (void)p;                   \
      return df_expr;                              \
    }                                              \
  };
MG_UNARY_OPS(MG_UNARY_FUNCTOR)
MG_UNARY_SCALAR_OPS(MG_UNARY_FUNCTOR)
#undef MG_UNARY_FUNCTOR
}  // namespace fn

#define MG_UNARY_NAME(op, ...) std::string_view(#op),
inline constexpr std::array kUnaryOpNames = {MG_UNARY_OPS(MG_UNARY_NAME) MG_UNARY_SCALAR_OPS(MG_UNARY_NAME)};
#undef MG_UNARY_NAME

}  // namespace mg
