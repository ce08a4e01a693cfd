// The engine's and record()'s side of anomaly mode (autograd/anomaly.h): the NaN/inf scan.
#pragma once
#include "core/tensor.h"

namespace mg {

// "NaN", "inf" or "-inf" for the first non-finite element of `t` (any device; a copy to the host),
// or null when every element is finite (or `t` is undefined, empty or an integer tensor).
const char* first_non_finite(const Tensor& t);

}  // namespace mg
