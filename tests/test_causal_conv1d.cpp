// causal_conv1d: gradcheck over kernel widths and options, the fused op against its composed
// reference, a hand-computed case, determinism, error messages and the PyTorch fixture.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "ops/gradcheck.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/fixture.h"

using namespace mg;

namespace {

}  // namespace

TEST_CASE("causal_conv1d: gradcheck over kernel widths, bias and silu (float64)") {
  struct Cfg {
    int64_t b, l, d, k;
    bool bias, silu;
  };
  const Cfg cfgs[] = {{2, 7, 5, 4, true, true},   {2, 7, 5, 4, false, false}, {1, 4, 3, 1, true, false},
                      {1, 1, 3, 4, true, true},   {2, 3, 4, 5, false, true},  {1, 5, 70, 4, true, true},
                      {2, 9, 2, 2, true, false}};
  for (const Cfg& c : cfgs) {
    Generator g(11);
    std::vector<Tensor> in{gc_randn({c.b, c.l, c.d}, g, kCPU), gc_randn({c.d, c.k}, g, kCPU),
                           c.bias ? gc_randn({c.d}, g, kCPU) : Tensor()};
    GradcheckResult r =
        gradcheck([&](const std::vector<Tensor>& x) { return causal_conv1d(x[0], x[1], x[2], c.silu); }, in);
    INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu
              << ": " << r.message);
    CHECK(r.pass);
  }
}

TEST_CASE("causal_conv1d: hand-computed values, x at negative times is zero") {
  // d = 1, k = 3, weight (1, 2, 3), bias 10, x = 1, 2, 3, 4:
  // y0 = 10 + 3*1, y1 = 10 + 2*1 + 3*2, y2 = 10 + 1 + 4 + 9, y3 = 10 + 2 + 6 + 12.
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4, 1});
  Tensor w = from_vector<double>({1, 2, 3}, {1, 3}), b = from_vector<double>({10}, {1});
  CHECK(causal_conv1d(x, w, b).to_vector<double>() == std::vector<double>{13, 18, 24, 30});
  CHECK(causal_conv1d_reference(x, w, b).to_vector<double>() == std::vector<double>{13, 18, 24, 30});
  auto s = causal_conv1d(x, w, b, true).to_vector<double>();
  CHECK(s[0] == doctest::Approx(13 / (1 + std::exp(-13.0))).epsilon(1e-14));
}

TEST_CASE("causal_conv1d: fused equals the composed reference (float64 and float32)") {
  for (DType dt : {DType::f64, DType::f32}) {
    for (bool silu : {false, true}) {
      Generator g(21);
      Tensor x0 = randn({2, 1000, 70}, DType::f64, &g), w0 = randn({70, 4}, DType::f64, &g),
             b0 = randn({70}, DType::f64, &g), dy = randn({2, 1000, 70}, DType::f64, &g);
      auto leaf = [&](const Tensor& t, DType d) { return t.to(d).detach().requires_grad_(); };
      Tensor x = leaf(x0, dt), w = leaf(w0, dt), b = leaf(b0, dt);
      Tensor xr = leaf(x0, DType::f64), wr = leaf(w0, DType::f64), br = leaf(b0, DType::f64);
      Tensor y = causal_conv1d(x, w, b, silu), yr = causal_conv1d_reference(xr, wr, br, silu);
      const double tol_y = dt == DType::f64 ? 1e-13 : 1e-5, tol_g = dt == DType::f64 ? 1e-12 : 1e-4;
      INFO("dtype " << dtype_name(dt) << " silu " << silu);
      CHECK(rel_err(y, yr) < tol_y);
      sum(mul(y, dy.to(dt))).backward();
      sum(mul(yr, dy)).backward();
      CHECK(rel_err(x.grad(), xr.grad()) < tol_g);
      CHECK(rel_err(w.grad(), wr.grad()) < tol_g);
      CHECK(rel_err(b.grad(), br.grad()) < tol_g);
    }
  }
}

TEST_CASE("causal_conv1d: gradients are bit-identical across thread counts") {
  Generator g(2);
  Tensor x0 = randn({4, 500, 130}, DType::f32, &g), w0 = randn({130, 4}, DType::f32, &g),
         b0 = randn({130}, DType::f32, &g), dy = randn({4, 500, 130}, DType::f32, &g);
  const int saved = num_threads();
  std::vector<std::vector<float>> first;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    sum(mul(causal_conv1d(x, w, b, true), dy)).backward();
    std::vector<std::vector<float>> got{x.grad().to_vector<float>(), w.grad().to_vector<float>(),
                                        b.grad().to_vector<float>()};
    if (first.empty()) first = got;
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("threads " << threads << " gradient " << i);
      CHECK(std::memcmp(first[i].data(), got[i].data(), got[i].size() * sizeof(float)) == 0);
    }
  }
  set_num_threads(saved);
}

TEST_CASE("causal_conv1d: matches the PyTorch fixture (outputs and every gradient)") {
  auto fx = test::load_scan_fixture();
  for (const char* name : {"conv_k4", "conv_k3"}) {
    auto get = [&](const std::string& what) {
      auto it = fx.find(std::string(name) + "." + what);
      return it == fx.end() ? Tensor() : it->second;
    };
    REQUIRE(get("x").defined());
    Tensor x = get("x").clone().requires_grad_(), w = get("weight").clone().requires_grad_();
    Tensor b = get("bias").defined() ? get("bias").clone().requires_grad_() : Tensor();
    Tensor y = causal_conv1d(x, w, b, get("flags").item() != 0);
    INFO(name);
    CHECK(rel_err(y, get("y")) < 1e-13);
    sum(mul(y, get("dy"))).backward();
    CHECK(rel_err(x.grad(), get("grad.x")) < 1e-12);
    CHECK(rel_err(w.grad(), get("grad.weight")) < 1e-12);
    if (b.defined()) CHECK(rel_err(b.grad(), get("grad.bias")) < 1e-12);
  }
}

TEST_CASE("causal_conv1d: error messages name the op, the tensor and the shapes") {
  Tensor x = zeros({2, 7, 5});
  CHECK_THROWS_WITH_AS(causal_conv1d(x, zeros({4, 4})),
                       "[causal_conv1d] weight must be (5, k) with k >= 1 to match x (2, 7, 5), got (4, 4)", Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(x, zeros({5, 0})),
                       "[causal_conv1d] weight must be (5, k) with k >= 1 to match x (2, 7, 5), got (5, 0)", Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(x, zeros({5, 4}), zeros({4})),
                       "[causal_conv1d] bias must be (5,) to match x (2, 7, 5), got (4,)", Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(zeros({7, 5}), zeros({5, 4})), "[causal_conv1d] x must be (b, l, d), got (7, 5)",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(x, zeros({5, 4}, DType::f64)),
                       "[causal_conv1d] weight is float64 but x is float32: all inputs must share one dtype", Error);
}
