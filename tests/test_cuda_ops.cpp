// Every general op on CUDA against the same op on the cpu, on fresh random inputs: the values and
// every input gradient, in float32 (tolerances for a different summation order) and float64 (tight),
// with broadcasting, non-contiguous views, odd sizes (1, 7, 1000+) and empty tensors; the errors for
// mixed devices; the caching allocator's reuse; bit-identical gradients from run to run; and the
// gradcheck registry on CUDA. Each case starts with MG_REQUIRE_CUDA(): skipped without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "core/unary_ops.h"
#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "cuda/optim.h"
#include "cuda/runtime.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Tol {
  double atol, rtol;
};
Tol tol_for(DType t) { return t == DType::f64 ? Tol{1e-12, 1e-10} : Tol{2e-5, 2e-4}; }

// Runs `f` on the cpu inputs and on copies of them on cuda:0, with every floating input requiring
// grad; compares the outputs, then backpropagates the same random output gradient on both and
// compares every input gradient. Returns false (after printing) on any mismatch.
bool same_as_cpu(const std::string& what, const std::vector<Tensor>& inputs, const OpFn& f, Tol tol,
                 bool check_grads = true, uint64_t seed = 99) {
  std::vector<Tensor> xc, xg;
  for (const Tensor& x : inputs) {
    Tensor c = x.detach().contiguous().clone().detach();
    Tensor g = to_device(c, kCUDA);
    if (is_floating(x.dtype()) && check_grads) c.requires_grad_(), g.requires_grad_();
    xc.push_back(c), xg.push_back(g);
  }
  Tensor oc = f(xc), og = f(xg);
  REQUIRE(og.device() == kCUDA);
  REQUIRE(oc.shape() == og.shape());
  REQUIRE(oc.dtype() == og.dtype());
  bool ok = check_close(og.to(kCPU), oc, tol.atol, tol.rtol, what + ": value");
  if (!check_grads || !oc.requires_grad()) return ok;
  Generator gen(seed);
  Tensor r = randn(oc.shape(), oc.dtype(), &gen);
  oc.backward(r);
  og.backward(to_device(r, kCUDA));
  for (size_t i = 0; i < xc.size(); ++i) {
    if (!xc[i].requires_grad()) continue;
    Tensor gc = xc[i].grad(), gg = xg[i].grad();
    REQUIRE(gc.defined() == gg.defined());
    if (!gc.defined()) continue;
    REQUIRE(gg.device() == kCUDA);
    ok = check_close(gg.to(kCPU), gc, tol.atol, tol.rtol, what + ": grad of input " + std::to_string(i)) && ok;
  }
  return ok;
}

Tensor rnd(const Shape& s, DType t, Generator& g) { return randn(s, t, &g); }
Tensor pos(const Shape& s, DType t, Generator& g) { return rand(s, t, &g, 0.5, 2.0); }

const DType kFloatTypes[] = {DType::f32, DType::f64};

}  // namespace

TEST_CASE("cuda ops: binary ops with broadcasting, odd sizes and non-contiguous operands") {
  MG_REQUIRE_CUDA();
  Generator g(1);
  using Bin = Tensor (*)(const Tensor&, const Tensor&);
  const std::pair<const char*, Bin> ops[] = {{"add", &add}, {"sub", &sub}, {"mul", &mul}, {"div", &div}};
  const std::pair<Shape, Shape> shapes[] = {
      {{1}, {1}},   {{7}, {7}},    {{3, 1000}, {1000}}, {{2, 3, 1}, {4}}, {{5, 1, 7}, {1, 6, 1}},
      {{1031}, {}}, {{0, 3}, {3}}, {{2, 0}, {1}}};
  for (DType t : kFloatTypes)
    for (auto& [name, f] : ops)
      for (auto& [sa, sb] : shapes) {
        Tensor a = rnd(sa, t, g), b = std::string(name) == "div" ? pos(sb, t, g) : rnd(sb, t, g);
        CHECK(same_as_cpu(
            mg::format("{} {} {} {}", name, sa, sb, t), {a, b},
            [f = f](const std::vector<Tensor>& x) { return f(x[0], x[1]); }, tol_for(t)));
      }
  // Non-contiguous operands: a transpose, a narrowed slice and an expanded column.
  for (DType t : kFloatTypes) {
    Tensor a = rnd({7, 9}, t, g), b = rnd({12, 7}, t, g), c = rnd({9, 1}, t, g);
    CHECK(same_as_cpu(
        "strided operands", {a, b, c},
        [](const std::vector<Tensor>& x) {
          Tensor bt = x[1].narrow(0, 2, 9).transpose(0, 1);  // (7, 9), strides (1, 7)
          return add(mul(x[0], bt), x[2].transpose(0, 1).expand({7, 9}));
        },
        tol_for(t)));
    Tensor p = rnd({4, 5, 6}, t, g), q = rnd({6, 4, 5}, t, g);
    CHECK(same_as_cpu(
        "permuted operands", {p, q},
        [](const std::vector<Tensor>& x) {
          return div(x[0].permute({2, 0, 1}), add_scalar(exp(x[1]), 1.0));
        },
        tol_for(t)));
  }
}

TEST_CASE("cuda ops: every unary function and its derivative") {
  MG_REQUIRE_CUDA();
  Generator g(2);
  struct U {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    bool positive;
  };
  const U ops[] = {{"neg", [](const Tensor& x) { return neg(x); }, false},
                   {"exp", [](const Tensor& x) { return exp(x); }, false},
                   {"log", [](const Tensor& x) { return log(x); }, true},
                   {"sqrt", [](const Tensor& x) { return sqrt(x); }, true},
                   {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, true},
                   {"pow 2", [](const Tensor& x) { return pow(x, 2.0); }, false},
                   {"pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, true},
                   {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false},
                   {"silu", [](const Tensor& x) { return silu(x); }, false},
                   {"softplus", [](const Tensor& x) { return softplus(x); }, false},
                   {"softplus > 20", [](const Tensor& x) { return softplus(x * 30.0); }, true},
                   {"tanh", [](const Tensor& x) { return tanh(x); }, false},
                   {"add_scalar", [](const Tensor& x) { return add_scalar(x, 1.5); }, false},
                   {"mul_scalar", [](const Tensor& x) { return mul_scalar(x, -0.7); }, false}};
  for (DType t : kFloatTypes)
    for (auto& u : ops)
      for (Shape s : {Shape{1}, Shape{7}, Shape{3, 1001}, Shape{0, 4}}) {
        Tensor x = u.positive ? pos(s, t, g) : rnd(s, t, g);
        CHECK(same_as_cpu(
            mg::format("{} {} {}", u.name, s, t), {x}, [f = u.f](const std::vector<Tensor>& in) { return f(in[0]); },
            tol_for(t)));
      }
  // A transposed input goes through the strided path of the kernel and its vjp.
  Tensor x = rnd({33, 17}, DType::f32, g);
  CHECK(same_as_cpu(
      "silu of a transpose", {x}, [](const std::vector<Tensor>& in) { return silu(in[0].transpose(0, 1)); },
      tol_for(DType::f32)));
}

TEST_CASE("cuda ops: in-place fill_, copy_, add_ and mul_ on strided views") {
  MG_REQUIRE_CUDA();
  Generator g(3);
  for (DType t : kFloatTypes) {
    Tensor base = rnd({6, 9}, t, g), src = rnd({9, 4}, t, g), row = rnd({4}, t, g);
    Tensor bc = base.clone(), bg = base.to(kCUDA);
    for (Tensor* b : {&bc, &bg}) {
      Tensor s = b->device() == kCPU ? src : src.to(kCUDA);
      Tensor r = b->device() == kCPU ? row : row.to(kCUDA);
      Tensor v = b->narrow(1, 2, 4);               // (6, 4), row stride 9
      v.narrow(0, 0, 4).copy_(s.narrow(0, 1, 4));  // strided dst and src
      v.narrow(0, 4, 2).copy_(r);                  // broadcast src
      b->transpose(0, 1).narrow(0, 7, 2).fill_(0.25);
      v.add_(s.narrow(0, 3, 6), -0.5);
      b->narrow(0, 1, 3).mul_(3.0);
      b->narrow(0, 5, 1).add_(r.narrow(0, 0, 1).expand({1, 9}).contiguous());
    }
    CHECK(check_close(bg.to(kCPU), bc, tol_for(t).atol, tol_for(t).rtol, mg::format("in-place sequence {}", t)));
  }
  // copy_ converts dtypes and crosses devices; fill_ works on int64 too.
  Tensor f = rnd({5, 3}, DType::f32, g);
  Tensor d = zeros({5, 3}, DType::f64, kCUDA);
  d.copy_(f);  // from the host, float32 -> float64
  CHECK(d.to(kCPU).to_vector<double>() == f.to(DType::f64).to_vector<double>());
  Tensor h = zeros({3, 5}, DType::f32);
  h.copy_(d.transpose(0, 1));  // from the device, strided, float64 -> float32
  CHECK(h.to_vector<float>() == f.transpose(0, 1).contiguous().to_vector<float>());
  Tensor i = zeros({4}, DType::i64, kCUDA);
  i.fill_(7.0);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{7, 7, 7, 7});
  // Empty views are fine.
  Tensor e = zeros({0, 3}, DType::f32, kCUDA);
  e.fill_(1.0);
  e.mul_(2.0);
  e.add_(e);
  CHECK(e.numel() == 0);
}

TEST_CASE("cuda ops: views and copies (reshape, permute, narrow, expand, cat, split, contiguous, to_dtype)") {
  MG_REQUIRE_CUDA();
  Generator g(4);
  for (DType t : kFloatTypes) {
    Tol tl = tol_for(t);
    Tensor x = rnd({4, 6, 5}, t, g);
    CHECK(same_as_cpu(
        "reshape view", {x},
        [](const std::vector<Tensor>& in) {
          return in[0].reshape({24, 5}) * 2.0;
        },
        tl));
    CHECK(same_as_cpu(
        "reshape copy", {x}, [](const std::vector<Tensor>& in) { return in[0].transpose(0, 2).reshape({-1}); }, tl));
    CHECK(same_as_cpu(
        "permute + contiguous", {x},
        [](const std::vector<Tensor>& in) {
          return contiguous(in[0].permute({1, 2, 0}));
        },
        tl));
    CHECK(same_as_cpu(
        "narrow", {x}, [](const std::vector<Tensor>& in) { return in[0].narrow(1, 1, 4) * 1.0; }, tl));
    CHECK(same_as_cpu(
        "expand", {rnd({6, 1}, t, g)},
        [](const std::vector<Tensor>& in) {
          return in[0].expand({3, 6, 7}).contiguous();
        },
        tl));
    CHECK(same_as_cpu(
        "cat", {rnd({2, 1}, t, g), rnd({2, 3}, t, g), rnd({2, 1000}, t, g)},
        [](const std::vector<Tensor>& in) { return cat(in, 1); }, tl));
    CHECK(same_as_cpu(
        "cat of strided pieces", {x},
        [](const std::vector<Tensor>& in) {
          return cat({in[0].transpose(0, 1), in[0].narrow(1, 0, 2).transpose(0, 1)}, 0);
        },
        tl));
    CHECK(same_as_cpu(
        "split and chunk", {x},
        [](const std::vector<Tensor>& in) {
          auto parts = split(in[0], {2, 4}, 1);
          auto ch = chunk(in[0], 3, 2);
          // (4, 2, 5) * (4, 2, 1) + (4, 2, 1)
          return parts[1].narrow(1, 0, 2) * ch[0].narrow(1, 0, 2).narrow(2, 0, 1) + ch[2].narrow(1, 4, 2);
        },
        tl));
    CHECK(same_as_cpu(
        "clone", {x}, [](const std::vector<Tensor>& in) { return clone(in[0].transpose(0, 1)); }, tl));
    // to_dtype both ways; the gradient comes back converted.
    DType other = t == DType::f32 ? DType::f64 : DType::f32;
    CHECK(same_as_cpu(
        "to_dtype", {x}, [other](const std::vector<Tensor>& in) { return in[0].transpose(1, 2).to(other); },
        tol_for(DType::f32)));
  }
  // int64 <-> float copies and int64 views.
  Tensor ids = randint(-50, 50, {3, 7}, &g);
  Tensor idg = ids.to(kCUDA);
  CHECK(idg.transpose(0, 1).contiguous().to_vector<int64_t>() == ids.transpose(0, 1).contiguous().to_vector<int64_t>());
  CHECK(idg.to(DType::f32).to_vector<float>() == ids.to(DType::f32).to_vector<float>());
  CHECK(idg.to(DType::f64).to(DType::i64).to_vector<int64_t>() == ids.to_vector<int64_t>());
}

TEST_CASE("cuda ops: sum, mean, max and sum_to, from short rows to long ones") {
  MG_REQUIRE_CUDA();
  Generator g(5);
  for (DType t : kFloatTypes) {
    Tol tl = tol_for(t);
    Tensor x = rnd({3, 4, 5}, t, g);
    CHECK(same_as_cpu(
        "sum all", {x}, [](const std::vector<Tensor>& in) { return sum(in[0]); }, tl));
    CHECK(same_as_cpu(
        "sum (0, 2) keepdim", {x},
        [](const std::vector<Tensor>& in) {
          return sum(in[0], {0, 2}, true);
        },
        tl));
    CHECK(same_as_cpu(
        "mean -1", {x}, [](const std::vector<Tensor>& in) { return mean(in[0], {-1}); }, tl));
    CHECK(same_as_cpu(
        "mean all", {x}, [](const std::vector<Tensor>& in) { return mean(in[0]); }, tl));
    CHECK(same_as_cpu(
        "max dim 1", {x}, [](const std::vector<Tensor>& in) { return max(in[0], 1).first; }, tl));
    CHECK(same_as_cpu(
        "max dim -1 keepdim", {x}, [](const std::vector<Tensor>& in) { return max(in[0], -1, true).first; }, tl));
    CHECK(same_as_cpu(
        "sum_to", {rnd({4, 3, 5}, t, g)},
        [](const std::vector<Tensor>& in) {
          return sum_to(in[0], {3, 1});
        },
        tl));
    // Row lengths on each side of the kernels' thresholds: 1, 7, 32, 33, 1000, 16384, 16385, 100003.
    for (int64_t n : {1, 7, 32, 33, 1000, 16384, 16385, 100003})
      for (int64_t rows : {1, 3, 300}) {
        if (rows * n > 4'000'000) continue;
        Tensor y = rnd({rows, n}, t, g);
        Tol wide{tl.atol * std::sqrt((double)n), tl.rtol};
        CHECK(same_as_cpu(
            mg::format("sum rows={} n={} {}", rows, n, t), {y},
            [](const std::vector<Tensor>& in) { return sum(in[0], {1}); }, wide));
        CHECK(same_as_cpu(
            mg::format("sum over rows={} n={} {}", rows, n, t), {y},
            [](const std::vector<Tensor>& in) { return sum(in[0], {0}); }, wide));
      }
    // Empty tensors: a sum over nothing is 0, a mean over nothing is an error.
    Tensor e = zeros({0, 4}, t, kCUDA);
    CHECK(sum(e, {0}).to(kCPU).to(DType::f64).to_vector<double>() == std::vector<double>(4, 0.0));
    CHECK(sum(e).item() == 0.0);
    CHECK_THROWS_WITH_AS(mean(e), "[mean] of an empty tensor of shape (0, 4)", Error);
  }
  // max: the indices agree, ties pick the first, NaN wins.
  Tensor m = from_vector<float>({1, 3, 3, 2, NAN, 0, -1, -1, -2}, {3, 3});
  auto [vc, ic] = max(m, 1);
  auto [vg, ig] = max(m.to(kCUDA), 1);
  CHECK(ig.to_vector<int64_t>() == ic.to_vector<int64_t>());
  CHECK(ig.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0});
  CHECK(std::isnan(vg.to_vector<float>()[1]));
  Tensor big = rnd({5, 2000, 3}, DType::f32, g);
  CHECK(max(big.to(kCUDA), 1).second.to_vector<int64_t>() == max(big, 1).second.to_vector<int64_t>());
}

TEST_CASE("cuda ops: matmul and linear through cuBLAS, every layout, batches and odd sizes") {
  MG_REQUIRE_CUDA();
  Generator g(6);
  for (DType t : kFloatTypes) {
    for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 2}, {7, 1000, 7}, {67, 300, 130}}) {
      Tol tl{t == DType::f64 ? 1e-12 : 1e-4 * std::sqrt((double)k), t == DType::f64 ? 1e-10 : 1e-4};
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          Tensor a = ta ? rnd({k, m}, t, g) : rnd({m, k}, t, g);
          Tensor b = tb ? rnd({n, k}, t, g) : rnd({k, n}, t, g);
          CHECK(same_as_cpu(
              mg::format("matmul m={} k={} n={} ta={} tb={} {}", m, k, n, ta, tb, t), {a, b},
              [ta = ta, tb = tb](const std::vector<Tensor>& in) {
                return matmul(ta ? in[0].transpose(0, 1) : in[0], tb ? in[1].transpose(0, 1) : in[1]);
              },
              tl));
        }
    }
    Tol tl{t == DType::f64 ? 1e-12 : 1e-4, t == DType::f64 ? 1e-10 : 1e-4};
    CHECK(same_as_cpu(
        "batched", {rnd({3, 4, 5}, t, g), rnd({3, 5, 6}, t, g)},
        [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, tl));
    CHECK(same_as_cpu(
        "batched, transposed right operand", {rnd({3, 4, 5}, t, g), rnd({3, 6, 5}, t, g)},
        [](const std::vector<Tensor>& in) { return matmul(in[0], in[1].transpose(1, 2)); }, tl));
    // Batch dims that broadcast differently: the batch offsets are uneven, one call per matrix.
    CHECK(same_as_cpu(
        "broadcast batch dims", {rnd({2, 1, 3, 4}, t, g), rnd({3, 4, 2}, t, g)},
        [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, tl));
    CHECK(same_as_cpu(
        "one matrix against a batch", {rnd({4, 5}, t, g), rnd({3, 5, 2}, t, g)},
        [](const std::vector<Tensor>& in) {
          return matmul(in[0].expand({3, 4, 5}), in[1]);
        },
        tl));
    CHECK(same_as_cpu(
        "batch of rows @ matrix", {rnd({2, 3, 4}, t, g), rnd({4, 5}, t, g)},
        [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, tl));
    CHECK(same_as_cpu(
        "a column broadcast as a matrix (copied for cuBLAS)", {rnd({5, 1}, t, g), rnd({4, 3}, t, g)},
        [](const std::vector<Tensor>& in) {
          return matmul(in[0].expand({5, 4}), in[1]);
        },
        tl));
    CHECK(same_as_cpu(
        "linear with bias, 3-D input", {rnd({2, 3, 4}, t, g), rnd({5, 4}, t, g), rnd({5}, t, g)},
        [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, tl));
    CHECK(same_as_cpu(
        "linear, no bias, 1000 features", {rnd({7, 1000}, t, g), rnd({9, 1000}, t, g)},
        [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, Tol{tl.atol * 30, tl.rtol}));
    CHECK(same_as_cpu(
        "linear of a transposed input and weight", {rnd({4, 6}, t, g), rnd({4, 3}, t, g), rnd({3}, t, g)},
        [](const std::vector<Tensor>& in) { return linear(in[0].transpose(0, 1), in[1].transpose(0, 1), in[2]); }, tl));
  }
  // Empty products: k = 0 gives zeros, m = 0 an empty result.
  Tensor z = matmul(zeros({3, 0}, DType::f32, kCUDA), zeros({0, 4}, DType::f32, kCUDA));
  CHECK(z.to(kCPU).to_vector<float>() == std::vector<float>(12, 0.0f));
  CHECK(matmul(zeros({0, 5}, DType::f32, kCUDA), zeros({5, 4}, DType::f32, kCUDA)).shape() == Shape{0, 4});
  CHECK(
      linear(zeros({0, 5}, DType::f32, kCUDA), ones({3, 5}, DType::f32, kCUDA), ones({3}, DType::f32, kCUDA)).shape() ==
      Shape{0, 3});
}

TEST_CASE("cuda ops: the TF32 switch changes float32 matmuls and nothing else") {
  MG_REQUIRE_CUDA();
  Generator g(7);
  Tensor a = rnd({256, 512}, DType::f32, g).to(kCUDA), b = rnd({512, 256}, DType::f32, g).to(kCUDA);
  REQUIRE(!cuda::allow_tf32());
  Tensor full32 = matmul(a, b).to(kCPU);
  Tensor ref = matmul(a.to(DType::f64), b.to(DType::f64)).to(kCPU);
  cuda::set_allow_tf32(true);
  Tensor tf32 = matmul(a, b).to(kCPU);
  Tensor f64_tf = matmul(a.to(DType::f64), b.to(DType::f64)).to(kCPU);
  cuda::set_allow_tf32(false);
  // Full float32 is far closer to float64 than TF32 (10-bit mantissa) is; float64 ignores the switch.
  CHECK(rel_err(full32, ref) < 1e-5);
  CHECK(rel_err(tf32, ref) < 1e-2);
  CHECK(rel_err(tf32, ref) > 1e-5);
  CHECK(f64_tf.to_vector<double>() == ref.to_vector<double>());
}

TEST_CASE("cuda ops: embedding forward, backward bit-identical to the cpu, and its errors") {
  MG_REQUIRE_CUDA();
  Generator g(8);
  for (DType t : kFloatTypes) {
    Tensor w = rnd({11, 7}, t, g);
    Tensor ids = from_vector<int64_t>({0, 2, 2, 10, 2, 0, 5, 5, 5, 5}, {2, 5});
    CHECK(same_as_cpu(
        "embedding", {w, ids}, [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); }, tol_for(t)));
    // A large batch with many repeats: the grouped sum runs in the cpu's order, so the bits match.
    Tensor wb = rnd({256, 1000}, t, g).requires_grad_();
    Tensor ib = randint(0, 256, {4, 777}, &g);
    Tensor wg = wb.detach().to(kCUDA).requires_grad_();
    Tensor r = rnd({4, 777, 1000}, t, g);
    embedding(wb, ib).backward(r);
    embedding(wg, ib.to(kCUDA)).backward(r.to(kCUDA));
    CHECK(embedding(wg, ib.to(kCUDA)).to(kCPU).to(DType::f64).to_vector<double>() ==
          embedding(wb, ib).detach().to(DType::f64).to_vector<double>());
    CHECK(wg.grad().to(kCPU).to(DType::f64).to_vector<double>() == wb.grad().to(DType::f64).to_vector<double>());
  }
  Tensor w = zeros({4, 2}, DType::f32, kCUDA);
  CHECK_THROWS_WITH_AS(embedding(w, from_vector<int64_t>({1, 4}, {2}, kCUDA)),
                       "[embedding] id 4 at position 1 is out of range for a table of 4 rows (valid: 0 to 3)", Error);
  CHECK_THROWS_WITH_AS(embedding(w, from_vector<int64_t>({1}, {1})),
                       "[embedding] weight is on cuda:0 but ids are on cpu", Error);
  CHECK(embedding(w, zeros({0}, DType::i64, kCUDA)).shape() == Shape{0, 2});
}

TEST_CASE("cuda ops: log_softmax and cross_entropy") {
  MG_REQUIRE_CUDA();
  Generator g(9);
  for (DType t : kFloatTypes) {
    Tol tl = tol_for(t);
    CHECK(same_as_cpu(
        "log_softmax -1", {rnd({3, 5}, t, g)}, [](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); },
        tl));
    CHECK(same_as_cpu(
        "log_softmax dim 0 of 3-D", {rnd({4, 2, 3}, t, g)},
        [](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); }, tl));
    CHECK(same_as_cpu(
        "log_softmax, 1 and 1031 classes", {rnd({7, 1}, t, g), rnd({6, 1031}, t, g)},
        [](const std::vector<Tensor>& in) { return sum(log_softmax(in[0], -1)) + sum(log_softmax(in[1], -1)); },
        Tol{tl.atol * 10, tl.rtol}));
    CHECK(same_as_cpu(
        "log_softmax of large logits", {rnd({5, 300}, t, g)},
        [](const std::vector<Tensor>& in) { return log_softmax(in[0] * 100.0, -1); }, Tol{tl.atol * 100, tl.rtol}));
    // Up to 1024 classes a warp per row (1000 rows: 125 blocks of 8 warps), past it a block per row.
    for (auto [N, C] : {std::pair<int64_t, int64_t>{1, 1}, {4, 6}, {7, 256}, {1000, 37}, {5, 1500}}) {
      std::vector<int64_t> tv(N);
      for (int64_t i = 0; i < N; ++i) tv[i] = (i % 5 == 3) ? -100 : (int64_t)(Generator(i + 17 * N).next_u64() % C);
      Tensor tg = from_vector<int64_t>(tv, {N});
      CHECK(same_as_cpu(
          mg::format("cross_entropy N={} C={} {}", N, C, t), {rnd({N, C}, t, g), tg},
          [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); }, tl));
      CHECK(same_as_cpu(
          mg::format("cross_entropy x3 N={} C={} {}", N, C, t), {rnd({N, C}, t, g), tg},
          [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]) * 3.0; }, tl));
    }
    // The fused op against its reference on the device too.
    Tensor x = rnd({9, 13}, t, g).to(kCUDA);
    Tensor tg = randint(0, 13, {9}, &g).to(kCUDA);
    CHECK(check_close(cross_entropy(x, tg).to(kCPU), cross_entropy_reference(x, tg).to(kCPU), tl.atol, tl.rtol,
                      "ce vs reference"));
  }
  // Every target ignored: NaN, as on the cpu; targets out of range: the cpu's message.
  Tensor x = zeros({2, 3}, DType::f32, kCUDA);
  CHECK(std::isnan(cross_entropy(x, from_vector<int64_t>({-100, -100}, {2}, kCUDA)).item()));
  CHECK_THROWS_WITH_AS(cross_entropy(x, from_vector<int64_t>({0, 7}, {2}, kCUDA)),
                       "[cross_entropy] target 7 at position 1 is out of range for 3 classes (valid: 0 to 2, or "
                       "ignore_index -100)",
                       Error);
}

TEST_CASE("cuda ops: rms_norm forward and backward, rows and widths from 1 to 1000+") {
  MG_REQUIRE_CUDA();
  Generator g(10);
  for (DType t : kFloatTypes)
    for (auto [rows, D] : {std::pair<int64_t, int64_t>{1, 1}, {7, 7}, {3, 1031}, {1000, 64}, {130, 300}}) {
      Tol tl = tol_for(t);
      CHECK(same_as_cpu(
          mg::format("rms_norm rows={} D={} {}", rows, D, t), {rnd({rows, D}, t, g), rnd({D}, t, g)},
          [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, Tol{tl.atol * 10, tl.rtol * 5}));
    }
  Tensor x = rnd({2, 3, 16}, DType::f32, g).to(kCUDA), w = rnd({16}, DType::f32, g).to(kCUDA);
  CHECK(check_close(rms_norm(x, w).to(kCPU), rms_norm_reference(x, w).to(kCPU), 1e-5, 1e-4, "rms_norm vs reference"));
}

TEST_CASE("cuda ops: factories and to_device") {
  MG_REQUIRE_CUDA();
  CHECK(zeros({2, 3}, DType::f32, kCUDA).to_vector<float>() == std::vector<float>(6, 0.0f));
  CHECK(full({1001}, -2.5, DType::f64, kCUDA).to_vector<double>() == std::vector<double>(1001, -2.5));
  CHECK(ones({3}, DType::i64, kCUDA).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1});
  CHECK(arange(3, 17, 4, DType::i64, kCUDA).to_vector<int64_t>() == arange(3, 17, 4).to_vector<int64_t>());
  CHECK(arange(5, -6, -2, DType::f32, kCUDA).to_vector<float>() == arange(5, -6, -2, DType::f32).to_vector<float>());
  CHECK(arange(0, 0, 1, DType::i64, kCUDA).numel() == 0);
  CHECK(zeros({0}, DType::f32, kCUDA).device() == kCUDA);
  // Random tensors drawn from the same generator state are the same numbers wherever they go.
  Generator g1(42), g2(42);
  CHECK(randn({1000}, DType::f32, &g1).to(kCUDA).to_vector<float>() ==
        randn({1000}, DType::f32, &g2).to_vector<float>());
  CHECK(rand({77}, DType::f64, &g1, -1, 1).to(kCUDA).to_vector<double>() ==
        rand({77}, DType::f64, &g2, -1, 1).to_vector<double>());
  // to_device is differentiable in both directions; the gradient comes back to the input's device.
  Tensor xc = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  Tensor y = to_device(xc, kCUDA) * 2.0;
  CHECK(y.device() == kCUDA);
  sum(to_device(y * y, kCPU)).backward();
  REQUIRE(xc.grad().defined());
  CHECK(xc.grad().device() == kCPU);
  CHECK(xc.grad().to_vector<double>() == std::vector<double>{8, 16, 24});
  Tensor xg = from_vector<double>({1, -1}, {2}, kCUDA).requires_grad_();
  sum(to_device(xg, kCPU) * 3.0).backward();
  CHECK(xg.grad().device() == kCUDA);
  CHECK(xg.grad().to_vector<double>() == std::vector<double>{3, 3});
  // A non-contiguous device tensor comes back in order.
  Tensor m = arange(0, 12, 1, DType::f32).reshape({3, 4});
  CHECK(m.to(kCUDA).transpose(0, 1).to(kCPU).to_vector<float>() == m.transpose(0, 1).contiguous().to_vector<float>());
  std::string printed = m.str();
  printed.insert(printed.size() - 1, ", device=cuda:0");
  CHECK(m.to(kCUDA).str() == printed);
}

TEST_CASE("cuda ops: mixing devices is an error that names both") {
  MG_REQUIRE_CUDA();
  Tensor c = ones({2}), d = ones({2}, DType::f32, kCUDA);
  CHECK_THROWS_WITH_AS(add(c, d), "[add] tensors are on different devices: cpu and cuda:0 (move one with .to(Device))",
                       Error);
  CHECK_THROWS_WITH_AS(mul(d, c), "[mul] tensors are on different devices: cuda:0 and cpu (move one with .to(Device))",
                       Error);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 2}), ones({2, 2}, DType::f32, kCUDA)), "[matmul] devices differ: cpu and cuda:0",
                       Error);
  CHECK_THROWS_WITH_AS(d.add_(c), "[add_] tensors are on different devices: cuda:0 and cpu (move one with .to(Device))",
                       Error);
  CHECK_THROWS_WITH_AS(rms_norm(ones({2, 2}, DType::f32, kCUDA), ones({2})),
                       "[rms_norm] x is on cuda:0 but weight on cpu", Error);
  CHECK_THROWS_WITH_AS(zeros({2}, DType::f32, Device(DeviceKind::cuda, 64)),
                       doctest::Contains("cuda:64 is not present"), Error);
}

TEST_CASE("cuda ops: the caching allocator reuses blocks: a second identical step calls cudaMalloc no more") {
  MG_REQUIRE_CUDA();
  Generator g(11);
  Tensor w1 = rnd({300, 200}, DType::f32, g).to(kCUDA).requires_grad_();
  Tensor w2 = rnd({10, 300}, DType::f32, g).to(kCUDA).requires_grad_();
  Tensor norm_w = ones({200}, DType::f32, kCUDA).requires_grad_();
  Tensor x = rnd({64, 200}, DType::f32, g).to(kCUDA);
  Tensor tg = randint(0, 10, {64}, &g).to(kCUDA);
  auto step = [&] {
    Tensor h = silu(linear(rms_norm(x, norm_w), w1));
    Tensor loss = cross_entropy(linear(h, w2), tg);
    loss.backward();
    NoGradGuard ng;
    for (Tensor p : {w1, w2, norm_w}) {
      p.add_(p.grad(), -0.01);
      p.zero_grad();
    }
    return loss.item();
  };
  step();  // warm-up: fills the cache
  const cuda::MemoryStats before = cuda::memory_stats(0);
  const double l2 = step();
  const cuda::MemoryStats after = cuda::memory_stats(0);
  CHECK(std::isfinite(l2));
  CHECK(after.driver_mallocs == before.driver_mallocs);
  CHECK(after.in_use == before.in_use);  // nothing leaked from the step
  CHECK(after.peak >= after.in_use);
  CHECK(after.peak > 0);
  // Counters: a new tensor is counted in its block size, and freeing it moves it to the cache.
  cuda::reset_peak_memory(0);
  const cuda::MemoryStats s0 = cuda::memory_stats(0);
  CHECK(s0.peak == s0.in_use);
  {
    Tensor big = Tensor::empty({3 << 20}, DType::f32, kCUDA);  // 12 MiB: a 1 MiB-step block
    const cuda::MemoryStats s1 = cuda::memory_stats(0);
    CHECK(s1.in_use == s0.in_use + (size_t(12) << 20));
    CHECK(s1.peak == s1.in_use);
  }
  const cuda::MemoryStats s2 = cuda::memory_stats(0);
  CHECK(s2.in_use == s0.in_use);
  CHECK(s2.cached >= (size_t(12) << 20));
  {
    Tensor again = Tensor::empty({3 << 20}, DType::f32, kCUDA);  // the same block, from the cache
    CHECK(cuda::memory_stats(0).driver_mallocs == s2.driver_mallocs);
  }
  cuda::empty_cache(0);
  CHECK(cuda::memory_stats(0).cached == 0);
  // Out of memory names the op and the sizes, and leaves the allocator usable.
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 46}, DType::f32, kCUDA, "huge"),
                       doctest::Contains("[huge] out of memory on cuda:0: asked for 281474976710656 bytes"), Error);
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 23, int64_t(1) << 23}, DType::f32, kCUDA, "huge"),
                       doctest::Contains("(a float32 tensor of shape (8388608, 8388608))"), Error);
  CHECK(ones({4}, DType::f32, kCUDA).sum().item() == 4.0);
}

TEST_CASE("cuda ops: gradients are bit-identical from run to run") {
  MG_REQUIRE_CUDA();
  // The width matters on a GPU (how cuBLAS and the reductions split the work); the emulator runs every
  // launch in one fixed order, so there a narrower model (a tenth of the time under the sanitizers)
  // runs the same kernels.
#if MG_CUDA_EMULATED
  const int64_t width = 64;
#else
  const int64_t width = 512;
#endif
  Generator g(12);
  Tensor w = rnd({256, width}, DType::f32, g), nw = rnd({width}, DType::f32, g),
         proj = rnd({300, width}, DType::f32, g);
  Tensor ids = randint(0, 256, {8, 300}, &g), tg = randint(0, 300, {2400}, &g);
  auto grads = [&] {
    Tensor wd = w.to(kCUDA).requires_grad_(), nd = nw.to(kCUDA).requires_grad_(), pd = proj.to(kCUDA).requires_grad_();
    Tensor h = rms_norm(embedding(wd, ids.to(kCUDA)), nd);  // (8, 300, width)
    Tensor logits = linear(h.reshape({-1, width}), pd);     // (2400, 300)
    Tensor loss = cross_entropy(logits, tg.to(kCUDA)) + mean(sum(h * h, {0}));
    loss.backward();
    std::vector<float> out;
    for (Tensor t : {wd.grad(), nd.grad(), pd.grad(), loss.detach()}) {
      auto v = t.to_vector<float>();
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  };
  const std::vector<float> first = grads();
  for (int run = 0; run < 3; ++run) CHECK(grads() == first);
}

TEST_CASE("cuda ops: every op of the unary list matches the cpu on its gradcheck cases, values and gradients") {
  MG_REQUIRE_CUDA();
  // An entry of core/unary_ops.h has a gradcheck case and CUDA kernels by construction; this runs both.
  const auto& cases = GradcheckRegistry::get().cases();
  size_t covered = 0;
  for (std::string_view name : kUnaryOpNames) {
    for (size_t i = 0; i < cases.size(); ++i) {
      if (cases[i].op.name() != name) continue;
      Generator g(500 + i);
      CHECK(same_as_cpu(mg::format("{} [{}]", name, cases[i].label), cases[i].make_inputs(g, kCPU), cases[i].fn,
                        tol_for(DType::f64)));
      ++covered;
    }
  }
  CHECK(covered >= kUnaryOpNames.size());
}

TEST_CASE("cuda ops: the gradcheck registry passes on cuda in float64") {
  MG_REQUIRE_CUDA();
  const auto& cases = GradcheckRegistry::get().cases();
  std::set<std::string_view> ran;  // the ops with a case whose inputs were on the device
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    Generator g(1000 + i);
    auto inputs = c.make_inputs(g, kCUDA);
    for (auto& t : inputs)
      if (t.defined()) CHECK(t.device() == kCUDA);
    GradcheckResult r = gradcheck(c.fn, inputs, c.atol, c.rtol, 1e-6, i);
    INFO(op_name(c.op) << " [" << c.label << "]: " << r.message);
    CHECK(r.pass);
    bool on_device = false;
    for (auto& t : inputs) on_device = on_device || (t.defined() && t.device() == kCUDA);
    if (on_device) ran.insert(c.op.name());
  }
  for (std::string_view name : library_op_names()) {  // every differentiable op was checked on the device
    INFO("op " << std::string(name));
    CHECK(ran.count(name) == 1);
  }
}

TEST_CASE("cuda optimizer launchers: errors name the op that called them (sum_squares, mul_each_)") {
  // Device device_count() does not exist (and a build without CUDA has none): both launchers fail at once,
  // naming the op they were called for, as ops/optim.cpp's sum_squares and mul_each_ call them.
  float x = 1.0f;
  const std::vector<cuda::GradTensor> gs{{&x, 1, false}};
  const int missing = cuda::device_count();
  CHECK_THROWS_WITH_AS(cuda::grad_sum_squares(gs, missing, "sum_squares"), doctest::Contains("[sum_squares] "), Error);
  CHECK_THROWS_WITH_AS(cuda::scale_grads(gs, 2.0, missing, "mul_each_"), doctest::Contains("[mul_each_] "), Error);
  CHECK(x == 1.0f);
}
