// User-defined ops (ops/function.h): an op defined here, outside the library, records one node
// under its own name, which grad_fn, the graph export, the profiler and anomaly messages show; its
// saved tensors are version-checked and its gradients checked like a built-in op's; gradcheck and the
// registry runner (ops/gradcheck.h) check it.
#include <doctest/doctest.h>

#include <cmath>
#include <optional>

#include "ops/function.h"
#include "introspect/anomaly.h"
#include "introspect/graph_dot.h"
#include "introspect/profiler.h"
#include "ops/gradcheck.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {

// y = c * x^3 with a CPU loop of its own (library ops elsewhere); c reaches backward through saved_data.
struct ScaledCube : Function<ScaledCube> {
  static constexpr const char* name = "scaled_cube";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x, double c) {
    ctx.save_for_backward({x});
    ctx.saved_data["c"] = c;
    if (!x.device().is_cpu() || x.dtype() != DType::f64) return mul_scalar(mul(x, mul(x, x)), c);
    Tensor xc = contiguous(x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    const double* px = xc.data<double>();
    double* py = y.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) py[i] = c * px[i] * px[i] * px[i];
    return y;
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    const Tensor x = ctx.saved()[0];
    const double c = std::any_cast<double>(ctx.saved_data["c"]);
    return {mul(grads[0], mul_scalar(mul(x, x), 3 * c))};
  }
};

// Two outputs: x + y (differentiable) and a float mask x > y marked non-differentiable.
struct AddWithMask : Function<AddWithMask> {
  static constexpr const char* name = "add_with_mask";
  static std::vector<Tensor> forward(FunctionCtx& ctx, const Tensor& a, const Tensor& b) {
    std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>(), m(va.size());
    for (size_t i = 0; i < va.size(); ++i) m[i] = va[i] > vb[i] ? 1.0 : 0.0;
    Tensor mask = from_vector<double>(m, a.shape()).to(a.device());
    ctx.mark_non_differentiable({mask});
    return {add(a, b), mask};
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    CHECK(grads.size() == 2);
    CHECK(grads[1].to_vector<double>() == std::vector<double>(grads[1].numel(), 0.0));  // the mask's: zeros
    return {ctx.needs_input_grad(0) ? grads[0] : Tensor(), ctx.needs_input_grad(1) ? grads[0] : Tensor()};
  }
};

// Returns its input itself, and a backward that is wrong in a way chosen by the test.
int g_bad_mode = 0;
struct Misbehaving : Function<Misbehaving> {
  static constexpr const char* name = "misbehaving";
  static Tensor forward(FunctionCtx&, const Tensor& x) { return x; }
  static std::vector<Tensor> backward(FunctionCtx&, const std::vector<Tensor>& grads) {
    if (g_bad_mode == 0) return {zeros({7}, DType::f64)};       // wrong shape
    if (g_bad_mode == 1) return {grads[0], grads[0]};           // one too many
    return {full(grads[0].shape(), std::nan(""), DType::f64)};  // NaN
  }
};

// w * (xs[0] + xs[1] + ...): a list of tensors, then a tensor. Its node's inputs are xs[0], xs[1], ..., w.
struct ScaledListSum : Function<ScaledListSum> {
  static constexpr const char* name = "scaled_list_sum";
  static Tensor forward(FunctionCtx& ctx, const std::vector<Tensor>& xs, const Tensor& w) {
    Tensor total = xs.at(0);
    for (size_t i = 1; i < xs.size(); ++i) total = add(total, xs[i]);
    ctx.save_for_backward({total, w});
    ctx.saved_data["n"] = xs.size();
    return mul(total, w);
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    const std::vector<Tensor> s = ctx.saved();
    const size_t n = std::any_cast<size_t>(ctx.saved_data["n"]);
    std::vector<Tensor> out;
    for (size_t i = 0; i < n; ++i) out.push_back(ctx.needs_input_grad(i) ? mul(grads[0], s[1]) : Tensor());
    out.push_back(ctx.needs_input_grad(n) ? mul(grads[0], s[0]) : Tensor());
    return out;
  }
};

// 3 x (+ bias): an optional tensor is one input, undefined when absent.
struct TripleOptBias : Function<TripleOptBias> {
  static constexpr const char* name = "triple_opt_bias";
  static Tensor forward(FunctionCtx&, const Tensor& x, const std::optional<Tensor>& bias) {
    Tensor y = mul_scalar(x, 3.0);
    return bias ? add(y, *bias) : y;
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    return {ctx.needs_input_grad(0) ? mul_scalar(grads[0], 3.0) : Tensor(),
            ctx.needs_input_grad(1) ? grads[0] : Tensor()};
  }
};

// x tanh x with a loop of its own over the gradient it receives, as a student writes one (grads[0].data()).
struct XTanhX : Function<XTanhX> {
  static constexpr const char* name = "x_tanh_x_loop";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x) {
    ctx.save_for_backward({x});
    return mul(x, tanh(x));
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    const Tensor x = ctx.saved()[0];
    std::vector<double> gx(x.numel());
    const double* g = grads[0].data<double>();  // read element by element: must be contiguous
    const std::vector<double> xv = x.to_vector<double>();
    for (size_t i = 0; i < gx.size(); ++i)
      gx[i] = g[i] * (std::tanh(xv[i]) + xv[i] * (1 - std::tanh(xv[i]) * std::tanh(xv[i])));
    return {from_vector<double>(gx, x.shape())};
  }
};

// Reads saved tensor g_read_index, having saved g_saved_count copies of x (a student who forgot
// save_for_backward, or counted wrong).
int g_saved_count = 0;
size_t g_read_index = 0;
struct ForgetsToSave : Function<ForgetsToSave> {
  static constexpr const char* name = "forgets_to_save";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x) {
    if (g_saved_count > 0) ctx.save_for_backward(std::vector<Tensor>((size_t)g_saved_count, x));
    return mul(x, x);
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    return {mul(grads[0], mul_scalar(ctx.saved()[g_read_index], 2.0))};
  }
};

// Returns a tensor it did not make: a parameter captured from outside (g_captured).
Tensor g_captured;
struct ReturnsCaptured : Function<ReturnsCaptured> {
  static constexpr const char* name = "returns_captured";
  static Tensor forward(FunctionCtx&, const Tensor&) { return g_captured; }
  static std::vector<Tensor> backward(FunctionCtx&, const std::vector<Tensor>& grads) {
    return {mul_scalar(grads[0], 0.0)};
  }
};

// 3 x, with a backward that goes wrong in a way chosen by the test (g_slip).
int g_slip = 0;
struct Slippery : Function<Slippery> {
  static constexpr const char* name = "slippery";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x) {
    if (g_slip == 2) ctx.saved_data["y"] = x;  // a tensor in saved_data
    if (g_slip == 3) throw std::out_of_range("vector::at");
    if (g_slip == 4) x.mul_(2.0);  // grad mode is off here
    ctx.saved_data["k"] = 3;       // an int
    return mul_scalar(x, 3.0);
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    if (g_slip == 0) return {grads[0].mul_(3.0)};  // modifies its gradient
    if (g_slip == 1) return {mul_scalar(grads[0], std::any_cast<double>(ctx.saved_data["k"]))};  // bad any_cast
    return {mul_scalar(grads[0], 3.0)};
  }
};

// Two ops of one name.
struct NamedTwiceA : Function<NamedTwiceA> {
  static constexpr const char* name = "named_twice";
  static Tensor forward(FunctionCtx&, const Tensor& x) { return mul_scalar(x, 2.0); }
  static std::vector<Tensor> backward(FunctionCtx&, const std::vector<Tensor>& g) { return {mul_scalar(g[0], 2.0)}; }
};
struct NamedTwiceB : Function<NamedTwiceB> {
  static constexpr const char* name = "named_twice";
  static Tensor forward(FunctionCtx&, const Tensor& x) { return mul_scalar(x, 3.0); }
  static std::vector<Tensor> backward(FunctionCtx&, const std::vector<Tensor>& g) { return {mul_scalar(g[0], 3.0)}; }
};

Tensor leaf(std::vector<double> v) {
  const int64_t n = (int64_t)v.size();
  return from_vector<double>(std::move(v), {n}).requires_grad_();
}

}  // namespace

TEST_CASE("custom op: values, gradients and the name of its node") {
  Tensor x = leaf({0.5, -1.0, 2.0});
  Tensor y = ScaledCube::apply(x, 2.0);
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "scaled_cube");
  CHECK(y.grad_fn()->next_edges.size() == 1);
  CHECK(y.to_vector<double>() == std::vector<double>{0.25, -2.0, 16.0});  // 2 x^3 by hand
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1.5, 6.0, 24.0});  // 6 x^2
  {
    NoGradGuard off;  // no grad mode: no node
    CHECK(!ScaledCube::apply(x, 2.0).requires_grad());
  }
  CHECK(!ScaledCube::apply(from_vector<double>({1.0}, {1}), 2.0).requires_grad());  // no input requires grad
}

TEST_CASE("custom op: gradcheck in float64 on the cpu and cuda devices") {
  std::vector<Device> devices{kCPU};
  if (test::cuda_available()) devices.push_back(kCUDA);
  for (Device d : devices) {
    INFO("device " << d.str());
    Generator g(3);
    GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return ScaledCube::apply(in[0], -0.7); },
                                  {gc_randn({3, 4}, g, d)});
    CHECK_MESSAGE(r.pass, r.message);
    GradcheckResult r2 = gradcheck([](const std::vector<Tensor>& in) { return AddWithMask::apply(in[0], in[1])[0]; },
                                   {gc_randn({5}, g, d), gc_randn({5}, g, d)});
    CHECK_MESSAGE(r2.pass, r2.message);
  }
}

TEST_CASE("custom op: a non-differentiable output needs no grad and its gradient reaches backward as zeros") {
  Tensor a = leaf({1.0, 5.0}), b = leaf({2.0, 3.0});
  std::vector<Tensor> out = AddWithMask::apply(a, b);
  REQUIRE(out.size() == 2);
  CHECK(out[0].requires_grad());
  CHECK(!out[1].requires_grad());
  CHECK(out[1].to_vector<double>() == std::vector<double>{0.0, 1.0});
  sum(out[0]).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
}

TEST_CASE("custom op: a saved tensor modified in place is an error naming the op") {
  Tensor w = leaf({1.0, 2.0});
  Tensor z = sum(ScaledCube::apply(w, 1.0));  // saves w at its version
  {
    NoGradGuard off;
    w.add_(w);
  }
  check_error([&] { z.backward(); }, {"that scaled_cube saved for backward was modified in place"});
}

TEST_CASE("custom op: reading a tensor forward did not save is an error naming the op, not a crash") {
  Tensor x = leaf({1.0, 2.0});
  g_saved_count = 0, g_read_index = 0;  // it read past an empty list
  check_error([&] { sum(ForgetsToSave::apply(x)).backward(); },
              {"[forgets_to_save] backward: ctx.saved()[0], but forward saved no tensors: keep what backward needs "
               "with ctx.save_for_backward({...}) in forward"});
  g_saved_count = 2, g_read_index = 2;
  check_error([&] { sum(ForgetsToSave::apply(x)).backward(); },
              {"ctx.saved()[2], but forward saved 2 tensors (indices 0 to 1)"});
  g_read_index = 1;  // within the list: the gradient 2 x
  sum(ForgetsToSave::apply(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 4.0});
}

TEST_CASE("custom op: returned gradients are checked like any op's, and errors name the op") {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = Misbehaving::apply(x);
  CHECK(!x.grad_fn());  // the output is a new handle: the input keeps its own (no) grad_fn
  CHECK(y.grad_fn()->name() == "misbehaving");
  g_bad_mode = 0;
  check_error([&] { sum(Misbehaving::apply(x)).backward(); },
              {"[autograd] the backward of misbehaving returned a gradient (7,) float64 on cpu for its input 0, "
               "which is (3,) float64 on cpu"});
  g_bad_mode = 1;
  check_error([&] { sum(Misbehaving::apply(x)).backward(); },
              {"the backward of misbehaving returned 2 gradients for its 1 tensor input ("});
  g_bad_mode = 2;
  AnomalyMode on;
  check_error([&] { sum(Misbehaving::apply(x)).backward(); },
              {"[anomaly] backward of misbehaving", "returned NaN in the gradient of input 0"});
}

TEST_CASE("custom op: a std::vector<Tensor> argument's elements are inputs, each with its gradient") {
  Tensor a = leaf({1.0, -2.0}), b = leaf({0.5, 3.0}), c = from_vector<double>({4.0, 1.0}, {2});  // c: no grad
  Tensor w = leaf({2.0, -1.0});
  Tensor y = ScaledListSum::apply(std::vector<Tensor>{a, b, c}, w);
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->next_edges.size() == 4);  // a, b, c, w
  CHECK(y.grad_fn()->next_edges[2].fn == nullptr);
  sum(mul(y, y)).backward();
  // The reference: the same function of the library's ops, differentiated by their own nodes.
  Tensor ra = leaf({1.0, -2.0}), rb = leaf({0.5, 3.0}), rw = leaf({2.0, -1.0});
  Tensor ry = mul(add(add(ra, rb), c), rw);
  sum(mul(ry, ry)).backward();
  CHECK(y.to_vector<double>() == ry.to_vector<double>());
  CHECK(a.grad().to_vector<double>() == ra.grad().to_vector<double>());
  CHECK(b.grad().to_vector<double>() == rb.grad().to_vector<double>());
  CHECK(w.grad().to_vector<double>() == rw.grad().to_vector<double>());
  CHECK(!c.grad().defined());
}

TEST_CASE("custom op: a std::optional<Tensor> argument is one input, with its gradient when it holds one") {
  Tensor x = leaf({1.0, -2.0}), bias = leaf({0.5, 3.0});
  Tensor y = TripleOptBias::apply(x, std::optional<Tensor>(bias));
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->next_edges.size() == 2);
  sum(mul(y, y)).backward();
  Tensor rx = leaf({1.0, -2.0}), rb = leaf({0.5, 3.0});  // the reference: the library's own ops
  sum(mul(add(mul_scalar(rx, 3.0), rb), add(mul_scalar(rx, 3.0), rb))).backward();
  CHECK(y.to_vector<double>() == std::vector<double>{3.5, -3.0});
  CHECK(x.grad().to_vector<double>() == rx.grad().to_vector<double>());
  CHECK(bias.grad().to_vector<double>() == rb.grad().to_vector<double>());

  Tensor x2 = leaf({1.0, -2.0});
  Tensor y2 = TripleOptBias::apply(x2, std::optional<Tensor>());
  REQUIRE(y2.grad_fn());
  CHECK(y2.grad_fn()->next_edges.size() == 2);  // the empty optional keeps its place
  CHECK(y2.grad_fn()->next_edges[1].fn == nullptr);
  sum(y2).backward();
  CHECK(x2.grad().to_vector<double>() == std::vector<double>{3.0, 3.0});
}

TEST_CASE("custom op: its name in the graph export and the profiler's table and trace") {
  Tensor x = leaf({0.5, 1.5});
  Tensor loss = sum(ScaledCube::apply(x, 3.0));
  CHECK(autograd_graph_dot(loss).find("label=\"scaled_cube\\n(2,) float64\"") != std::string::npos);
  Profiler prof;
  Tensor l2 = sum(ScaledCube::apply(x, 3.0));
  l2.backward();
  prof.stop();
  bool fwd = false, bwd = false;
  for (const ProfileEvent& e : prof.events())
    if (e.name == "scaled_cube" && e.depth == 0) (e.backward ? bwd : fwd) = true;
  CHECK(fwd);
  CHECK(bwd);
  CHECK(prof.table_text().find("scaled_cube") != std::string::npos);
  CHECK(prof.chrome_trace().find("\"scaled_cube\"") != std::string::npos);
}

TEST_CASE("custom op: names are checked, and a name is one kind however often it is given") {
  check_error([] { OpKind::custom("tanh"); }, {"[custom op] the name 'tanh' is taken by the library's own op"});
  check_error([] { OpKind::custom("matmul"); }, {"taken by the library's own op"});
  check_error([] { OpKind::custom("two words"); }, {"[custom op] the name 'two words' is not valid"});
  check_error([] { OpKind::custom(""); }, {"is not valid"});
  const OpKind a = OpKind::custom("my_op"), b = OpKind::custom(std::string("my_") + "op");
  CHECK(a == b);
  CHECK(a.name().data() == b.name().data());
  CHECK(a.id() == -1);
  CHECK(OpKind(OpId::matmul).name() == "matmul");
  CHECK(!(a == OpKind(OpId::matmul)));
  // Two Function types of one name would share a kind: the second is refused when it is first used.
  Tensor x = leaf({1.0});
  CHECK(NamedTwiceA::apply(x).grad_fn()->name() == "named_twice");
  check_error([&] { NamedTwiceB::apply(x); }, {"[custom op] two Function types are named 'named_twice'"});
  CHECK(NamedTwiceA::kind() == NamedTwiceA::kind());  // the first keeps its name
}

TEST_CASE("gradcheck: a program's own cases run through run_gradcheck with the CLI's table") {
  GradcheckRegistry::get().add({ScaledCube::kind(), "(2, 3), c = 1.5",
                                [](Generator& g, Device d) {
                                  return std::vector<Tensor>{gc_randn({2, 3}, g, d)};
                                },
                                [](const std::vector<Tensor>& in) { return ScaledCube::apply(in[0], 1.5); }});
  GradcheckSummary s = run_gradcheck({.op = "scaled_cube", .print = false});
  CHECK(s.passed == 1);
  CHECK(s.failed == 0);
  CHECK(s.exit_code() == 0);
  CHECK(s.table.find("scaled_cube (2, 3), c = 1.5") != std::string::npos);
  CHECK(s.table.find("1 passed, 0 failed") != std::string::npos);
  // A case whose backward is wrong fails, and the runner says so (a registry of its own: the global
  // one must pass wherever it runs).
  const OpKind wrong = OpKind::custom("wrong_double");
  GradcheckRegistry own;
  own.add({wrong, "", [](Generator& g, Device d) { return std::vector<Tensor>{gc_randn({3}, g, d)}; },
           [wrong](const std::vector<Tensor>& in) {
             return apply_function(
                 wrong, in, [&](FunctionCtx&) { return std::vector<Tensor>{mul_scalar(in[0], 2.0)}; },
                 [](FunctionCtx&, const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; })[0];
           }});
  GradcheckSummary w = run_gradcheck({.op = "wrong_double", .print = false, .registry = &own});
  CHECK(w.failed == 1);
  CHECK(w.exit_code() == 1);
  CHECK(w.table.find("FAIL") != std::string::npos);
  check_error([] { run_gradcheck({.op = "no_such_op", .print = false}); },
              {"[gradcheck] no case for op 'no_such_op' (ops with cases: add, ", "scaled_cube"});
}

TEST_CASE("custom op: backward gets contiguous gradients, even from sum's expanded one") {
  Tensor x = leaf({0.5, 1.0, 2.0, -1.5});
  sum(XTanhX::apply(x)).backward();  // sum's backward hands a (4,) view of one element (stride 0)
  const std::vector<double> xv = {0.5, 1.0, 2.0, -1.5};
  const std::vector<double> gx = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i)
    CHECK(gx[i] == doctest::Approx(std::tanh(xv[i]) + xv[i] / (std::cosh(xv[i]) * std::cosh(xv[i]))));
}

TEST_CASE("custom op: a forward that returns a tensor it did not make leaves that tensor's history alone") {
  g_captured = leaf({1.0, 2.0});  // a parameter
  Tensor x = leaf({5.0, 6.0});
  Tensor y = ReturnsCaptured::apply(x);
  CHECK(y.grad_fn()->name() == "returns_captured");
  CHECK(g_captured.is_leaf());  // still a parameter: its own uses send it gradients
  CHECK(!g_captured.grad_fn());
  sum(mul_scalar(g_captured, 3.0)).backward();
  CHECK(g_captured.grad().to_vector<double>() == std::vector<double>{3.0, 3.0});
  Tensor v = leaf({1.0, 1.0});
  g_captured = mul_scalar(v, 5.0);  // another graph's output
  Tensor y2 = ReturnsCaptured::apply(x);
  CHECK(g_captured.grad_fn()->name() == "mul_scalar");
  sum(g_captured).backward();
  CHECK(v.grad().to_vector<double>() == std::vector<double>{5.0, 5.0});
  g_captured = Tensor();
}

TEST_CASE(
    "custom op: a backward that modifies its gradient, throws, or keeps a tensor in saved_data is refused by name") {
  Tensor x = leaf({1.0, 2.0}), w = leaf({1.0, 1.0});
  g_slip = 0;  // add hands one gradient to both inputs: changing it in place would corrupt w's
  check_error([&] { sum(add(w, Slippery::apply(x))).backward(); },
              {"[slippery] backward: the gradient of output 0 it received was modified in place"});
  g_slip = 1;
  check_error([&] { sum(Slippery::apply(x)).backward(); }, {"[slippery] backward: bad any_cast"});
  g_slip = 2;
  check_error([&] { Slippery::apply(x); }, {"[slippery] ctx.saved_data[\"y\"] holds a tensor", "save_for_backward"});
  g_slip = 3;
  check_error([&] { Slippery::apply(x); }, {"[slippery] forward: vector::at"});
  g_slip = 4;
  check_error([&] { Slippery::apply(x); },
              {"[slippery] forward: input 0 (which needs a gradient) was modified in place"});
  // In-place ops refuse a tensor whose elements share memory (PyTorch's rule), instead of compounding.
  Tensor one = from_vector<double>({1.0}, {1});
  check_error([&] { one.expand({3}).mul_(3.0); }, {"[mul_] the tensor (3,) has elements that share memory"});
  CHECK(one.to_vector<double>() == std::vector<double>{1.0});
  g_slip = 0;
}

TEST_CASE("gradcheck: a case that throws any exception fails with its message, and its input is restored") {
  // Throws at x + eps for x = 0.5: a domain check, as a user's op may have.
  auto fn = [](const std::vector<Tensor>& in) {
    if (in[0].to_vector<double>()[0] > 0.5) throw std::domain_error("x must be <= 0.5");
    return mul(in[0], in[0]);
  };
  Tensor x = from_vector<double>({0.5, 1.0}, {2}).requires_grad_();
  GradcheckResult r = gradcheck(fn, {x});
  CHECK(!r.pass);
  CHECK(r.message.find("x must be <= 0.5 (at input 0 element 0 + eps)") != std::string::npos);
  CHECK(x.to_vector<double>() == std::vector<double>{0.5, 1.0});  // not left perturbed
  g_slip = 1;  // bad any_cast in backward, through the runner: a FAIL row, not an abort
  GradcheckRegistry own;
  own.add({Slippery::kind(), "", [](Generator& g, Device d) { return std::vector<Tensor>{gc_randn({3}, g, d)}; },
           [](const std::vector<Tensor>& in) { return Slippery::apply(in[0]); }});
  GradcheckSummary s = run_gradcheck({.op = "slippery", .print = false, .registry = &own});
  CHECK(s.failed == 1);
  CHECK(s.table.find("bad any_cast") != std::string::npos);
  g_slip = 0;
}
