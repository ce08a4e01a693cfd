// The optimizer's ops: one AdamW step over many parameters, and the sum of squares and scaling of
// many gradients (for clipping by the global norm). They take tensors on any mix of devices and pick
// the kernel: host tensors one by one through ops/cpu/optim.h, the contiguous tensors of each CUDA
// device in one multi-tensor launch per dtype through cuda/optim.h, with the same arithmetic.
// train/optim.cpp builds the optimizer on them. They record nothing (they run under no-grad).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace mg {

// One parameter of an AdamW step: the parameter, its gradient, both moments (float32 or float64, all
// of one dtype, shape and device; the parameter and the moments contiguous) and its decay factor
// 1 - lr * weight_decay.
struct AdamWParam {
  Tensor param, grad, exp_avg, exp_avg_sq;
  double decay = 1.0;
};

// The scalars every parameter shares, precomputed in double: step_size = lr / (1 - beta1^t),
// bc2_sqrt = sqrt(1 - beta2^t).
struct AdamWStep {
  double beta1 = 0.9, beta2 = 0.95, step_size = 0, bc2_sqrt = 1, eps = 1e-8;
};

// Updates every parameter and both its moments in place, with PyTorch's single-tensor AdamW
// expressions, and bumps their versions.
void adamw_step_(const std::vector<AdamWParam>& params, const AdamWStep& step);

// The sum over every element of every tensor of x^2, in double. Deterministic: the parts (host
// tensors, then each CUDA device's tensors) are each summed in a fixed order and added in a fixed
// order, so the same tensors give the same bits on every run and thread count.
double sum_squares(const std::vector<Tensor>& ts);

// t *= coef for every tensor, in the tensor's precision.
void mul_each_(const std::vector<Tensor>& ts, double coef);

}  // namespace mg
