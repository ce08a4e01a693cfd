// An MLP fitting y = sin(3x) on [-1, 1] with the library's ops and AdamW: the smallest program that
// builds a model on mambagrad. Built by the main build (mambagrad_example_mlp), run by the tests, and
// built again against an installed mambagrad by the install test (examples/external/). Exits 1 unless the loss drops
// 20x.
#include <cmath>
#include <cstdio>
#include <vector>

#include "ops/ops.h"
#include "train/optim.h"

using namespace mg;

int main() {
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

  double first = 0, last = 0;
  for (int step = 0; step < 500; ++step) {
    Tensor pred = linear(tanh(linear(x, w1, b1)), w2, b2);  // (n, 1)
    Tensor diff = sub(pred, y);
    Tensor loss = mean(mul(diff, diff));
    opt.zero_grad();
    loss.backward();
    opt.step();
    last = loss.item();
    if (step == 0) first = last;
    if (step % 100 == 0) std::printf("step %3d  mse %.5f\n", step, last);
  }
  std::printf("mse %.5f -> %.5f\n", first, last);
  return last < first / 20 ? 0 : 1;
}
