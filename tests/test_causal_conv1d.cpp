// causal_conv1d: gradcheck over kernel widths and options, the fused op against its composed
// reference, a hand-computed case, determinism, error messages and the PyTorch fixture.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "ops/gradcheck.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"
#include "tests/fixture.h"

using namespace mg;

TEST_CASE("causal_conv1d: gradcheck over kernel widths, bias and silu (float64)") {
  struct Cfg {
    int64_t b, l, d, k;
    bool bias, silu;
  };
  const Cfg cfgs[] = {{2, 7, 5, 4, true, true}, {2, 7, 5, 4, false, false}, {1, 4, 3, 1, true, false},
                      {1, 1, 3, 4, true, true}, {2, 3, 4, 5, false, true},  {1, 5, 70, 4, true, true},
                      {2, 9, 2, 2, true, false}};
  for (const Cfg& c : cfgs) {
    Generator g(11);
    std::vector<Tensor> in{gc_randn({c.b, c.l, c.d}, g, kCPU), gc_randn({c.d, c.k}, g, kCPU),
                           c.bias ? gc_randn({c.d}, g, kCPU) : Tensor()};
    GradcheckResult r =
        gradcheck([&](const std::vector<Tensor>& x) { return causal_conv1d(x[0], x[1], x[2], c.silu); }, in);
    INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu << ": "
              << r.message);
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

TEST_CASE("causal_conv1d: silu's gradient where the pre-activation is 0 or -0 is silu'(0) = 1/2 (no 0 / 0)") {
  // x = 0, so pre = bias: 0 in channel 0 and -0 in channel 1. With dy = 1, dpre = 1/2 at every time:
  // dbias = l / 2, dweight = 0 (x is 0), dx[s] = (w[c, 0] + w[c, 1]) / 2 but at the last time w[c, 1] / 2.
  for (DType dt : {DType::f64, DType::f32}) {
    INFO("dtype " << dtype_name(dt));
    Tensor x = zeros({1, 3, 2}, dt).requires_grad_();
    Tensor w = from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt).requires_grad_();
    Tensor b = from_vector<double>({0.0, -0.0}, {2}).to(dt).requires_grad_();
    sum(causal_conv1d(x, w, b, /*apply_silu=*/true)).backward();
    CHECK(x.grad().to(DType::f64).to_vector<double>() == std::vector<double>{1.5, 3.5, 1.5, 3.5, 1.0, 2.0});
    CHECK(w.grad().to(DType::f64).to_vector<double>() == std::vector<double>{0, 0, 0, 0});
    CHECK(b.grad().to(DType::f64).to_vector<double>() == std::vector<double>{1.5, 1.5});
  }
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

namespace {

// Case `c` of a conv fixture against causal_conv1d, or with_state causal_conv1d_with_state from the case's
// initial state: outputs within 1e-13 of PyTorch's (the final state exact), every gradient within 1e-12.
void check_conv_fixture(const test::FixtureCase& c, bool with_state) {
  REQUIRE(c.get("x").defined());
  Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias"), st = c.leaf("initial_state");
  if (with_state) REQUIRE(st.defined());
  const bool silu = c.get("flags").item() != 0;
  INFO(c.name);
  if (with_state) {
    ConvResult r = causal_conv1d_with_state(x, w, b, silu, st);
    CHECK(rel_err(r.y, c.get("y")) < 1e-13);
    CHECK(rel_err(r.final_state, c.get("final_state")) == 0);
    add(sum(mul(r.y, c.get("dy"))), sum(mul(r.final_state, c.get("dfinal")))).backward();
    CHECK(rel_err(st.grad(), c.get("grad.initial_state")) < 1e-12);
  } else {
    Tensor y = causal_conv1d(x, w, b, silu);
    CHECK(rel_err(y, c.get("y")) < 1e-13);
    sum(mul(y, c.get("dy"))).backward();
  }
  CHECK(rel_err(x.grad(), c.get("grad.x")) < 1e-12);
  CHECK(rel_err(w.grad(), c.get("grad.weight")) < 1e-12);
  if (b.defined()) CHECK(rel_err(b.grad(), c.get("grad.bias")) < 1e-12);
}

}  // namespace

TEST_CASE("causal_conv1d: matches the PyTorch fixture (outputs and every gradient)") {
  auto fx = test::load_scan_fixture();
  for (const char* name : {"conv_k4", "conv_k3"}) check_conv_fixture({fx, name}, false);
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

// ---- the initial state and the final state ----

namespace {

// y and final_state flattened into one output (final_state left out when it is empty, k = 1).
Tensor conv_both(const ConvResult& r) {
  if (r.final_state.numel() == 0) return r.y;
  return cat({reshape(r.y, {r.y.numel()}), reshape(r.final_state, {r.final_state.numel()})}, 0);
}

struct StateCfg {
  int64_t b, l, d, k;
  bool bias, silu, init;
};

}  // namespace

TEST_CASE("causal_conv1d: gradcheck with an initial state and through the final state (float64)") {
  const StateCfg cfgs[] = {
      {2, 7, 5, 4, true, true, true},     // k 4
      {2, 7, 5, 4, false, false, false},  // no initial state: zeros, the final state still differentiable
      {1, 4, 3, 1, true, true, true},     // k 1: the state is (b, d, 0)
      {1, 1, 3, 4, true, true, true},     // l 1 < k - 1
      {2, 2, 3, 4, false, false, true},   // l 2 < k - 1
      {1, 2, 3, 4, true, false, false},   // l < k - 1 without an initial state: zeros in the final state
      {2, 3, 4, 5, true, true, true},     // l 3 < k - 1 = 4
      {2, 9, 2, 2, true, false, true},    // k 2
  };
  for (const StateCfg& c : cfgs) {
    Generator g(19);
    std::vector<Tensor> in{gc_randn({c.b, c.l, c.d}, g, kCPU), gc_randn({c.d, c.k}, g, kCPU),
                           c.bias ? gc_randn({c.d}, g, kCPU) : Tensor(),
                           c.init ? gc_randn({c.b, c.d, c.k - 1}, g, kCPU) : Tensor()};
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& x) {
          return conv_both(causal_conv1d_with_state(x[0], x[1], x[2], c.silu, x[3]));
        },
        in);
    INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu
              << " initial state " << c.init << ": " << r.message);
    CHECK(r.pass);
  }
}

TEST_CASE("causal_conv1d: hand-computed values, final state and initial-state gradient") {
  // d = 1, k = 3, weight (1, 2, 3), bias 10, initial state (5, 6) (5 the oldest), x = 1, 2:
  // y0 = 10 + 1*5 + 2*6 + 3*1 = 30, y1 = 10 + 1*6 + 2*1 + 3*2 = 24; final state (1, 2).
  // For the loss y0 + y1: d state[0] = w0 (through y0) = 1, d state[1] = w1 + w0 (y0, y1) = 3.
  Tensor x = from_vector<double>({1, 2}, {1, 2, 1});
  Tensor w = from_vector<double>({1, 2, 3}, {1, 3}), b = from_vector<double>({10}, {1});
  for (bool reference : {false, true}) {
    Tensor st = from_vector<double>({5, 6}, {1, 1, 2}).requires_grad_();
    auto f = reference ? causal_conv1d_with_state_reference : causal_conv1d_with_state;
    ConvResult r = f(x, w, b, false, st);
    INFO("reference " << reference);
    CHECK(r.y.to_vector<double>() == std::vector<double>{30, 24});
    CHECK(r.final_state.shape() == Shape{1, 1, 2});
    CHECK(r.final_state.to_vector<double>() == std::vector<double>{1, 2});
    sum(r.y).backward();
    CHECK(st.grad().to_vector<double>() == std::vector<double>{1, 3});
    // One step (l = 1 < k - 1): the final state keeps the newest state entry and appends x.
    ConvResult one = f(narrow(x, 1, 0, 1), w, b, false, st);
    CHECK(one.y.to_vector<double>() == std::vector<double>{30});
    CHECK(one.final_state.to_vector<double>() == std::vector<double>{6, 1});
  }
  // Without an initial state the final state has zeros where no input was seen.
  ConvResult z = causal_conv1d_with_state(narrow(x, 1, 0, 1), w, b);
  CHECK(z.final_state.to_vector<double>() == std::vector<double>{0, 1});
  // k = 1: the state is empty.
  ConvResult k1 = causal_conv1d_with_state(x, narrow(w, 1, 2, 1), b, false, zeros({1, 1, 0}, DType::f64));
  CHECK(k1.y.to_vector<double>() == std::vector<double>{13, 16});
  CHECK(k1.final_state.shape() == Shape{1, 1, 0});
}

TEST_CASE("causal_conv1d: with an initial state, fused equals the composed reference (float64 and float32)") {
  const StateCfg cfgs[] = {{2, 1000, 70, 4, true, true, true},
                           {3, 2, 9, 4, true, false, true},
                           {2, 50, 33, 9, false, true, true},
                           {2, 20, 5, 1, true, true, true},
                           {2, 20, 5, 4, true, true, false}};
  for (const StateCfg& c : cfgs)
    for (DType dt : {DType::f64, DType::f32}) {
      Generator g(23);
      std::vector<Tensor> in0{randn({c.b, c.l, c.d}, DType::f64, &g), randn({c.d, c.k}, DType::f64, &g),
                              c.bias ? randn({c.d}, DType::f64, &g) : Tensor(),
                              c.init ? randn({c.b, c.d, c.k - 1}, DType::f64, &g) : Tensor()};
      Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), ds = randn({c.b, c.d, c.k - 1}, DType::f64, &g);
      auto leaves = [&](DType d) {
        std::vector<Tensor> v;
        for (auto& t : in0) v.push_back(t.defined() ? t.to(d).detach().requires_grad_() : Tensor());
        return v;
      };
      std::vector<Tensor> f = leaves(dt), r = leaves(DType::f64);
      ConvResult fr = causal_conv1d_with_state(f[0], f[1], f[2], c.silu, f[3]);
      ConvResult rr = causal_conv1d_with_state_reference(r[0], r[1], r[2], c.silu, r[3]);
      const double tol_y = dt == DType::f64 ? 1e-13 : 1e-5, tol_g = dt == DType::f64 ? 1e-12 : 1e-4;
      INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " initial state " << c.init << " "
                << dtype_name(dt));
      REQUIRE(fr.final_state.shape() == Shape{c.b, c.d, c.k - 1});
      REQUIRE(rr.final_state.shape() == Shape{c.b, c.d, c.k - 1});
      CHECK(rel_err(fr.y, rr.y) < tol_y);
      // A copy of inputs: exact, but for the float32 rounding of those inputs.
      CHECK(rel_err(fr.final_state, rr.final_state) <= (dt == DType::f64 ? 0.0 : 1e-7));
      add(sum(mul(fr.y, dy.to(dt))), sum(mul(fr.final_state, ds.to(dt)))).backward();
      add(sum(mul(rr.y, dy)), sum(mul(rr.final_state, ds))).backward();
      const char* names[] = {"x", "weight", "bias", "initial_state"};
      for (size_t i = 0; i < 4; ++i) {
        if (!in0[i].defined() || in0[i].numel() == 0) continue;
        REQUIRE(f[i].grad().defined());
        INFO("gradient of " << std::string(names[i]));
        CHECK(rel_err(f[i].grad(), r[i].grad()) < tol_g);
      }
    }
}

TEST_CASE("causal_conv1d: a zero initial state gives bit-identical outputs and gradients to none") {
  Generator g(6);
  Tensor x0 = randn({2, 300, 40}, DType::f32, &g), w0 = randn({40, 4}, DType::f32, &g),
         b0 = randn({40}, DType::f32, &g), dy = randn({2, 300, 40}, DType::f32, &g);
  std::vector<std::vector<float>> runs[2];
  for (int zero : {0, 1}) {
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    Tensor y = causal_conv1d(x, w, b, true, zero ? zeros({2, 40, 3}) : Tensor());
    sum(mul(y, dy)).backward();
    runs[zero] = {y.to_vector<float>(), x.grad().to_vector<float>(), w.grad().to_vector<float>(),
                  b.grad().to_vector<float>()};
  }
  for (size_t i = 0; i < runs[0].size(); ++i) {
    INFO("tensor " << i);
    CHECK(runs[0][i] == runs[1][i]);
  }
}

TEST_CASE("causal_conv1d: a sequence run in pieces that carry final_state equals one call (values, every gradient)") {
  struct Case {
    StateCfg c;
    std::vector<int64_t> pieces;
  };
  const Case cases[] = {
      {{2, 12, 5, 4, true, true, true}, {1, 2, 1, 5, 3}},  // pieces shorter than k - 1
      {{2, 12, 5, 4, true, false, false}, {4, 8}},         // the first piece from zeros
      {{1, 9, 3, 1, true, true, true}, {2, 3, 4}},         // k = 1: empty states
      {{2, 10, 7, 6, false, true, true}, {1, 1, 1, 7}},    // k 6
  };
  for (const Case& cs : cases) {
    const StateCfg& c = cs.c;
    Generator g(29);
    std::vector<Tensor> in0{randn({c.b, c.l, c.d}, DType::f64, &g), randn({c.d, c.k}, DType::f64, &g),
                            c.bias ? randn({c.d}, DType::f64, &g) : Tensor(),
                            c.init ? randn({c.b, c.d, c.k - 1}, DType::f64, &g) : Tensor()};
    Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), ds = randn({c.b, c.d, c.k - 1}, DType::f64, &g);
    auto leaves = [&] {
      std::vector<Tensor> v;
      for (auto& t : in0) v.push_back(t.defined() ? t.clone().requires_grad_() : Tensor());
      return v;
    };
    std::vector<Tensor> whole = leaves(), parts = leaves();
    ConvResult w = causal_conv1d_with_state(whole[0], whole[1], whole[2], c.silu, whole[3]);
    std::vector<Tensor> ys;
    Tensor st = parts[3];
    int64_t t0 = 0;
    for (int64_t len : cs.pieces) {
      ConvResult r = causal_conv1d_with_state(narrow(parts[0], 1, t0, len), parts[1], parts[2], c.silu, st);
      ys.push_back(r.y);
      st = r.final_state;
      t0 += len;
    }
    REQUIRE(t0 == c.l);
    Tensor y = cat(ys, 1);
    INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " initial state " << c.init);
    REQUIRE(st.shape() == w.final_state.shape());
    CHECK(rel_err(y, w.y) < 1e-13);
    CHECK(rel_err(st, w.final_state) == 0);
    add(sum(mul(w.y, dy)), sum(mul(w.final_state, ds))).backward();
    add(sum(mul(y, dy)), sum(mul(st, ds))).backward();
    const char* names[] = {"x", "weight", "bias", "initial_state"};
    for (size_t i = 0; i < 4; ++i) {
      if (!in0[i].defined() || in0[i].numel() == 0) continue;
      REQUIRE(parts[i].grad().defined());
      INFO("gradient of " << std::string(names[i]));
      CHECK(rel_err(parts[i].grad(), whole[i].grad()) < 1e-12);
    }
  }
}

TEST_CASE("causal_conv1d: matches the PyTorch fixture with an initial state (outputs, final state, every gradient)") {
  auto fx = test::load_fixture("scan_state_fixture.bin", "MGSTATFX");
  for (const char* name : {"conv_state_k4", "conv_state_short"}) check_conv_fixture({fx, name}, true);
}

namespace {
// causal_conv1d of an empty x (b, l or d of 0): an empty output; dweight, dbias and the initial state's
// gradient are sums of nothing, zeros; dx is empty.
void check_empty_conv(Device dev) {
  struct Cfg {
    int64_t b, l, d, k;
  };
  for (Cfg c : {Cfg{0, 5, 3, 4}, Cfg{2, 0, 3, 4}, Cfg{2, 5, 0, 4}, Cfg{2, 0, 3, 1}})
    for (bool silu : {false, true}) {
      CAPTURE(c.b);
      CAPTURE(c.l);
      CAPTURE(c.d);
      CAPTURE(c.k);
      CAPTURE(silu);
      Generator g(5);
      auto leaf = [&](Shape s) { return randn(s, DType::f64, &g).to(dev).requires_grad_(); };
      Tensor x = leaf({c.b, c.l, c.d}), w = leaf({c.d, c.k}), bias = leaf({c.d}), init = leaf({c.b, c.d, c.k - 1});
      Tensor y = causal_conv1d(x, w, bias, silu, init);
      REQUIRE(y.shape() == x.shape());
      sum(y).backward();
      CHECK(x.grad().shape() == x.shape());
      CHECK(w.grad().to(kCPU).to_vector<double>() == std::vector<double>(c.d * c.k, 0.0));
      CHECK(bias.grad().to(kCPU).to_vector<double>() == std::vector<double>(c.d, 0.0));
      CHECK(init.grad().to(kCPU).to_vector<double>() == std::vector<double>(c.b * c.d * (c.k - 1), 0.0));
    }
}
}  // namespace

TEST_CASE("causal_conv1d: an empty x gives an empty output and zero gradients for weight, bias and initial state") {
  check_empty_conv(kCPU);
}

TEST_CASE("cuda causal_conv1d: an empty x gives an empty output and zero gradients, as on the cpu (no empty launch)") {
  MG_REQUIRE_CUDA();
  check_empty_conv(kCUDA);
}
