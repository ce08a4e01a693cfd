// Dtype dispatch, for host code and the host side of the .cu launchers alike (C++17): runs a lambda with
// `scalar_t` bound to the tensor's element type and returns what it returns, e.g.
//   MG_DISPATCH_FLOAT(t, "exp", [&] { kernel<scalar_t>(...); });
// A dtype the family does not take throws naming the op and the valid dtypes.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"

// One case of a dispatch: `scalar_t` bound to `type` for the lambda.
#define MG_DISPATCH_CASE(tag, type, ...) \
  case ::mg::DType::tag: {               \
    using scalar_t = type;               \
    return __VA_ARGS__();                \
  }
#define MG_DISPATCH_FLOAT_CASES(...)        \
  MG_DISPATCH_CASE(f32, float, __VA_ARGS__) \
  MG_DISPATCH_CASE(f64, double, __VA_ARGS__)

// The switch over `dtype` with the given cases; any other dtype throws "[op] expects <valid>, got <dtype>".
#define MG_DISPATCH_SWITCH(dtype, op, valid, cases)                                                               \
  [&] {                                                                                                           \
    const ::mg::DType dtype_ = (dtype);                                                                           \
    switch (dtype_) { cases default : MG_THROW("[{}] expects {}, got {}", op, valid, ::mg::dtype_name(dtype_)); } \
  }()

// Runs the lambda with `scalar_t` bound to the tensor's floating type (float or double).
#define MG_DISPATCH_FLOAT(dtype, op, ...) \
  MG_DISPATCH_SWITCH(dtype, op, "a floating tensor (float32 or float64)", MG_DISPATCH_FLOAT_CASES(__VA_ARGS__))

// Runs the lambda with `scalar_t` bound to any element type (float, double or int64_t).
#define MG_DISPATCH_ALL(dtype, op, ...)                      \
  MG_DISPATCH_SWITCH(dtype, op, "float32, float64 or int64", \
                     MG_DISPATCH_FLOAT_CASES(__VA_ARGS__) MG_DISPATCH_CASE(i64, int64_t, __VA_ARGS__))
