// The backward engine's edge cases: long chains, diamonds, shared inputs, retain_graph, grad mode,
// detach, in-place changes to saved tensors, and the checks on each vjp's result.
#include <doctest/doctest.h>

#include "autograd/node.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {
Tensor grad_leaf(std::vector<double> v, Shape s) { return from_vector<double>(v, s).requires_grad_(); }
}  // namespace

TEST_CASE("autograd: a 100,000-op chain backpropagates and frees without recursion") {
  Tensor x = grad_leaf({1.0}, {1});
  {
    Tensor y = x;
    for (int i = 0; i < 100000; ++i) y = mul_scalar(y, 1.0);
    y = mul_scalar(y, 3.0);
    sum(y).backward();
    CHECK(x.grad().item() == 3.0);
    // y goes out of scope here: the whole chain is destroyed iteratively.
  }
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add_scalar(y, 1.0);
  y = Tensor();  // never backpropagated: destruction alone must not overflow the stack either
  CHECK(x.grad().item() == 3.0);
}

TEST_CASE("autograd: gradients of shared subexpressions and diamonds are summed") {
  Tensor x = grad_leaf({2.0, -1.0}, {2});
  Tensor a = x * x;      // 2x
  Tensor b = exp(x);     // e^x
  Tensor c = a * b + a;  // a used twice: d/dx = (2x e^x + x^2 e^x) + 2x
  sum(c).backward();
  auto g = x.grad().to_vector<double>();
  for (int i = 0; i < 2; ++i) {
    double xv = i == 0 ? 2.0 : -1.0;
    CHECK(g[i] == doctest::Approx(2 * xv * std::exp(xv) + xv * xv * std::exp(xv) + 2 * xv));
  }
  // The same tensor as both operands.
  Tensor y = grad_leaf({3.0}, {1});
  sum(y * y).backward();
  CHECK(y.grad().item() == 6.0);
}

TEST_CASE("autograd: gradients accumulate across backward calls until cleared") {
  Tensor x = grad_leaf({1.0, 2.0}, {2});
  sum(x * 3.0).backward();
  sum(x * 3.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{6.0, 6.0});
  x.zero_grad();
  CHECK(!x.grad().defined());
  sum(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
}

TEST_CASE("autograd: two leaves fed the same gradient get independent .grad tensors") {
  Tensor a = grad_leaf({1.0}, {1}), b = grad_leaf({2.0}, {1});
  sum(a + b).backward();  // add's vjp returns the same tensor for both inputs
  {
    NoGradGuard ng;
    a.grad().add_(ones({1}, DType::f64));
  }
  CHECK(a.grad().item() == 2.0);
  CHECK(b.grad().item() == 1.0);
}

TEST_CASE("autograd: retain_graph allows a second backward, and without it the second one fails clearly") {
  Tensor x = grad_leaf({1.5}, {1});
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  CHECK(x.grad().item() == doctest::Approx(2 * std::exp(1.5)));
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward through the graph a second time"), Error);
}

TEST_CASE("autograd: NoGradGuard and detach stop recording") {
  Tensor x = grad_leaf({1.0}, {1});
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    CHECK(!y.requires_grad());
    CHECK(!GradMode::enabled());
  }
  CHECK(GradMode::enabled());
  Tensor d = x.detach();
  CHECK(!d.requires_grad());
  CHECK(d.storage() == x.storage());
  Tensor z = x * d;  // only x's path carries a gradient: dz/dx = d = 1
  sum(z).backward();
  CHECK(x.grad().item() == 1.0);
}

TEST_CASE("autograd: requires_grad propagates through ops and views") {
  Tensor x = grad_leaf({1, 2, 3, 4}, {2, 2});
  Tensor c = ones({2, 2}, DType::f64);
  CHECK(!(c + c).requires_grad());
  CHECK((c + x).requires_grad());
  CHECK(x.transpose(0, 1).requires_grad());
  CHECK(!x.transpose(0, 1).is_leaf());
  CHECK(x.is_leaf());
  CHECK((x * 2.0).grad_fn()->name() == "mul_scalar");
  CHECK_THROWS_WITH_AS((x * 2.0).requires_grad_(), doctest::Contains("can only be set on a leaf"), Error);
  CHECK_THROWS_WITH_AS(arange(3).requires_grad_(), doctest::Contains("only floating tensors can require grad"), Error);
}

TEST_CASE("autograd: modifying a saved tensor in place before backward raises") {
  Tensor x = grad_leaf({1.0, 2.0}, {2});
  Tensor w = from_vector<double>({3.0, 4.0}, {2});
  Tensor y = sum(x * w);  // mul saves w
  w.mul_(2.0);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("was modified in place after it was saved"), Error);
  // A leaf that requires grad cannot be changed in place while grad mode is on.
  CHECK_THROWS_WITH_AS(x.mul_(2.0), doctest::Contains("in-place ops are not recorded by autograd"), Error);
  {
    NoGradGuard ng;
    x.mul_(2.0);  // the optimizer's way
  }
  CHECK(x.to_vector<double>() == std::vector<double>{2.0, 4.0});
}

TEST_CASE("autograd: each vjp's result is checked for shape and dtype") {
  Tensor x = grad_leaf({1.0, 2.0, 3.0}, {3});
  Tensor out = x.detach().clone();
  record(OpKind::custom("bad_vjp"), {x}, {&out},
         [](const VjpArgs&) { return std::vector<Tensor>{zeros({2}, DType::f64)}; });
  CHECK_THROWS_WITH_AS(sum(out).backward(),
                       "[autograd] the backward of bad_vjp returned a gradient (2,) float64 on cpu for its input 0, "
                       "which is (3,) float64 on cpu",
                       Error);
  Tensor out2 = x.detach().clone();
  record(OpKind::custom("bad_vjp"), {x}, {&out2},
         [](const VjpArgs&) { return std::vector<Tensor>{zeros({3}, DType::f32)}; });
  CHECK_THROWS_WITH_AS(sum(out2).backward(), doctest::Contains("(3,) float32 on cpu for its input 0"), Error);
}

TEST_CASE("autograd: outputs that get no gradient are filled with zeros for multi-output use") {
  Tensor x = grad_leaf({1, 2, 3, 4, 5, 6}, {6});
  auto parts = split(x, {2, 4}, 0);
  sum(parts[1] * 2.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 2, 2, 2, 2});
}

TEST_CASE("autograd: backward on a non-scalar needs a gradient") {
  Tensor x = grad_leaf({1.0, 2.0}, {2});
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("grad can be created implicitly only for scalar outputs"),
                       Error);
  y.backward(from_vector<double>({1.0, 10.0}, {2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 20.0});
  CHECK_THROWS_WITH_AS(ones({2}).backward(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("autograd: max routes the gradient to the first maximal element") {
  Tensor x = grad_leaf({1, 5, 5, 2, 0, 3}, {2, 3});
  auto [v, i] = max(x, 1);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK(v.to_vector<double>() == std::vector<double>{5, 3});
  sum(v).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0, 0, 1});
}

TEST_CASE("autograd: a leaf's .grad never shares memory with another gradient (stolen only when unaliased)") {
  // add's vjp hands the same gradient to both inputs: one of them must get a copy.
  Tensor a = randn({3, 4}, DType::f64).requires_grad_(), b = randn({3, 4}, DType::f64).requires_grad_();
  (a + b).backward(ones({3, 4}, DType::f64));
  a.grad().add_(ones({3, 4}, DType::f64));
  CHECK(b.grad().to_vector<double>() == std::vector<double>(12, 1.0));
  CHECK(a.grad().to_vector<double>() == std::vector<double>(12, 2.0));
  // A gradient that is an expanded view (stride 0) must not become .grad: accumulating into it
  // would write one element many times.
  Tensor c = randn({1, 4}, DType::f64).requires_grad_();
  Tensor w = randn({5, 4}, DType::f64);
  for (int r = 0; r < 2; ++r) sum(expand(c, {5, 4}) * w).backward();
  const auto gw = sum(w, {0}).to_vector<double>(), gc = c.grad().to_vector<double>();
  for (size_t j = 0; j < 4; ++j) CHECK(gc[j] == doctest::Approx(2 * gw[j]));
  // The gradient passed to backward() stays the caller's.
  Tensor d = randn({4}, DType::f64).requires_grad_();
  Tensor dy = full({4}, 3.0, DType::f64);
  (d * 1.0).backward(dy);
  d.grad().add_(ones({4}, DType::f64));
  CHECK(dy.to_vector<double>() == std::vector<double>(4, 3.0));
}

namespace {
// The int64 tensors that max returns and that cross_entropy and embedding read are the caller's: the
// vjps index with them, so changing them in place after the forward must make backward raise (as
// PyTorch does), not scatter the gradient where the new values point (out of bounds when they are).
void check_saved_indices_are_versioned(Device dev) {
  auto leaf = [&](std::vector<double> v, Shape s) { return from_vector<double>(v, s, dev).requires_grad_(); };
  {
    Tensor x = leaf({1, 5, 2, 7, 0, 3}, {2, 3});
    auto [v, i] = max(x, 1);
    sum(v).backward(ones({}, DType::f64, dev), /*retain_graph=*/true);  // unchanged: the gradient goes to 5 and 7
    CHECK(x.grad().to(kCPU).to_vector<double>() == std::vector<double>{0, 1, 0, 1, 0, 0});
    i.fill_(2);  // in range, but not where the maxima are
    check_error([&] { sum(v).backward(); }, {"that max saved for backward was modified in place"});
  }
  {
    Tensor logits = leaf(std::vector<double>(12, 0.0), {3, 4});
    Tensor t = from_vector<int64_t>({0, 3, 1}, {3}, dev);
    Tensor loss = cross_entropy(logits, t);
    loss.backward(ones({}, DType::f64, dev), true);  // uniform softmax: 1/12 everywhere, minus 1/3 at the targets
    auto gv = logits.grad().to(kCPU).to_vector<double>();
    CHECK(gv[0] == doctest::Approx(1.0 / 12 - 1.0 / 3));
    CHECK(gv[7] == doctest::Approx(1.0 / 12 - 1.0 / 3));
    CHECK(gv[1] == doctest::Approx(1.0 / 12));
    t.fill_(2);
    check_error([&] { loss.backward(); }, {"that cross_entropy saved for backward was modified in place"});
    // Non-contiguous targets (read through a copy): a change to the caller's storage still raises.
    Tensor base = from_vector<int64_t>({0, 9, 2, 9, 1, 9}, {3, 2}, dev);
    Tensor tn = base.narrow(1, 0, 1).reshape({3});
    REQUIRE(!tn.is_contiguous());
    Tensor loss2 = cross_entropy(logits, tn);
    base.fill_(1);
    check_error([&] { loss2.backward(); }, {"that cross_entropy saved for backward was modified in place"});
  }
  {
    Tensor w = leaf({0, 1, 10, 11, 20, 21}, {3, 2});
    Tensor ids = from_vector<int64_t>({2, 0, 2}, {3}, dev);
    Tensor e = sum(embedding(w, ids));
    e.backward(ones({}, DType::f64, dev), true);
    CHECK(w.grad().to(kCPU).to_vector<double>() == std::vector<double>{1, 1, 0, 0, 2, 2});
    ids.fill_(1);
    check_error([&] { e.backward(); }, {"that embedding saved for backward was modified in place"});
  }
}
}  // namespace

TEST_CASE("autograd: max's indices, cross_entropy's targets and embedding's ids changed in place make backward raise") {
  check_saved_indices_are_versioned(kCPU);
}

TEST_CASE(
    "cuda autograd: max's indices, cross_entropy's targets and embedding's ids changed in place raise, as on the cpu") {
  MG_REQUIRE_CUDA();
  check_saved_indices_are_versioned(kCUDA);
}
