// Elementwise unary functions with their derivatives, written once for the CPU kernels (and usable
// from CUDA: MG_HD marks them host and device). f(x, p) is the value; df(x, y, p) is dy/dx given
// x and y = f(x); p is the op's scalar parameter (the exponent of pow, the constant of add_scalar).
#pragma once
#include <cmath>

#include "core/op_list.h"

#ifdef __CUDACC__
#define MG_HD __host__ __device__
#else
#define MG_HD
#endif

namespace mg::fn {

template <class T>
MG_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <class T>
MG_HD inline T silu(T x) {
  return x * sigmoid(x);
}
// softplus(x) = log1p(exp(x)), and x itself above 20 (PyTorch's threshold), computed stably below.
template <class T>
MG_HD inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

struct Neg {
  static constexpr OpId id = OpId::neg;
  template <class T> MG_HD static T f(T x, T) { return -x; }
  template <class T> MG_HD static T df(T, T, T) { return T(-1); }
};
struct Exp {
  static constexpr OpId id = OpId::exp;
  template <class T> MG_HD static T f(T x, T) { return std::exp(x); }
  template <class T> MG_HD static T df(T, T y, T) { return y; }
};
struct Log {
  static constexpr OpId id = OpId::log;
  template <class T> MG_HD static T f(T x, T) { return std::log(x); }
  template <class T> MG_HD static T df(T x, T, T) { return T(1) / x; }
};
struct Sqrt {
  static constexpr OpId id = OpId::sqrt;
  template <class T> MG_HD static T f(T x, T) { return std::sqrt(x); }
  template <class T> MG_HD static T df(T, T y, T) { return T(0.5) / y; }
};
struct Rsqrt {
  static constexpr OpId id = OpId::rsqrt;
  template <class T> MG_HD static T f(T x, T) { return T(1) / std::sqrt(x); }
  template <class T> MG_HD static T df(T, T y, T) { return T(-0.5) * y * y * y; }
};
struct Pow {
  static constexpr OpId id = OpId::pow;
  template <class T> MG_HD static T f(T x, T p) { return p == T(2) ? x * x : std::pow(x, p); }
  template <class T> MG_HD static T df(T x, T, T p) {
    return p == T(2) ? T(2) * x : (p == T(1) ? T(1) : p * std::pow(x, p - T(1)));
  }
};
struct Sigmoid {
  static constexpr OpId id = OpId::sigmoid;
  template <class T> MG_HD static T f(T x, T) { return sigmoid(x); }
  template <class T> MG_HD static T df(T, T y, T) { return y * (T(1) - y); }
};
struct Silu {
  static constexpr OpId id = OpId::silu;
  template <class T> MG_HD static T f(T x, T) { return x * sigmoid(x); }
  template <class T> MG_HD static T df(T x, T, T) {
    T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
  }
};
struct Softplus {
  static constexpr OpId id = OpId::softplus;
  template <class T> MG_HD static T f(T x, T) { return softplus(x); }
  template <class T> MG_HD static T df(T x, T, T) { return x > T(20) ? T(1) : sigmoid(x); }
};
struct Tanh {
  static constexpr OpId id = OpId::tanh;
  template <class T> MG_HD static T f(T x, T) { return std::tanh(x); }
  template <class T> MG_HD static T df(T, T y, T) { return T(1) - y * y; }
};
struct AddScalar {
  static constexpr OpId id = OpId::add_scalar;
  template <class T> MG_HD static T f(T x, T p) { return x + p; }
  template <class T> MG_HD static T df(T, T, T) { return T(1); }
};
struct MulScalar {
  static constexpr OpId id = OpId::mul_scalar;
  template <class T> MG_HD static T f(T x, T p) { return x * p; }
  template <class T> MG_HD static T df(T, T, T p) { return p; }
};

}  // namespace mg::fn
