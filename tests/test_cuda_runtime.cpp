// CUDA runtime: host <-> device copies. Skipped (visibly) without a GPU.
#include <doctest/doctest.h>

#include "ops/ops.h"
#include "tests/devices.h"

using namespace mg;

TEST_CASE("cuda: a tensor survives the round trip host -> device -> host") {
  MG_REQUIRE_CUDA();
  Tensor x = from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f}, {2, 3});
  Tensor d = x.to(kCUDA);
  CHECK(d.device() == kCUDA);
  CHECK(d.to(kCPU).to_vector<float>() == x.to_vector<float>());
}
