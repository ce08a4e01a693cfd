// What the MLP examples share: a two-layer MLP, linear -> activation -> linear with 32 hidden units,
// fits y = sin(3x) on 256 points of [-1, 1] with AdamW (lr 1e-2), by the mean squared error.
// Included by examples/mlp.cpp (activation tanh) and examples/custom_op.cpp (its own softsign).
#pragma once
#include <cmath>
#include <cstdio>
#include <vector>

#include "ops/ops.h"
#include "train/optim.h"

struct FitResult {
  double first_mse = 0, last_mse = 0;
};

// `steps` AdamW steps; prints the loss every `print_every` steps (0: never), then the first and the last.
template <class Activation>
FitResult fit_sine(Activation activation, int steps, int print_every = 0) {
  using namespace mg;
  Generator gen(0);
  const int64_t n = 256, hidden = 32;
  Tensor x = rand({n, 1}, DType::f32, &gen, -1.0, 1.0);
  std::vector<float> target;
  for (float v : x.to_vector<float>()) target.push_back(std::sin(3.0f * v));
  Tensor y = from_vector<float>(target, {n, 1});
  // Parameters: leaves that require grad, initialised at scale 1/sqrt(fan_in).
  Tensor w1 = randn({hidden, 1}, DType::f32, &gen).requires_grad_();
  Tensor b1 = zeros({hidden}).requires_grad_();
  Tensor w2 = mul_scalar(randn({1, hidden}, DType::f32, &gen), 1.0 / std::sqrt((double)hidden)).requires_grad_();
  Tensor b2 = zeros({1}).requires_grad_();
  ParamGroup group;
  group.params = {{"w1", w1}, {"b1", b1}, {"w2", w2}, {"b2", b2}};
  AdamW opt({group}, 1e-2);

  FitResult r;
  for (int step = 0; step < steps; ++step) {
    Tensor pred = linear(activation(linear(x, w1, b1)), w2, b2);  // (n, 1)
    Tensor diff = sub(pred, y);
    Tensor loss = mean(mul(diff, diff));
    opt.zero_grad();
    loss.backward();
    opt.step();
    r.last_mse = loss.item();
    if (step == 0) r.first_mse = r.last_mse;
    if (print_every > 0 && step % print_every == 0) std::printf("step %3d  mse %.5f\n", step, r.last_mse);
  }
  std::printf("mse %.5f -> %.5f\n", r.first_mse, r.last_mse);
  return r;
}
