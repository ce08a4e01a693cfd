// selective_state_update and causal_conv1d_update on CUDA against the CPU ops (which
// test_state_update.cpp checks against their composed references and the sequence ops): fresh random
// inputs, contiguous and strided, float64 tight and float32, values, new states and every gradient;
// the in-place forms on the device; device errors. Every case starts with MG_REQUIRE_CUDA().
#include <doctest/doctest.h>

#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {

struct SuCfg {
  int64_t b, d, n;
  bool D, z, bias, softplus, strided;  // strided: x, z narrows of (b, 2d); dt, B, C of (b, d + 2n)
};

const SuCfg kSuCases[] = {
    {1, 3, 4, true, true, true, true, false},      {2, 17, 16, true, true, true, true, true},
    {3, 40, 5, false, false, false, false, false}, {2, 33, 16, true, false, true, true, true},
    {2, 300, 16, true, true, true, true, true},    {1, 5, 33, false, true, false, false, true},
};

// Leaves (float64 values from a fixed seed, in `dt` on `dev`) and the op's nine arguments.
struct SuInputs {
  std::vector<Tensor> leaves, args;
};

SuInputs su_inputs(const SuCfg& c, Device dev, DType dt) {
  Generator g(19);
  auto leaf = [&](Tensor t) { return t.to(dt).to(dev).detach().requires_grad_(); };
  auto rn = [&](const Shape& s) { return leaf(randn(s, DType::f64, &g)); };
  auto un = [&](const Shape& s, double lo, double hi) { return leaf(rand(s, DType::f64, &g, lo, hi)); };
  Tensor state = rn({c.b, c.d, c.n}), A = un({c.d, c.n}, -2.0, -0.2);
  Tensor D = c.D ? rn({c.d}) : Tensor(), bias = c.bias ? un({c.d}, -1.0, 1.0) : Tensor();
  Tensor xz = rn({c.b, 2 * c.d}), dbl = rn({c.b, c.d + 2 * c.n});
  SuInputs in;
  in.leaves = {state, xz, dbl, A, D, bias};
  auto cut = [&](const Tensor& t, int64_t at, int64_t len) {
    Tensor v = narrow(t, 1, at, len);
    return c.strided ? v : contiguous(v);
  };
  in.args = {state,
             cut(xz, 0, c.d),
             cut(dbl, 0, c.d),
             A,
             cut(dbl, c.d, c.n),
             cut(dbl, c.d + c.n, c.n),
             D,
             c.z ? cut(xz, c.d, c.d) : Tensor(),
             bias};
  return in;
}

Tensor host64(const Tensor& t) { return t.detach().to(kCPU).to(DType::f64); }

}  // namespace

TEST_CASE("cuda selective_state_update: equals the CPU op (float64 tight, float32), strided, every gradient") {
  MG_REQUIRE_CUDA();
  for (const SuCfg& c : kSuCases) {
    SuInputs want = su_inputs(c, kCPU, DType::f64);
    auto run = [&](SuInputs& in) {
      auto& a = in.args;
      return selective_state_update(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c.softplus);
    };
    StateUpdateResult rw = run(want);
    Generator g(4);
    Tensor gy = randn({c.b, c.d}, DType::f64, &g), gs = randn({c.b, c.d, c.n}, DType::f64, &g);
    add(sum(mul(rw.y, gy)), sum(mul(rw.state, gs))).backward();
    for (DType dt : {DType::f64, DType::f32}) {
      SuInputs got = su_inputs(c, kCUDA, dt);
      StateUpdateResult r = run(got);
      REQUIRE(r.y.device() == kCUDA);
      const double tol = dt == DType::f64 ? 1e-13 : 1e-5, tol_g = dt == DType::f64 ? 1e-12 : 1e-5;
      INFO("b " << c.b << " d " << c.d << " n " << c.n << " strided " << c.strided << " " << dtype_name(dt));
      CHECK(rel_err(host64(r.y), rw.y) < tol);
      CHECK(rel_err(host64(r.state), rw.state) < tol);
      add(sum(mul(r.y, gy.to(dt).to(kCUDA))), sum(mul(r.state, gs.to(dt).to(kCUDA)))).backward();
      for (size_t i = 0; i < got.leaves.size(); ++i) {
        if (!got.leaves[i].defined()) continue;
        INFO("gradient of leaf " << i);
        REQUIRE(got.leaves[i].grad().defined());
        CHECK(got.leaves[i].grad().device() == kCUDA);
        CHECK(rel_err(host64(got.leaves[i].grad()), want.leaves[i].grad()) < tol_g);
      }
    }
  }
}

TEST_CASE("cuda selective_state_update: the in-place form on the device equals the functional one") {
  MG_REQUIRE_CUDA();
  NoGradGuard ng;
  for (const SuCfg& c : kSuCases)
    for (DType dt : {DType::f32, DType::f64}) {
      SuInputs in = su_inputs(c, kCUDA, dt);
      auto& a = in.args;
      StateUpdateResult want = selective_state_update(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c.softplus);
      Tensor state = a[0].clone(), out = Tensor::empty({c.b, c.d}, dt, kCUDA);
      selective_state_update_(state, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c.softplus, out);
      CHECK(host64(out).to_vector<double>() == host64(want.y).to_vector<double>());
      CHECK(host64(state).to_vector<double>() == host64(want.state).to_vector<double>());
    }
}

TEST_CASE("cuda causal_conv1d_update: equals the CPU op for k = 1, 2, 4, 5 (values, state, gradients, in place)") {
  MG_REQUIRE_CUDA();
  struct Cfg {
    int64_t b, d, k;
    bool bias, silu;
  };
  for (const Cfg c : {Cfg{1, 3, 4, true, true}, Cfg{2, 17, 4, false, false}, Cfg{3, 5, 1, true, true},
                      Cfg{2, 20, 2, true, false}, Cfg{2, 300, 5, false, true}}) {
    auto inputs = [&](Device dev, DType dt) {
      Generator g(6);
      std::vector<Tensor> v{randn({c.b, c.d, c.k - 1}, DType::f64, &g), randn({c.b, 2 * c.d}, DType::f64, &g),
                            randn({c.d, c.k}, DType::f64, &g), c.bias ? randn({c.d}, DType::f64, &g) : Tensor()};
      for (auto& t : v)
        if (t.defined()) t = t.to(dt).to(dev).detach().requires_grad_();
      return v;
    };
    Generator g(7);
    Tensor gy = randn({c.b, c.d}, DType::f64, &g), gs = randn({c.b, c.d, c.k - 1}, DType::f64, &g);
    std::vector<Tensor> want = inputs(kCPU, DType::f64);
    ConvUpdateResult rw = causal_conv1d_update(want[0], narrow(want[1], 1, c.d, c.d), want[2], want[3], c.silu);
    add(sum(mul(rw.y, gy)), sum(mul(rw.state, gs))).backward();
    for (DType dt : {DType::f64, DType::f32}) {
      std::vector<Tensor> got = inputs(kCUDA, dt);
      ConvUpdateResult r = causal_conv1d_update(got[0], narrow(got[1], 1, c.d, c.d), got[2], got[3], c.silu);
      const double tol = dt == DType::f64 ? 1e-13 : 1e-6;
      INFO("b " << c.b << " d " << c.d << " k " << c.k << " " << dtype_name(dt));
      CHECK(rel_err(host64(r.y), rw.y) < tol);
      if (c.k > 1) CHECK(rel_err(host64(r.state), rw.state) < tol);
      add(sum(mul(r.y, gy.to(dt).to(kCUDA))), sum(mul(r.state, gs.to(dt).to(kCUDA)))).backward();
      for (size_t i = 0; i < 4; ++i) {
        if (!got[i].defined() || got[i].numel() == 0) continue;
        INFO("gradient of input " << i);
        CHECK(rel_err(host64(got[i].grad()), want[i].grad()) < tol * 10);
      }
      NoGradGuard ng;
      Tensor st = got[0].detach().clone(), out = Tensor::empty({c.b, c.d}, dt, kCUDA);
      causal_conv1d_update_(st, narrow(got[1], 1, c.d, c.d), got[2], got[3], c.silu, out);
      CHECK(host64(out).to_vector<double>() == host64(r.y).to_vector<double>());
      CHECK(host64(st).to_vector<double>() == host64(r.state).to_vector<double>());
    }
  }
}

TEST_CASE("cuda state updates: inputs on two devices are an error naming the op and the devices") {
  MG_REQUIRE_CUDA();
  Tensor h = zeros({1, 4, 2}, DType::f32, kCUDA), x = zeros({1, 4}, DType::f32, kCUDA),
         A = zeros({4, 2}, DType::f32, kCUDA), B = zeros({1, 2}, DType::f32, kCUDA);
  check_error(
      [&] {
        selective_state_update(h, x, x, A, B, zeros({1, 2}));
      },
      {"[selective_state_update] C is on cpu but x is on cuda:0"});
  Tensor out = zeros({1, 4});
  check_error([&] { selective_state_update_(h, x, x, A, B, B, Tensor(), Tensor(), Tensor(), false, out); },
              {"[selective_state_update_] out is on cpu but x is on cuda:0"});
  check_error(
      [&] {
        causal_conv1d_update(zeros({1, 4, 3}), x, zeros({4, 4}, DType::f32, kCUDA));
      },
      {"[causal_conv1d_update] conv_state is on cpu but x is on cuda:0"});
}
