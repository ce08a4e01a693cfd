// Anomaly mode (introspect/anomaly.h): the first NaN/inf in an op's output or in a gradient a vjp
// returns throws, naming the op, its module path and the input; off, nothing is checked.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/node.h"
#include "introspect/anomaly.h"
#include "models/mamba.h"
#include "ops/scan.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace mg;

namespace {
Tensor leaf(std::vector<double> v, Shape s) { return from_vector<double>(v, s).requires_grad_(); }

// A module whose forward pushes its own path, as MambaLM's do.
struct Toy : Module {
  Tensor w = register_parameter("w", from_vector<double>({1.0, 1.0, 1.0}, {3}), false);
  Tensor forward(const Tensor& x) const {
    ModulePathGuard path("toy");
    Tensor a = mul(x, w);
    ModulePathGuard inner("body");
    return log(a);  // NaN for a negative element
  }
};
}  // namespace

TEST_CASE("anomaly: off by default, and the guard sets it and restores the previous value") {
  CHECK_FALSE(AnomalyMode::is_enabled());
  {
    AnomalyMode on;
    CHECK(AnomalyMode::is_enabled());
    {
      AnomalyMode off(false);
      CHECK_FALSE(AnomalyMode::is_enabled());
    }
    CHECK(AnomalyMode::is_enabled());
  }
  CHECK_FALSE(AnomalyMode::is_enabled());
}

TEST_CASE("anomaly: module paths nest with '.' and are pushed only while anomaly mode is on") {
  {
    ModulePathGuard a("backbone");
    CHECK(ModulePathGuard::current() == nullptr);
  }
  AnomalyMode on;
  {
    ModulePathGuard a("backbone");
    ModulePathGuard b("layers", 2);
    ModulePathGuard c("mixer");
    REQUIRE(ModulePathGuard::current() != nullptr);
    CHECK(*ModulePathGuard::current() == "backbone.layers.2.mixer");
  }
  CHECK(ModulePathGuard::current() == nullptr);
}

TEST_CASE("anomaly: a NaN or inf made in forward throws naming the op, the module path and the shape") {
  Toy toy;
  Tensor x = from_vector<double>({1.0, -1.0, 2.0}, {3});
  AnomalyMode on;
  check_error([&] { toy.forward(x); }, {"[anomaly] forward of log (toy.body) produced NaN in its output (3,)"});
  // Division by zero, outside any module.
  Tensor y = leaf({1.0, 2.0}, {2});
  check_error(
      [&] {
        div(y, from_vector<double>({1.0, 0.0}, {2}));
      },
      {"[anomaly] forward of div produced inf in its output (2,)"});
}

TEST_CASE("anomaly: a non-finite gradient from a vjp throws naming the op, the input and what made it") {
  Tensor x = leaf({0.0, 2.0}, {2});
  AnomalyMode on;
  Tensor y;
  {
    ModulePathGuard outer("toy");
    Tensor a = mul(x, x);
    ModulePathGuard inner("root");
    y = sqrt(a);  // finite forward; d sqrt(a)/da = 1 / (2 sqrt(a)) is inf at a = 0
  }
  check_error([&] { sum(y).backward(); },
              {"[anomaly] backward of sqrt (toy.root) returned inf in the gradient of input 0 (x) (2,); that input was "
               "made by mul (toy)"});

  // A node whose vjp returns NaN for its second input, named by the op's input names (delta).
  Tensor u = leaf({1.0, 2.0}, {2}), d = leaf({3.0, 4.0}, {2});
  Tensor out;
  {
    NoGradGuard ng;
    out = add(u, d);
  }
  {
    ModulePathGuard p("backbone.layers.1.mixer");
    record(OpId::selective_scan, {u, d}, {&out}, [](const VjpArgs& g) {
      return std::vector<Tensor>{g[0], mul_scalar(g[0], std::nan(""))};
    });
  }
  check_error([&] { sum(out).backward(); },
              {"[anomaly] backward of selective_scan (backbone.layers.1.mixer) returned NaN in the gradient of input 1 "
               "(delta) (2,); that input is a leaf"});
  // The gradient given to backward is checked too.
  Tensor z = mul_scalar(u, 2.0);
  check_error(
      [&] {
        z.backward(from_vector<double>({1.0, INFINITY}, {2}));
      },
      {"[anomaly] the gradient given to backward for output 0 (2,) holds inf"});
}

TEST_CASE("anomaly: each op's input names, from the op list, name the inputs its node records") {
  AnomalyMode on;  // so that each node carries its OpKind (AnomalyInfo::op)
  Generator g(3);
  auto p = [&](Shape s) { return randn(s, DType::f32, &g).requires_grad_(); };
  // The op's node, and how many inputs it recorded; the last one is named and the next is not.
  auto names = [](const Tensor& out) {
    REQUIRE(out.grad_fn());
    const AnomalyInfo* a = anomaly_info(*out.grad_fn());
    REQUIRE(a != nullptr);
    std::vector<std::string> v;
    for (size_t i = 0; i < out.grad_fn()->next_edges.size(); ++i) v.push_back(a->op.input_name(i));
    CHECK(a->op.input_name(v.size()).empty());
    return v;
  };
  using V = std::vector<std::string>;
  Tensor x = p({2, 4, 3});
  CHECK(names(add(x, x)) == V{"a", "b"});
  CHECK(names(pow(x, 2.0)) == V{"x"});  // one tensor input; the exponent is a scalar
  CHECK(names(exp(x)) == V{"x"});
  CHECK(names(linear(x, p({5, 3}), p({5}))) == V{"x", "w", "b"});
  CHECK(names(rms_norm(x, p({3}))) == V{"x", "weight"});
  CHECK(names(embedding(p({10, 3}), randint(0, 10, {4}, &g))) == V{"weight", "ids"});
  CHECK(names(cross_entropy(p({4, 6}), randint(0, 6, {4}, &g))) == V{"logits", "targets"});
  CHECK(names(max(x, 1).first) == V{"x"});
  CHECK(names(causal_conv1d(x, p({3, 4}), p({3}))) == V{"x", "weight", "bias", "initial_state"});
  CHECK(names(selective_scan(x, p({2, 4, 3}), p({3, 5}), p({2, 4, 5}), p({2, 4, 5})).y) ==
        V{"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"});
  const std::vector<Tensor> xs{x, p({2, 4, 3}), p({2, 4, 3})};
  Tensor c = cat(xs, 0);
  const AnomalyInfo* a = anomaly_info(*c.grad_fn());
  REQUIRE(a != nullptr);
  CHECK(c.grad_fn()->next_edges.size() == 3);
  CHECK(a->op.input_name(2) == "xs[2]");
}

// Functions with external linkage (the executable exports its symbols), so the call stack can name them.
namespace anomaly_test {
[[gnu::noinline]] Tensor log_of(const Tensor& x) { return log(x); }
[[gnu::noinline]] Tensor root_of(const Tensor& x) { return sqrt(x); }
}  // namespace anomaly_test

TEST_CASE("anomaly: the message names the functions that called the op, in forward and in backward") {
  AnomalyMode on;
  const std::string forward = check_error(
      [&] {
        anomaly_test::log_of(leaf({1.0, -1.0}, {2}));
      },
      {"[anomaly] forward of log produced NaN"});
  INFO(forward);
  CHECK(forward.find("\n  log was called at: ") != std::string::npos);
  CHECK(forward.find("anomaly_test::log_of <- ") != std::string::npos);
  // Backward: the stack of the forward call of the op whose vjp returned inf (as PyTorch prints the
  // traceback of the forward call), not the engine's.
  Tensor x = leaf({0.0, 2.0}, {2});
  Tensor y = anomaly_test::root_of(mul(x, x));
  const std::string backward = check_error([&] { sum(y).backward(); }, {"[anomaly] backward of sqrt returned inf"});
  INFO(backward);
  CHECK(backward.find("\n  sqrt was called at: ") != std::string::npos);
  CHECK(backward.find("anomaly_test::root_of <- ") != std::string::npos);
  CHECK(backward.find("run_backward") == std::string::npos);
}

TEST_CASE("anomaly: off, nothing is checked and NaN and inf propagate") {
  REQUIRE_FALSE(AnomalyMode::is_enabled());
  Toy toy;
  Tensor out = toy.forward(from_vector<double>({1.0, -1.0, 2.0}, {3}));
  CHECK(std::isnan(out.to_vector<double>()[1]));
  Tensor x = leaf({0.0, 2.0}, {2});
  sum(sqrt(mul(x, x))).backward();
  CHECK(std::isnan(x.grad().to_vector<double>()[0]));  // inf * 0 from mul's vjp
}

TEST_CASE("anomaly: a tiny Mamba names the layer whose op made the NaN, and a clean step is unchanged") {
  MambaLM m(MambaConfig::preset("tiny"), 1);
  Generator g(5);
  Tensor tokens = randint(0, 256, {2, 16}, &g), targets = randint(0, 256, {2, 16}, &g);
  // A clean forward and backward under anomaly mode: no error, the same loss and gradients bit for bit.
  Tensor l0 = m.loss(tokens, targets);
  l0.backward();
  std::vector<std::vector<float>> g0;
  for (auto& p : m.named_parameters()) g0.push_back(p.tensor.grad().to_vector<float>()), p.tensor.zero_grad();
  {
    AnomalyMode on;
    Tensor l1 = m.loss(tokens, targets);
    l1.backward();
    CHECK(l1.item() == l0.item());
    size_t i = 0;
    for (auto& p : m.named_parameters()) CHECK(p.tensor.grad().to_vector<float>() == g0[i++]);
  }
  // A NaN in layer 1's dt bias: the scan of layer 1 is the first op to see it.
  {
    NoGradGuard ng;
    m.layers[1]->mixer->dt_proj->bias.narrow(0, 3, 1).fill_(std::nan(""));
  }
  AnomalyMode on;
  check_error(
      [&] { m.loss(tokens, targets); },
      {"[anomaly] forward of selective_scan (backbone.layers.1.mixer) produced NaN in its output", "(2, 16, 128)"});
}

TEST_CASE("anomaly: train --detect-anomaly names the op where a diverging run first goes non-finite") {
  test::TempDir d("anomaly");
  std::string data = test::write_text(d, 40000);
  TrainOptions o = test::tiny_options(data, d / "run");
  o.steps = 40;
  o.eval_every = 1;
  o.lr = 1e30;  // blows the weights up after the first steps (as the trainer's non-finite loss test)
  o.clip = 1e30;
  o.detect_anomaly = true;
  try {
    train(o, false);
    FAIL("expected an [anomaly] error");
  } catch (const Error& e) {
    MESSAGE(std::string(e.what()));
    CHECK(std::string(e.what()).find("[anomaly] ") == 0);
  }
  CHECK_FALSE(AnomalyMode::is_enabled());  // restored when train() throws
  // Not part of what defines a run: it is not stored, and a resumed run may turn it on or off.
  CHECK(o.to_json().find("detect_anomaly") == std::string::npos);
  TrainOptions a = test::tiny_options(data, d / "a");
  a.stop_at = 2;
  train(a, false);
  TrainOptions resumed = load_run_options(d / "a");
  resumed.progress = false;
  resumed.detect_anomaly = true;
  CHECK(train(resumed, true).step == 8);
}
