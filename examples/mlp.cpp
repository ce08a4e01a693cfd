// An MLP fitting y = sin(3x) on [-1, 1] with the library's ops and AdamW: the smallest program that
// builds a model on mambagrad (the model and its training loop are examples/fit_sine.h, shared with
// examples/custom_op.cpp). Built by the main build (mambagrad_example_mlp), run by the tests, and built
// again against an installed mambagrad by the install test (examples/external/). Exits 1 unless the loss
// drops 20x.
#include "fit_sine.h"

int main() {
  const FitResult r = fit_sine([](const mg::Tensor& h) { return mg::tanh(h); }, 500, /*print_every=*/100);
  return r.last_mse < r.first_mse / 20 ? 0 : 1;
}
