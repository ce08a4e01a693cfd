// Scalar functions shared by the elementwise ops (core/unary_ops.h) and the fused kernels (the CUDA
// state update): host and device (MG_HD marks them so under nvcc).
#pragma once
#include <cmath>

#include "core/host_device.h"

namespace mg::fn {

template <class T>
MG_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <class T>
MG_HD inline T silu(T x) {
  return x * sigmoid(x);
}
// d silu / dx = s (1 + x (1 - s)), s = sigmoid(x).
template <class T>
MG_HD inline T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}
// softplus(x) = log1p(exp(x)), and x itself above 20 (PyTorch's threshold), computed stably below.
template <class T>
MG_HD inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}
// x^p, with the square (the common case) as one multiply; and its derivative p x^(p-1).
template <class T>
MG_HD inline T pow_p(T x, T p) {
  return p == T(2) ? x * x : std::pow(x, p);
}
template <class T>
MG_HD inline T pow_p_grad(T x, T p) {
  return p == T(2) ? T(2) * x : (p == T(1) ? T(1) : p * std::pow(x, p - T(1)));
}

}  // namespace mg::fn
