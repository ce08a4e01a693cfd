// One element of AdamW's update, shared by the CPU loop (ops/cpu/optim.cpp) and the CUDA kernel
// (cuda/optim.cu), so that both devices compute one formula in one order (ops/optim.h describes AdamW):
//   m <- m + (1 - beta1) (g - m),   v <- beta2 v + (1 - beta2) g^2,
//   p <- p decay - step_size m / (sqrt(v) / sqrt(bc2) + eps)
// with decay = 1 - lr weight_decay (1 where the parameter takes no decay), step_size = lr / bc1 and
// bc1, bc2 the bias corrections 1 - beta^t.
#pragma once
#include <cmath>

#include "core/host_device.h"

namespace mg {

template <class T>
struct AdamWCoefficients {
  T decay, w1, b2, w2, step_size, bc2_sqrt, eps;  // w1 = 1 - beta1, b2 = beta2, w2 = 1 - beta2
};

template <class T>
MG_HD inline void adamw_element(T& p, T g, T& m, T& v, const AdamWCoefficients<T>& c) {
  const T mi = m + c.w1 * (g - m);
  const T vi = v * c.b2 + c.w2 * g * g;
  m = mi;
  v = vi;
  p = p * c.decay - c.step_size * (mi / (std::sqrt(vi) / c.bc2_sqrt + c.eps));
}

}  // namespace mg
