// The optimizer's CPU kernels, used by ops/optim.cpp (their CUDA counterparts are in cuda/optim.h):
// one AdamW step over a contiguous parameter and the sum of squares of a contiguous gradient.
#pragma once
#include <cstdint>

namespace mg::cpu {

// p, g, m, v contiguous of n elements; scalars precomputed in double, applied in T. The expressions
// follow PyTorch's single-tensor AdamW (lerp_, mul_().addcmul_(), sqrt / bc2_sqrt + eps, addcdiv_).
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double decay, double beta1, double beta2, double step_size,
                  double bc2_sqrt, double eps);

// Sum of squares of x[0, n) in double. Fixed blocks summed in order: the result does not depend on
// the number of threads.
template <class T>
double sum_squares(const T* x, int64_t n);

}  // namespace mg::cpu
