// Wrong calls get messages that name the op, show the shapes, dtypes and devices, and say what would
// be valid. Each message is checked in full where it is short enough to read.
#include <doctest/doctest.h>

#include "ops/ops.h"

using namespace mg;

TEST_CASE("errors: shape mismatches") {
  CHECK_THROWS_WITH_AS(matmul(zeros({4, 3}), zeros({5, 2})), "[matmul] inner dimensions differ: (4, 3) @ (5, 2) (3 != 5)",
                       Error);
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})),
                       "[add] shapes (2, 3) and (4,) cannot be broadcast: dim -1 has sizes 3 and 4 (each pair must be "
                       "equal or one of them 1)",
                       Error);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 3}), zeros({4, 5})),
                       "[linear] input (2, 3) has 3 features in its last dim, but the weight (4, 5) expects 5", Error);
  CHECK_THROWS_WITH_AS(reshape(zeros({2, 3}), {4, 2}), "[reshape] cannot reshape (2, 3) (6 elements) into (4, 2) (8 elements)",
                       Error);
  CHECK_THROWS_WITH_AS(view(zeros({2, 3}).transpose(0, 1), {6}), doctest::Contains("[view] cannot view a tensor of shape (3, 2)"),
                       Error);
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3}), zeros({3, 3})}, 1),
                       "[cat] tensor 1 has shape (3, 3), which differs from tensor 0's (2, 3) outside dim 1", Error);
  CHECK_THROWS_WITH_AS(expand(zeros({2, 3}), {4, 3}),
                       "[expand] cannot expand (2, 3) to (4, 3): dim 0 has size 2 (only size-1 dims can grow)", Error);
  CHECK_THROWS_WITH_AS(split(zeros({5}), {2, 2}, 0), "[split] sizes (2, 2) add up to 4, but dim 0 of (5,) has size 5", Error);
  CHECK_THROWS_WITH_AS(rms_norm(zeros({2, 8}), zeros({4})),
                       "[rms_norm] weight must be (8,) to match the last dim of x (2, 8), got (4,)", Error);
}

TEST_CASE("errors: dtype and device mismatches") {
  CHECK_THROWS_WITH_AS(mul(zeros({2}), zeros({2}, DType::f64)),
                       "[mul] dtypes differ: float32 and float64 (convert one with .to(DType))", Error);
  CHECK_THROWS_WITH_AS(exp(arange(3)), "[exp] expects a floating tensor (float32 or float64), got int64 of shape (3,)", Error);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({3})), "[embedding] ids must be int64, got float32 of shape (3,)",
                       Error);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 4}), zeros({2})), "[cross_entropy] targets must be int64, got float32", Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2}), zeros({2, 2}, DType::f64)), "[matmul] dtypes differ: float32 and float64", Error);
}

TEST_CASE("errors: out-of-range dims and ids") {
  CHECK_THROWS_WITH_AS(sum(zeros({2, 3}), {2}), "[sum] dim 2 is out of range for a tensor with 2 dims (valid: -2 to 1)",
                       Error);
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), 0, -3),
                       "[transpose] dim -3 is out of range for a tensor with 2 dims (valid: -2 to 1)", Error);
  CHECK_THROWS_WITH_AS(narrow(zeros({4, 3}), 0, 2, 3), "[narrow] range [2, 5) is outside dim 0 of size 4 (shape (4, 3))",
                       Error);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), from_vector<int64_t>({1, 4}, {2})),
                       "[embedding] id 4 at position 1 is out of range for a table of 4 rows (valid: 0 to 3)", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 4}), from_vector<int64_t>({0, 7}, {2})),
                       "[cross_entropy] target 7 at position 1 is out of range for 4 classes (valid: 0 to 3, or "
                       "ignore_index -100)",
                       Error);
  CHECK_THROWS_WITH_AS(permute(zeros({2, 3}), {0, 0}), "[permute] dim 0 repeats in (0, 0)", Error);
}

TEST_CASE("errors: backward on a non-scalar without a gradient") {
  Tensor x = ones({3}).requires_grad_();
  CHECK_THROWS_WITH_AS((x * 2.0).backward(),
                       "[backward] grad can be created implicitly only for scalar outputs; this output has shape (3,) "
                       "(pass a gradient of that shape, or reduce it first with sum() or mean())",
                       Error);
  CHECK_THROWS_WITH_AS((x * 2.0).backward(ones({2})),
                       "[backward] gradient (2,) float32 on cpu does not match the output (3,) float32 on cpu", Error);
}
