// selective_state_update and causal_conv1d_update: the fused ops against their composed references
// (values and every gradient, float64 and float32, contiguous and strided inputs); against the sequence
// ops they are steps of (stepping from zero states over l tokens gives selective_scan's y and last
// state and causal_conv1d's output, and backprop through the steps gives the sequence ops' gradients;
// stepping from random states gives the sequence ops started from those initial states, their final
// states and the initial states' gradients);
// the in-place forms against the functional ones; rows independent of the batch and the thread count;
// error messages.
#include <doctest/doctest.h>

#include <cstring>

#include "autograd/grad_mode.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {

struct SuCfg {
  int64_t b, d, n;
  bool D = true, z = true, bias = true, softplus = true;
  bool strided = false;  // x, z narrows of one (b, 2d); dt, B, C narrows of one (b, d + 2n)
};

// The nine inputs (state, x, dt, A, B, C, D, z, dt_bias) as float64 leaves, plus, when strided, the
// two wide tensors the views come from (then the views are not leaves: the wide tensors are).
struct SuInputs {
  std::vector<Tensor> leaves;  // what gradients are compared on
  std::vector<Tensor> args;    // what the op is called with
};

SuInputs su_inputs(const SuCfg& c, Generator& g, DType dt) {
  auto leaf = [&](Tensor t) { return t.to(dt).detach().requires_grad_(); };
  auto rn = [&](const Shape& s) { return leaf(randn(s, DType::f64, &g)); };
  auto un = [&](const Shape& s, double lo, double hi) { return leaf(rand(s, DType::f64, &g, lo, hi)); };
  SuInputs in;
  Tensor state = rn({c.b, c.d, c.n}), A = un({c.d, c.n}, -2.0, -0.2);
  Tensor D = c.D ? rn({c.d}) : Tensor(), bias = c.bias ? un({c.d}, -1.0, 1.0) : Tensor();
  if (!c.strided) {
    Tensor x = rn({c.b, c.d}), dtt = c.softplus ? rn({c.b, c.d}) : un({c.b, c.d}, 0.05, 0.6);
    Tensor B = rn({c.b, c.n}), C = rn({c.b, c.n}), z = c.z ? rn({c.b, c.d}) : Tensor();
    in.leaves = {state, x, dtt, A, B, C, D, z, bias};
    in.args = in.leaves;
    return in;
  }
  Tensor xz = rn({c.b, 2 * c.d}), dbl = rn({c.b, c.d + 2 * c.n});  // like in_proj's and x_proj's outputs
  in.leaves = {state, xz, dbl, A, D, bias};
  in.args = {state,
             narrow(xz, 1, 0, c.d),
             narrow(dbl, 1, 0, c.d),
             A,
             narrow(dbl, 1, c.d, c.n),
             narrow(dbl, 1, c.d + c.n, c.n),
             D,
             c.z ? narrow(xz, 1, c.d, c.d) : Tensor(),
             bias};
  return in;
}

StateUpdateResult su_call(const SuCfg& c, const std::vector<Tensor>& a, bool reference) {
  auto f = reference ? selective_state_update_reference : selective_state_update;
  return f(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c.softplus);
}

// Fused in `dt` against the reference in float64 on the same values: y, the new state, and the
// gradients of sum(y gy) + sum(state' gs) for every leaf.
void su_compare(const SuCfg& c, DType dt, double tol_y, double tol_g) {
  Generator g(17);
  SuInputs fin = su_inputs(c, g, dt);
  Generator g2(17);
  SuInputs rin = su_inputs(c, g2, DType::f64);
  StateUpdateResult f = su_call(c, fin.args, false), r = su_call(c, rin.args, true);
  INFO("b " << c.b << " d " << c.d << " n " << c.n << " D " << c.D << " z " << c.z << " bias " << c.bias << " softplus "
            << c.softplus << " strided " << c.strided << " " << dtype_name(dt));
  CHECK(f.y.dtype() == dt);
  CHECK(f.y.shape() == Shape{c.b, c.d});
  CHECK(f.state.shape() == Shape{c.b, c.d, c.n});
  CHECK(rel_err(f.y, r.y) < tol_y);
  CHECK(rel_err(f.state, r.state) < tol_y);
  Tensor gy = randn({c.b, c.d}, DType::f64, &g), gs = randn({c.b, c.d, c.n}, DType::f64, &g);
  add(sum(mul(f.y, gy.to(dt))), sum(mul(f.state, gs.to(dt)))).backward();
  add(sum(mul(r.y, gy)), sum(mul(r.state, gs))).backward();
  for (size_t i = 0; i < fin.leaves.size(); ++i) {
    if (!fin.leaves[i].defined()) continue;
    REQUIRE(fin.leaves[i].grad().defined());
    const double e = rel_err(fin.leaves[i].grad(), rin.leaves[i].grad());
    INFO("gradient of leaf " << i << " rel err " << e);
    CHECK(e < tol_g);
  }
}

const SuCfg kSuCases[] = {
    {1, 3, 4},
    {2, 17, 16},
    {3, 40, 5, false, false, false, false},
    {2, 33, 16, true, false, true, true},
    {2, 16, 20, false, true, false, true},
    {1, 64, 16, true, true, true, true, true},
    {3, 21, 16, true, false, false, true, true},
    {2, 5, 33, true, true, true, false, true},
};

struct ConvCfg {
  int64_t b, d, k;
  bool bias, silu;
};
const ConvCfg kConvCases[] = {{1, 3, 4, true, true},   {2, 17, 4, false, false},
                              {3, 5, 1, true, true},   {2, 20, 2, true, false},
                              {2, 33, 5, false, true}, {3, 48, 8, true, true},  // the widest window of the vector path
                              {2, 32, 9, true, false}};

}  // namespace

TEST_CASE("selective_state_update: fused equals the composed reference (f64 and f32, strided views, every gradient)") {
  for (const SuCfg& c : kSuCases) {
    su_compare(c, DType::f64, 1e-13, 1e-12);
    su_compare(c, DType::f32, 1e-5, 1e-5);
  }
}

namespace {
// Stepping selective_state_update over l tokens, from zeros or (with_state) from a random state h0,
// gives selective_scan's y, last state and every gradient, h0's included: for the scan's initial
// state an independent oracle, since the step op's vjp is composed from primitive ops.
void check_steps_give_scan(uint64_t seed, bool with_state) {
  const int64_t b = 2, l = 9, d = 19, n = 16;
  for (bool full : {true, false}) {
    Generator g(seed);
    auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g).requires_grad_(); };
    Tensor u = rn({b, l, d}),
           delta = full ? rn({b, l, d}) : rand({b, l, d}, DType::f64, &g, 0.05, 0.6).requires_grad_();
    Tensor A = rand({d, n}, DType::f64, &g, -2.0, -0.2).requires_grad_(), B = rn({b, l, n}), C = rn({b, l, n});
    Tensor D = full ? rn({d}) : Tensor(), z = full ? rn({b, l, d}) : Tensor();
    Tensor bias = full ? rand({d}, DType::f64, &g, -1.0, 1.0).requires_grad_() : Tensor();
    Tensor h0 = with_state ? rn({b, d, n}) : Tensor();
    std::vector<Tensor> leaves{u, delta, A, B, C, D, z, bias, h0};
    Tensor gy = randn({b, l, d}, DType::f64, &g), gl = randn({b, d, n}, DType::f64, &g);

    ScanResult want = selective_scan(u, delta, A, B, C, D, z, bias, full, true, h0);
    add(sum(mul(want.y, gy)), sum(mul(want.last_state, gl))).backward();
    std::vector<Tensor> want_grads;
    for (auto& t : leaves) {
      want_grads.push_back(t.defined() ? t.grad() : Tensor());
      if (t.defined()) t.zero_grad();
    }

    Tensor h = with_state ? h0 : zeros({b, d, n}, DType::f64);
    std::vector<Tensor> ys;
    auto at = [](const Tensor& t, int64_t s) { return t.defined() ? squeeze(narrow(t, 1, s, 1), 1) : Tensor(); };
    for (int64_t s = 0; s < l; ++s) {
      StateUpdateResult r =
          selective_state_update(h, at(u, s), at(delta, s), A, at(B, s), at(C, s), D, at(z, s), bias, full);
      h = r.state;
      ys.push_back(unsqueeze(r.y, 1));
    }
    Tensor y = cat(ys, 1);
    INFO("optional inputs and softplus " << full);
    CHECK(rel_err(y, want.y) < 1e-12);
    CHECK(rel_err(h, want.last_state) < 1e-12);
    add(sum(mul(y, gy)), sum(mul(h, gl))).backward();
    const char* names[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"};
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (!leaves[i].defined()) continue;
      INFO("gradient of " << std::string(names[i]));
      REQUIRE(leaves[i].grad().defined());
      CHECK(rel_err(leaves[i].grad(), want_grads[i]) < 1e-11);
    }
  }
}
// causal_conv1d_update over the time steps of x (b, l, d) in order from state st: the outputs joined
// along time (b, l, d) and the final state.
std::pair<Tensor, Tensor> step_conv(Tensor st, const Tensor& x, const Tensor& w, const Tensor& bias, bool silu) {
  std::vector<Tensor> ys;
  for (int64_t s = 0; s < x.shape()[1]; ++s) {
    ConvUpdateResult r = causal_conv1d_update(st, squeeze(narrow(x, 1, s, 1), 1), w, bias, silu);
    st = r.state;
    ys.push_back(unsqueeze(r.y, 1));
  }
  return {cat(ys, 1), st};
}

}  // namespace

TEST_CASE(
    "selective_state_update: stepping from a zero state over l tokens gives selective_scan's y, last "
    "state and gradients") {
  check_steps_give_scan(5, false);
}

TEST_CASE(
    "selective_state_update: stepping from a random state gives selective_scan's y, last state and gradients "
    "with that initial state") {
  check_steps_give_scan(15, true);
}

TEST_CASE("selective_state_update: float32 steps track the float32 scan") {
  const int64_t b = 2, l = 40, d = 64, n = 16;
  Generator g(8);
  Tensor u = randn({b, l, d}, DType::f32, &g), delta = randn({b, l, d}, DType::f32, &g);
  Tensor A = rand({d, n}, DType::f32, &g, -2.0, -0.2), B = randn({b, l, n}, DType::f32, &g),
         C = randn({b, l, n}, DType::f32, &g), D = randn({d}, DType::f32, &g), z = randn({b, l, d}, DType::f32, &g);
  Tensor bias = rand({d}, DType::f32, &g, -1.0, 1.0);
  ScanResult want = selective_scan(u, delta, A, B, C, D, z, bias, true, true);
  Tensor h = zeros({b, d, n}), out = Tensor::empty({b, d});
  for (int64_t s = 0; s < l; ++s) {
    auto at = [&](const Tensor& t) { return squeeze(narrow(t, 1, s, 1), 1); };
    selective_state_update_(h, at(u), at(delta), A, at(B), at(C), D, at(z), bias, true, out);
    CHECK(rel_err(out, squeeze(narrow(want.y, 1, s, 1), 1)) < 1e-5);
  }
  CHECK(rel_err(h, want.last_state) < 1e-5);
}

TEST_CASE("selective_state_update: the in-place form equals the functional one and allocates nothing") {
  for (const SuCfg& c : kSuCases)
    for (DType dt : {DType::f32, DType::f64}) {
      Generator g(23);
      SuInputs in = su_inputs(c, g, dt);
      std::vector<Tensor> a;
      for (auto& t : in.args) a.push_back(t.defined() ? t.detach() : Tensor());
      StateUpdateResult want = su_call(c, a, false);
      Tensor state = a[0].clone(), out = Tensor::empty({c.b, c.d}, dt);
      const void* state_ptr = state.raw_data();
      const uint64_t version = state.storage()->version();
      const size_t before = cpu_bytes_in_use();
      reset_cpu_peak_bytes();
      selective_state_update_(state, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], c.softplus, out);
      CHECK(cpu_peak_bytes() == before);
      CHECK(state.raw_data() == state_ptr);
      CHECK(state.storage()->version() > version);
      const auto y1 = out.to(DType::f64).to_vector<double>(), y2 = want.y.to(DType::f64).to_vector<double>();
      const auto s1 = state.to(DType::f64).to_vector<double>(), s2 = want.state.to(DType::f64).to_vector<double>();
      CHECK(y1 == y2);
      CHECK(s1 == s2);
    }
}

TEST_CASE("selective_state_update: a row's results do not depend on the batch size or the thread count") {
  // b d n = 1.2M state elements: above the size at which the kernel splits the work over threads.
  const int64_t b = 72, d = 1040, n = 16;
  Generator g(31);
  Tensor state = randn({b, d, n}, DType::f32, &g), x = randn({b, d}, DType::f32, &g),
         dt = randn({b, d}, DType::f32, &g), A = rand({d, n}, DType::f32, &g, -2.0, -0.2),
         B = randn({b, n}, DType::f32, &g), C = randn({b, n}, DType::f32, &g), D = randn({d}, DType::f32, &g),
         z = randn({b, d}, DType::f32, &g), bias = randn({d}, DType::f32, &g);
  const int saved = num_threads();
  std::vector<std::vector<float>> ys, hs;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    StateUpdateResult r = selective_state_update(state, x, dt, A, B, C, D, z, bias, true);
    ys.push_back(r.y.to_vector<float>());
    hs.push_back(r.state.to_vector<float>());
  }
  set_num_threads(saved);
  CHECK(ys[0] == ys[1]);
  CHECK(hs[0] == hs[1]);
  // Row 5 alone (b = 1) and rows 3..7 (b = 5) give row 5's bits.
  for (int64_t lo : {5, 3}) {
    const int64_t m = lo == 5 ? 1 : 5;
    auto rows = [&](const Tensor& t) { return narrow(t, 0, lo, m); };
    StateUpdateResult r =
        selective_state_update(rows(state), rows(x), rows(dt), A, rows(B), rows(C), D, rows(z), bias, true);
    const auto y = r.y.to_vector<float>(), h = r.state.to_vector<float>();
    const int64_t off = 5 - lo;
    INFO("batch of " << m);
    CHECK(std::memcmp(y.data() + off * d, ys[0].data() + 5 * d, d * sizeof(float)) == 0);
    CHECK(std::memcmp(h.data() + off * d * n, hs[0].data() + 5 * d * n, d * n * sizeof(float)) == 0);
  }
}

TEST_CASE("selective_state_update: error messages name the op, the tensor and the shapes") {
  auto f = [](const Shape& s, DType dt = DType::f32) { return zeros(s, dt); };
  Tensor h = f({2, 64, 16}), x = f({2, 64}), A = f({64, 16}), B = f({2, 16});
  check_error(
      [&] {
        selective_state_update(h, x, x, A, f({2, 8}), B);
      },
      {"[selective_state_update] B must be (2, 16) to match x (2, 64) and A (64, 16), got (2, 8)"});
  check_error(
      [&] {
        selective_state_update(f({2, 64, 8}), x, x, A, B, B);
      },
      {"[selective_state_update] state must be (2, 64, 16)", "got (2, 64, 8)"});
  check_error(
      [&] {
        selective_state_update(h, x, f({2, 63}), A, B, B);
      },
      {"[selective_state_update] dt must be (2, 64) like x, got (2, 63)"});
  check_error([&] { selective_state_update(h, x, x, A, B, B, f({63})); },
              {"[selective_state_update] D must be (64,)", "got (63,)"});
  check_error([&] { selective_state_update(h, x, x, A, B, B, Tensor(), Tensor(), f({2})); },
              {"[selective_state_update] dt_bias must be (64,)"});
  check_error(
      [&] {
        selective_state_update(h, x, x, A, B, B, Tensor(), f({2, 32}));
      },
      {"[selective_state_update] z must be (2, 64) like x, got (2, 32)"});
  check_error(
      [&] {
        selective_state_update(h, x, x, A, B, f({2, 16}, DType::f64));
      },
      {"[selective_state_update] C is float64 but x is float32"});
  check_error(
      [&] {
        selective_state_update(h, f({2, 64}, DType::i64), x, A, B, B);
      },
      {"[selective_state_update] x must be float32 or float64"});
  check_error([&] { selective_state_update(h, x, Tensor(), A, B, B); },
              {"[selective_state_update] dt is required but was undefined"});
  check_error(
      [&] {
        selective_state_update_reference(h, x, x, A, f({2, 8}), B);
      },
      {"[selective_state_update_reference] B must be (2, 16)"});
  // The in-place form.
  Tensor out = f({2, 64});
  Tensor wide = f({2, 64, 32}), strided = narrow(wide, 2, 0, 16);
  check_error([&] { selective_state_update_(strided, x, x, A, B, B, Tensor(), Tensor(), Tensor(), false, out); },
              {"[selective_state_update_] state must be contiguous"});
  Tensor bad_out = f({2, 63});
  check_error([&] { selective_state_update_(h, x, x, A, B, B, Tensor(), Tensor(), Tensor(), false, bad_out); },
              {"[selective_state_update_] out must be (2, 64) like x, got (2, 63)"});
  Tensor out64 = f({2, 64}, DType::f64);
  check_error([&] { selective_state_update_(h, x, x, A, B, B, Tensor(), Tensor(), Tensor(), false, out64); },
              {"[selective_state_update_] out is float64 but x is float32"});
  Tensor xg = f({2, 64}).requires_grad_();
  check_error([&] { selective_state_update_(h, xg, x, A, B, B, Tensor(), Tensor(), Tensor(), false, out); },
              {"[selective_state_update_]", "grad mode is on and an input requires grad"});
  {
    NoGradGuard ng;  // without grad mode the in-place form accepts it
    selective_state_update_(h, xg, x, A, B, B, Tensor(), Tensor(), Tensor(), false, out);
  }
  if (test::cuda_available()) {
    Tensor Bc = B.to(kCUDA);
    check_error([&] { selective_state_update(h, x, x, A, Bc, B); },
                {"[selective_state_update] B is on cuda:0 but x is on cpu"});
  }
}

// ---- causal_conv1d_update ----

TEST_CASE("causal_conv1d_update: fused equals the composed reference (f64 and f32, strided x, every gradient)") {
  for (const ConvCfg& c : kConvCases)
    for (bool strided : {false, true})
      for (DType dt : {DType::f64, DType::f32}) {
        Generator g(3);
        auto leaves = [&](DType t) {
          Generator gg(3);
          std::vector<Tensor> v{randn({c.b, c.d, c.k - 1}, DType::f64, &gg), randn({c.b, 2 * c.d}, DType::f64, &gg),
                                randn({c.d, c.k}, DType::f64, &gg), c.bias ? randn({c.d}, DType::f64, &gg) : Tensor()};
          for (auto& x : v)
            if (x.defined()) x = x.to(t).detach().requires_grad_();
          return v;
        };
        std::vector<Tensor> fl = leaves(dt), rl = leaves(DType::f64);
        auto xin = [&](const Tensor& wide) {
          return strided ? narrow(wide, 1, c.d, c.d) : contiguous(narrow(wide, 1, c.d, c.d));
        };
        ConvUpdateResult f = causal_conv1d_update(fl[0], xin(fl[1]), fl[2], fl[3], c.silu);
        ConvUpdateResult r = causal_conv1d_update_reference(rl[0], xin(rl[1]), rl[2], rl[3], c.silu);
        INFO("b " << c.b << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu << " strided "
                  << strided << " " << dtype_name(dt));
        const double tol = dt == DType::f64 ? 1e-13 : 1e-6;
        CHECK(f.y.shape() == Shape{c.b, c.d});
        CHECK(f.state.shape() == Shape{c.b, c.d, c.k - 1});
        CHECK(rel_err(f.y, r.y) < tol);
        if (c.k > 1) CHECK(rel_err(f.state, r.state) < tol);
        Tensor gy = randn({c.b, c.d}, DType::f64, &g), gs = randn({c.b, c.d, c.k - 1}, DType::f64, &g);
        add(sum(mul(f.y, gy.to(dt))), sum(mul(f.state, gs.to(dt)))).backward();
        add(sum(mul(r.y, gy)), sum(mul(r.state, gs))).backward();
        for (size_t i = 0; i < 4; ++i) {
          if (!fl[i].defined() || fl[i].numel() == 0) continue;
          INFO("gradient of input " << i);
          REQUIRE(fl[i].grad().defined());
          CHECK(rel_err(fl[i].grad(), rl[i].grad()) < (dt == DType::f64 ? 1e-12 : 1e-5));
        }
      }
}

TEST_CASE("causal_conv1d_update: stepping from a zero state gives causal_conv1d's output and gradients") {
  for (const ConvCfg& c : kConvCases) {
    const int64_t l = 7;
    Generator g(13);
    Tensor x = randn({c.b, l, c.d}, DType::f64, &g).requires_grad_(),
           w = randn({c.d, c.k}, DType::f64, &g).requires_grad_();
    Tensor bias = c.bias ? randn({c.d}, DType::f64, &g).requires_grad_() : Tensor();
    Tensor gy = randn({c.b, l, c.d}, DType::f64, &g);
    Tensor want = causal_conv1d(x, w, bias, c.silu);
    sum(mul(want, gy)).backward();
    std::vector<Tensor> want_grads{x.grad(), w.grad(), bias.defined() ? bias.grad() : Tensor()};
    x.zero_grad(), w.zero_grad();
    if (bias.defined()) bias.zero_grad();
    auto [y, st] = step_conv(zeros({c.b, c.d, c.k - 1}, DType::f64), x, w, bias, c.silu);
    INFO("b " << c.b << " d " << c.d << " k " << c.k);
    CHECK(rel_err(y, want) < 1e-13);
    // The state holds the last k - 1 inputs, oldest first.
    if (c.k > 1 && c.k - 1 <= l) CHECK(rel_err(st, permute(narrow(x, 1, l - (c.k - 1), c.k - 1), {0, 2, 1})) == 0);
    sum(mul(y, gy)).backward();
    Tensor got[] = {x.grad(), w.grad(), bias.defined() ? bias.grad() : Tensor()};
    for (size_t i = 0; i < 3; ++i) {
      if (!want_grads[i].defined()) continue;
      INFO("gradient " << i);
      CHECK(rel_err(got[i], want_grads[i]) < 1e-12);
    }
  }
}

TEST_CASE(
    "causal_conv1d_update: stepping from a random state gives causal_conv1d_with_state's output, final state "
    "and gradients") {
  // The conv's initial and final states have the layout of conv_state: the last k - 1 inputs, oldest first.
  for (const ConvCfg& c : kConvCases)
    for (int64_t l : {7, 2}) {  // l = 2 is shorter than the state for k >= 4
      Generator g(14);
      Tensor x = randn({c.b, l, c.d}, DType::f64, &g).requires_grad_(),
             w = randn({c.d, c.k}, DType::f64, &g).requires_grad_();
      Tensor bias = c.bias ? randn({c.d}, DType::f64, &g).requires_grad_() : Tensor();
      Tensor st0 = randn({c.b, c.d, c.k - 1}, DType::f64, &g).requires_grad_();
      Tensor gy = randn({c.b, l, c.d}, DType::f64, &g), gs = randn({c.b, c.d, c.k - 1}, DType::f64, &g);
      ConvResult want = causal_conv1d_with_state(x, w, bias, c.silu, st0);
      add(sum(mul(want.y, gy)), sum(mul(want.final_state, gs))).backward();
      std::vector<Tensor> leaves{x, w, bias, st0}, want_grads;
      for (auto& t : leaves) {
        want_grads.push_back(t.defined() ? t.grad() : Tensor());
        if (t.defined()) t.zero_grad();
      }
      auto [y, st] = step_conv(st0, x, w, bias, c.silu);
      INFO("b " << c.b << " d " << c.d << " k " << c.k << " l " << l);
      CHECK(rel_err(y, want.y) < 1e-13);
      REQUIRE(st.shape() == want.final_state.shape());
      CHECK(rel_err(st, want.final_state) == 0);
      add(sum(mul(y, gy)), sum(mul(st, gs))).backward();
      const char* names[] = {"x", "weight", "bias", "initial_state"};
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (!leaves[i].defined() || leaves[i].numel() == 0) continue;
        INFO("gradient of " << std::string(names[i]));
        REQUIRE(leaves[i].grad().defined());
        CHECK(rel_err(leaves[i].grad(), want_grads[i]) < 1e-12);
      }
    }
}

TEST_CASE("causal_conv1d_update: the in-place form equals the functional one") {
  for (const ConvCfg& c : kConvCases)
    for (DType dt : {DType::f32, DType::f64}) {
      Generator g(2);
      Tensor st = randn({c.b, c.d, c.k - 1}, dt, &g), xz = randn({c.b, 2 * c.d}, dt, &g), w = randn({c.d, c.k}, dt, &g);
      Tensor bias = c.bias ? randn({c.d}, dt, &g) : Tensor(), x = narrow(xz, 1, 0, c.d);
      ConvUpdateResult want = causal_conv1d_update(st, x, w, bias, c.silu);
      Tensor st2 = st.clone(), out = Tensor::empty({c.b, c.d}, dt);
      const size_t before = cpu_bytes_in_use();
      reset_cpu_peak_bytes();
      causal_conv1d_update_(st2, x, w, bias, c.silu, out);
      CHECK(cpu_peak_bytes() == before);
      CHECK(out.to(DType::f64).to_vector<double>() == want.y.to(DType::f64).to_vector<double>());
      CHECK(st2.to(DType::f64).to_vector<double>() == want.state.to(DType::f64).to_vector<double>());
    }
}

TEST_CASE("causal_conv1d_update: error messages name the op, the tensor and the shapes") {
  auto f = [](const Shape& s, DType dt = DType::f32) { return zeros(s, dt); };
  Tensor st = f({2, 64, 3}), x = f({2, 64}), w = f({64, 4}), out = f({2, 64});
  check_error(
      [&] {
        causal_conv1d_update(f({2, 64, 4}), x, w);
      },
      {"[causal_conv1d_update] conv_state must be (2, 64, 3) (b, d, k - 1)", "got (2, 64, 4)"});
  check_error(
      [&] {
        causal_conv1d_update(st, x, f({32, 4}));
      },
      {"[causal_conv1d_update] weight must be (64, k) with k >= 1", "got (32, 4)"});
  check_error([&] { causal_conv1d_update(st, x, w, f({63})); },
              {"[causal_conv1d_update] bias must be (64,)", "got (63,)"});
  check_error(
      [&] {
        causal_conv1d_update(st, x, f({64, 4}, DType::f64));
      },
      {"[causal_conv1d_update] weight is float64 but x is float32"});
  check_error([&] { causal_conv1d_update(st, f({2, 3, 64}), w); }, {"[causal_conv1d_update] x must be (b, d)"});
  check_error([&] { causal_conv1d_update_reference(st, x, f({32, 4})); }, {"[causal_conv1d_update_reference] weight"});
  Tensor wg = f({64, 4}).requires_grad_();
  check_error([&] { causal_conv1d_update_(st, x, wg, Tensor(), true, out); },
              {"[causal_conv1d_update_]", "grad mode is on and an input requires grad"});
  Tensor bad_out = f({2, 64}, DType::f64);
  check_error([&] { causal_conv1d_update_(st, x, w, Tensor(), true, bad_out); },
              {"[causal_conv1d_update_] out is float64 but x is float32"});
  Tensor wide = f({2, 64, 6}), strided = narrow(wide, 2, 0, 3);
  check_error([&] { causal_conv1d_update_(strided, x, w, Tensor(), true, out); },
              {"[causal_conv1d_update_] conv_state must be contiguous"});
  if (test::cuda_available()) {
    Tensor wc = w.to(kCUDA);
    check_error([&] { causal_conv1d_update(st, x, wc); },
                {"[causal_conv1d_update] weight is on cuda:0 but x is on cpu"});
  }
}

namespace {
// The in-place forms write out and the state while the kernel reads the inputs: memory shared between a
// written tensor and an input is an error naming both. Disjoint ranges of one storage are fine.
void check_in_place_overlaps(Device dev) {
  NoGradGuard ng;
  Generator g(31);
  auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g).to(dev); };
  const int64_t b = 2, d = 3, n = 4;
  Tensor state = rn({b, d, n}), A = rand({d, n}, DType::f64, &g, -2.0, -0.5).to(dev), B = rn({b, n}), C = rn({b, n});
  Tensor D = rn({d}), bias = rn({d});
  Tensor buf = rn({4 * b * d});  // x, dt, z and out cut from one storage
  auto part = [&](int64_t at) { return narrow(buf, 0, at, b * d).view({b, d}); };
  Tensor x = part(0), dt = part(b * d), z = part(2 * b * d);
  auto step = [&](Tensor& st, const Tensor& xx, Tensor& out) {
    selective_state_update_(st, xx, dt, A, B, C, D, z, bias, true, out);
  };
  const std::string op = "[selective_state_update_] ";
  {
    Tensor st = state.clone(), out = x;
    check_error([&] { step(st, x, out); },
                {op + "out overlaps x in memory: the step would overwrite x while it reads it"});
    Tensor half = narrow(buf, 0, b * d / 2, b * d).view({b, d});  // half over x, half over dt
    check_error([&] { step(st, x, half); }, {op + "out overlaps x in memory"});
    Tensor into_state = narrow(st.view({-1}), 0, n, b * d).view({b, d});
    check_error([&] { step(st, x, into_state); }, {op + "out overlaps state in memory"});
    Tensor x_in_state = narrow(st.view({-1}), 0, 0, b * d).view({b, d});
    Tensor out2 = Tensor::empty({b, d}, DType::f64, dev);
    check_error([&] { step(st, x_in_state, out2); }, {op + "state overlaps x in memory"});
    Tensor over_z = part(2 * b * d);
    check_error([&] { step(st, x, over_z); }, {op + "out overlaps z in memory"});
  }
  {
    // out in the same storage as x, dt and z but past them: the functional op's result, bit for bit.
    StateUpdateResult want = selective_state_update(state, x, dt, A, B, C, D, z, bias, true);
    Tensor st = state.clone(), out = part(3 * b * d);
    step(st, x, out);
    CHECK(out.to(kCPU).to_vector<double>() == want.y.to(kCPU).to_vector<double>());
    CHECK(st.to(kCPU).to_vector<double>() == want.state.to(kCPU).to_vector<double>());
  }
  {
    const int64_t k = 4;
    Tensor cs = rn({b, d, k - 1}), w = rn({d, k}), out = Tensor::empty({b, d}, DType::f64, dev);
    const std::string cop = "[causal_conv1d_update_] ";
    check_error([&] { causal_conv1d_update_(cs, x, w, bias, true, x); }, {cop + "out overlaps x in memory"});
    Tensor in_cs = narrow(cs.view({-1}), 0, 0, b * d).view({b, d});
    check_error([&] { causal_conv1d_update_(cs, x, w, bias, true, in_cs); },
                {cop + "out overlaps conv_state in memory"});
    Tensor big = rn({d * k + b * d * (k - 1)});
    // weight at [0, dk), the state from dk - 1: one element shared.
    Tensor wv = narrow(big, 0, 0, d * k).view({d, k});
    Tensor csv = narrow(big, 0, d * k - 1, b * d * (k - 1)).view({b, d, k - 1});
    check_error([&] { causal_conv1d_update_(csv, x, wv, bias, true, out); },
                {cop + "conv_state overlaps weight in memory"});
    // Disjoint: fine, and the functional op's result.
    Tensor csd = narrow(big, 0, d * k, b * d * (k - 1)).view({b, d, k - 1});
    ConvUpdateResult want = causal_conv1d_update(csd, x, wv, bias, true);
    causal_conv1d_update_(csd, x, wv, bias, true, out);
    CHECK(out.to(kCPU).to_vector<double>() == want.y.to(kCPU).to_vector<double>());
    CHECK(csd.to(kCPU).to_vector<double>() == want.state.to(kCPU).to_vector<double>());
  }
}
}  // namespace

TEST_CASE("state updates in place: out or the state sharing memory with an input is an error naming both") {
  check_in_place_overlaps(kCPU);
}

TEST_CASE("cuda state updates in place: out or the state sharing memory with an input is the cpu's error") {
  MG_REQUIRE_CUDA();
  check_in_place_overlaps(kCUDA);
}
