// Dtype dispatch for host code: runs a lambda with `scalar_t` bound to the tensor's element type.
// (Device code has its own statement form, MG_CUDA_DISPATCH_* in cuda/launch.cuh.)
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"

// Runs the lambda with `scalar_t` bound to the tensor's floating type (float or double).
#define MG_DISPATCH_FLOAT(dtype, op, ...)                                                                     \
  [&] {                                                                                                       \
    switch (dtype) {                                                                                          \
      case ::mg::DType::f32: {                                                                                \
        using scalar_t = float;                                                                               \
        return __VA_ARGS__();                                                                                 \
      }                                                                                                       \
      case ::mg::DType::f64: {                                                                                \
        using scalar_t = double;                                                                              \
        return __VA_ARGS__();                                                                                 \
      }                                                                                                       \
      default:                                                                                                \
        MG_THROW("[{}] expects a floating tensor (float32 or float64), got {}", op, ::mg::dtype_name(dtype)); \
    }                                                                                                         \
  }()

#define MG_DISPATCH_ALL(dtype, op, ...) \
  [&] {                                 \
    switch (dtype) {                    \
      case ::mg::DType::f32: {          \
        using scalar_t = float;         \
        return __VA_ARGS__();           \
      }                                 \
      case ::mg::DType::f64: {          \
        using scalar_t = double;        \
        return __VA_ARGS__();           \
      }                                 \
      case ::mg::DType::i64: {          \
        using scalar_t = int64_t;       \
        return __VA_ARGS__();           \
      }                                 \
    }                                   \
  }()
