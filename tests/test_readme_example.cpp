// The C++ example of README.md, verbatim between the markers, so the README cannot rot.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

// README-EXAMPLE-BEGIN
#include "ops/ops.h"
using namespace mg;

double readme_example() {
  Generator gen(0);
  Tensor x = randn({4, 3}, DType::f32, &gen);                   // a batch of 4 inputs
  Tensor w = randn({2, 3}, DType::f32, &gen).requires_grad_();  // leaf parameters
  Tensor b = zeros({2}).requires_grad_();
  Tensor y = silu(linear(x, w, b));  // (4, 2)
  Tensor loss = mean(y * y);         // a scalar
  loss.backward();                   // fills w.grad() and b.grad()
  mg::print("loss {:.4f}\ndw {}\n", loss.item(), w.grad());
  return loss.item();
}
// README-EXAMPLE-END

TEST_CASE("readme: the example builds a graph and backpropagates") {
  double loss = readme_example();
  CHECK(loss > 0);
}

TEST_CASE("readme: README.md shows this file's example verbatim") {
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    REQUIRE(f.good());
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  std::string self = slurp(std::string(MG_SOURCE_DIR) + "/tests/test_readme_example.cpp");
  std::string readme = slurp(std::string(MG_SOURCE_DIR) + "/README.md");
  const std::string begin =
                        "// README-EXAMPLE-"
                        "BEGIN\n",
                    end =
                        "// README-EXAMPLE-"
                        "END";
  auto b = self.find(begin), e = self.find(end);
  REQUIRE(b != std::string::npos);
  REQUIRE(e != std::string::npos);
  std::string example = self.substr(b + begin.size(), e - b - begin.size());
  while (!example.empty() && example.back() == '\n') example.pop_back();
  CHECK(readme.find(example) != std::string::npos);
}
