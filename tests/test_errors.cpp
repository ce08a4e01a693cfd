// Wrong calls get messages that name the op, show the shapes, dtypes and devices, and say what would
// be valid. Each message is checked in full where it is short enough to read.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/ops.h"
#include "tests/devices.h"

using namespace mg;

TEST_CASE("errors: shape mismatches") {
  CHECK_THROWS_WITH_AS(matmul(zeros({4, 3}), zeros({5, 2})),
                       "[matmul] inner dimensions differ: (4, 3) @ (5, 2) (3 != 5)", Error);
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})),
                       "[add] shapes (2, 3) and (4,) cannot be broadcast: dim -1 has sizes 3 and 4 (each pair must be "
                       "equal or one of them 1)",
                       Error);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 3}), zeros({4, 5})),
                       "[linear] input (2, 3) has 3 features in its last dim, but the weight (4, 5) expects 5", Error);
  CHECK_THROWS_WITH_AS(reshape(zeros({2, 3}), {4, 2}),
                       "[reshape] cannot reshape (2, 3) (6 elements) into (4, 2) (8 elements)", Error);
  CHECK_THROWS_WITH_AS(view(zeros({2, 3}).transpose(0, 1), {6}),
                       doctest::Contains("[view] cannot view a tensor of shape (3, 2)"), Error);
  CHECK_THROWS_WITH_AS(cat({zeros({2, 3}), zeros({3, 3})}, 1),
                       "[cat] tensor 1 has shape (3, 3), which differs from tensor 0's (2, 3) outside dim 1", Error);
  CHECK_THROWS_WITH_AS(expand(zeros({2, 3}), {4, 3}),
                       "[expand] cannot expand (2, 3) to (4, 3): dim 0 has size 2 (only size-1 dims can grow)", Error);
  CHECK_THROWS_WITH_AS(split(zeros({5}), {2, 2}, 0), "[split] sizes (2, 2) add up to 4, but dim 0 of (5,) has size 5",
                       Error);
  CHECK_THROWS_WITH_AS(rms_norm(zeros({2, 8}), zeros({4})),
                       "[rms_norm] weight must be (8,) to match the last dim of x (2, 8), got (4,)", Error);
}

TEST_CASE("errors: dtype and device mismatches") {
  CHECK_THROWS_WITH_AS(mul(zeros({2}), zeros({2}, DType::f64)),
                       "[mul] dtypes differ: float32 and float64 (convert one with .to(DType))", Error);
  CHECK_THROWS_WITH_AS(exp(arange(3)), "[exp] expects a floating tensor (float32 or float64), got int64 of shape (3,)",
                       Error);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({3})), "[embedding] ids must be int64, got float32 of shape (3,)",
                       Error);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 4}), zeros({2})), "[cross_entropy] targets must be int64, got float32",
                       Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2}), zeros({2, 2}, DType::f64)), "[matmul] dtypes differ: float32 and float64",
                       Error);
}

TEST_CASE("errors: out-of-range dims and ids") {
  CHECK_THROWS_WITH_AS(sum(zeros({2, 3}), {2}), "[sum] dim 2 is out of range for a tensor with 2 dims (valid: -2 to 1)",
                       Error);
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), 0, -3),
                       "[transpose] dim -3 is out of range for a tensor with 2 dims (valid: -2 to 1)", Error);
  CHECK_THROWS_WITH_AS(narrow(zeros({4, 3}), 0, 2, 3),
                       "[narrow] range [2, 5) is outside dim 0 of size 4 (shape (4, 3))", Error);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), from_vector<int64_t>({1, 4}, {2})),
                       "[embedding] id 4 at position 1 is out of range for a table of 4 rows (valid: 0 to 3)", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 4}), from_vector<int64_t>({0, 7}, {2})),
                       "[cross_entropy] target 7 at position 1 is out of range for 4 classes (valid: 0 to 3, or "
                       "ignore_index -100)",
                       Error);
  CHECK_THROWS_WITH_AS(permute(zeros({2, 3}), {0, 0}), "[permute] dim 0 repeats in (0, 0)", Error);
}

TEST_CASE("errors: a 0-dim tensor has no size or stride to give, and split and chunk name themselves") {
  // A wrongly wrapped dim names split or chunk, not the size() they call.
  CHECK_THROWS_WITH_AS(split(zeros({4}), 2, 5),
                       "[split] dim 5 is out of range for a tensor with 1 dims (valid: -1 to 0)", Error);
  CHECK_THROWS_WITH_AS(chunk(zeros({4}), 2, -2),
                       "[chunk] dim -2 is out of range for a tensor with 1 dims (valid: -1 to 0)", Error);
  const Tensor s = scalar_tensor(2.0);
  CHECK_THROWS_WITH_AS(split(s, {1}, 0), "[split] cannot split a 0-dim tensor (it has no dim 0)", Error);
  CHECK_THROWS_WITH_AS(split(s, 1, 0), "[split] cannot split a 0-dim tensor (it has no dim 0)", Error);
  CHECK_THROWS_WITH_AS(chunk(s, 2, -1), "[chunk] cannot chunk a 0-dim tensor (it has no dim -1)", Error);
  CHECK_THROWS_WITH_AS(s.size(0), "[size] a 0-dim tensor has no dims (asked for dim 0)", Error);
  CHECK_THROWS_WITH_AS(s.size(-1), "[size] a 0-dim tensor has no dims (asked for dim -1)", Error);
  CHECK_THROWS_WITH_AS(s.stride(0), "[stride] a 0-dim tensor has no dims (asked for dim 0)", Error);
  // A 1-element 1-dim tensor still splits and chunks.
  CHECK(chunk(reshape(s, {1}), 2, 0).size() == 1);
  CHECK(split(reshape(s, {1}), 1, -1)[0].to_vector<float>() == std::vector<float>{2.0f});
}

TEST_CASE("errors: cross_entropy needs at least one class") {
  // Every target ignored would pass the target check; the row's log-sum-exp would read an empty row.
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({4, 0}), full({4}, -100.0, DType::i64)),
                       "[cross_entropy] logits need at least one class (got shape (4, 0))", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({0, 0}), zeros({0}, DType::i64)),
                       "[cross_entropy] logits need at least one class (got shape (0, 0))", Error);
  CHECK_THROWS_WITH_AS(cross_entropy_reference(zeros({2, 0}, DType::f64), full({2}, -100.0, DType::i64)),
                       "[cross_entropy_reference] logits need at least one class (got shape (2, 0))", Error);
  // No rows but classes: a loss of nothing counted, NaN (as in PyTorch).
  CHECK(std::isnan(cross_entropy(zeros({0, 3}), zeros({0}, DType::i64)).item()));
}

TEST_CASE("cuda errors: cross_entropy needs at least one class, as on the cpu") {
  MG_REQUIRE_CUDA();
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({4, 0}, DType::f32, kCUDA), full({4}, -100.0, DType::i64, kCUDA)),
                       "[cross_entropy] logits need at least one class (got shape (4, 0))", Error);
  CHECK(std::isnan(cross_entropy(zeros({0, 3}, DType::f32, kCUDA), zeros({0}, DType::i64, kCUDA)).item()));
}

TEST_CASE("errors: full and fill_ refuse an int64 fill that int64 cannot hold, on every device") {
  // A C++ conversion of NaN, an infinity or 2^63 to int64 is undefined behaviour (UBSan aborts on it).
  std::vector<Device> devices{kCPU};
  if (test::cuda_available()) devices.push_back(kCUDA);
  for (Device dev : devices) {
    CAPTURE(dev);
    for (double v : {std::nan(""), (double)INFINITY, -(double)INFINITY, 0x1p63, -0x1p64}) {
      CAPTURE(v);
      CHECK_THROWS_WITH_AS(full({2}, v, DType::i64, dev), doctest::Contains("[full] cannot fill an int64 tensor"),
                           Error);
      Tensor t = zeros({2}, DType::i64, dev);
      CHECK_THROWS_WITH_AS(t.fill_(v), doctest::Contains("[fill_] cannot fill an int64 tensor"), Error);
      CHECK(t.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{0, 0});  // left as it was
    }
    CHECK(full({1}, -0x1p63, DType::i64, dev).to(kCPU).to_vector<int64_t>()[0] == INT64_MIN);  // the bounds hold
    CHECK(full({1}, 0x1p62, DType::i64, dev).to(kCPU).to_vector<int64_t>()[0] == (int64_t(1) << 62));
    CHECK(std::isnan(full({1}, std::nan(""), DType::f32, dev).item()));  // floats take any value
  }
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

TEST_CASE("errors: sizes that overflow int64 are refused, never wrapped around") {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  // 2^54 x 1024 = 2^64 elements: the product wrapped to 0, and the empty tensor was then written to.
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 54, 1024}, DType::i64),
                       "[empty] shape (18014398509481984, 1024) has too many elements: the product of its sizes "
                       "overflows int64 (a tensor holds at most 9223372036854775807 elements)",
                       Error);
  CHECK_THROWS_WITH_AS(zeros({int64_t(1) << 62, 4}), doctest::Contains("overflows int64"), Error);
  CHECK_THROWS_WITH_AS(zeros({0, int64_t(1) << 62, 4}), doctest::Contains("overflows int64"), Error);  // zero aside
  // The element count fits, its bytes do not (2^61 x 8 = 2^64).
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 61}, DType::f64),
                       "[empty] the byte count of a tensor overflows int64: 2305843009213693952 * 8 is out of range "
                       "(int64 holds at most 9223372036854775807)",
                       Error);
  CHECK_THROWS_WITH_AS(Tensor::empty({2, -3}), "[empty] negative size -3 in shape (2, -3) (sizes must be 0 or more)",
                       Error);
  CHECK(zeros({0, int64_t(1) << 40}).numel() == 0);  // a zero size with sizes that fit is fine
#if !defined(__SANITIZE_ADDRESS__)                   // ASan aborts on an allocation this size instead of returning null
  // Fits in int64 but not in any machine: an error naming the tensor, not a crash.
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 60}, DType::f32),
                       "[empty] cannot allocate 4611686018427387904 bytes on the cpu: out of memory (a float32 tensor "
                       "of shape (1152921504606846976,))",
                       Error);
#endif

  // Views and shape ops: a size or a sum of sizes that overflows is an error, not an out-of-bounds view.
  CHECK_THROWS_WITH_AS(expand(zeros({1}), {-5}),
                       "[expand] invalid size -5 in (-5,) (sizes are 0 or more, or -1 to keep a dim)", Error);
  CHECK_THROWS_WITH_AS(expand(zeros({1, 1}), {kMax, 4}),
                       doctest::Contains("[view] shape (9223372036854775807, 4) has too many elements"), Error);
  CHECK_THROWS_WITH_AS(narrow(zeros({4}), 0, 1, kMax),
                       "[narrow] range [1, 1 + 9223372036854775807) is outside dim 0 of size 4 (shape (4,))", Error);
  CHECK_THROWS_WITH_AS(split(zeros({1}), {kMax, kMax, 3}, 0),
                       "[split] the sum of the sizes overflows int64: 9223372036854775807 + 9223372036854775807 is out "
                       "of range (int64 holds at most 9223372036854775807)",
                       Error);
  CHECK_THROWS_WITH_AS(reshape(zeros({6}), {int64_t(1) << 62, 4, -1}),
                       doctest::Contains("[reshape] the product of the sizes overflows int64"), Error);
  Tensor huge = expand(zeros({1}), {kMax});  // a valid view: one element seen kMax times
  CHECK_THROWS_WITH_AS(cat({huge, huge}, 0),
                       doctest::Contains("[cat] the size of the concatenated dim overflows int64"), Error);
  CHECK(split(huge, kMax / 2 + 1, 0).size() == 2);  // the second part starts past kMax / 2: at + size overflowed
  CHECK_THROWS_WITH_AS(arange(std::numeric_limits<int64_t>::min(), kMax, 1, DType::i64),
                       "[arange] [-9223372036854775808, 9223372036854775807) in steps of 1 has more elements than "
                       "int64 can count",
                       Error);
  CHECK(arange(kMax, std::numeric_limits<int64_t>::min(), 1, DType::i64).numel() == 0);
  CHECK(arange(kMax - 2, kMax, 1, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{kMax - 2, kMax - 1});
}

TEST_CASE("errors: initial states of selective_scan and causal_conv1d") {
  Tensor u = zeros({2, 10, 64}), A = zeros({64, 16}), B = zeros({2, 10, 16});
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, B, Tensor(), Tensor(), Tensor(), false, false, zeros({2, 16, 64})),
                       "[selective_scan] initial_state must be (2, 64, 16) (b, d, n) to match u (2, 10, 64) and A "
                       "(64, 16), got (2, 16, 64)",
                       Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, B, Tensor(), Tensor(), Tensor(), false, true, zeros({64, 16})),
                       "[selective_scan] initial_state must be (2, 64, 16) (b, d, n) to match u (2, 10, 64) and A "
                       "(64, 16), got (64, 16)",
                       Error);
  CHECK_THROWS_WITH_AS(
      selective_scan(u, u, A, B, B, Tensor(), Tensor(), Tensor(), false, false, zeros({2, 64, 16}, DType::f64)),
      "[selective_scan] initial_state is float64 but u is float32: all inputs must share one dtype", Error);
  CHECK_THROWS_WITH_AS(
      selective_scan_reference(u, u, A, B, B, Tensor(), Tensor(), Tensor(), false, false, zeros({1, 64, 16})),
      "[selective_scan_reference] initial_state must be (2, 64, 16) (b, d, n) to match u (2, 10, 64) and A (64, 16), "
      "got (1, 64, 16)",
      Error);

  Tensor x = zeros({2, 7, 5}), w = zeros({5, 4});
  CHECK_THROWS_WITH_AS(causal_conv1d(x, w, Tensor(), false, zeros({2, 5, 4})),
                       "[causal_conv1d] initial_state must be (2, 5, 3) (b, d, k - 1) to match x (2, 7, 5) and weight "
                       "(5, 4), got (2, 5, 4)",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d_with_state(x, w, Tensor(), true, zeros({2, 3, 5})),
                       "[causal_conv1d] initial_state must be (2, 5, 3) (b, d, k - 1) to match x (2, 7, 5) and weight "
                       "(5, 4), got (2, 3, 5)",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(x, zeros({5, 1}), Tensor(), false, zeros({2, 5, 1})),
                       "[causal_conv1d] initial_state must be (2, 5, 0) (b, d, k - 1) to match x (2, 7, 5) and weight "
                       "(5, 1), got (2, 5, 1)",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(x, w, Tensor(), false, zeros({2, 5, 3}, DType::f64)),
                       "[causal_conv1d] initial_state is float64 but x is float32: all inputs must share one dtype",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d_reference(x, w, Tensor(), false, zeros({5, 3})),
                       "[causal_conv1d_reference] initial_state must be (2, 5, 3) (b, d, k - 1) to match x (2, 7, 5) "
                       "and weight (5, 4), got (5, 3)",
                       Error);
}
