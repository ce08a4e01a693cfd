// Argument checks shared by the ops' check functions.
#pragma once
#include <initializer_list>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"

namespace mg {

// Every defined tensor of `inputs` has the dtype and the device of `ref` (named `ref_name`); the error
// names the op, the input and both dtypes or devices.
inline void check_same_dtype_device(const char* op, const char* ref_name, const Tensor& ref,
                                    std::initializer_list<std::pair<const char*, const Tensor*>> inputs) {
  for (auto& [name, t] : inputs) {
    if (!t->defined()) continue;
    MG_CHECK(t->dtype() == ref.dtype(), "[{}] {} is {} but {} is {}: all inputs must share one dtype", op, name,
             t->dtype(), ref_name, ref.dtype());
    MG_CHECK(t->device() == ref.device(), "[{}] {} is on {} but {} is on {}: all inputs must be on one device", op,
             name, t->device(), ref_name, ref.device());
  }
}

}  // namespace mg
