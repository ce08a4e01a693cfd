// The smallest program on an installed mambagrad: a tensor that requires grad, one op, backward.
// Prints the gradient of sum(x * x) at x = (1, 2, 3), which is 2x, and exits 1 if it is not.
#include <cstdio>
#include <vector>

#include "ops/ops.h"

int main() {
  mg::Tensor x = mg::from_vector<double>({1.0, 2.0, 3.0}, {3}).requires_grad_();
  mg::sum(mg::mul(x, x)).backward();
  const std::vector<double> g = x.grad().to_vector<double>();
  std::printf("d/dx sum(x * x) at (1, 2, 3) = (%g, %g, %g)\n", g[0], g[1], g[2]);
  return g == std::vector<double>{2.0, 4.0, 6.0} ? 0 : 1;
}
