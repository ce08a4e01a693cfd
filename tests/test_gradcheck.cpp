// The gradcheck registry covers every differentiable op, every case passes, and the harness does
// fail on a wrong vjp (a check that cannot fail would prove nothing).
#include <doctest/doctest.h>

#include <set>

#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "ops/ops.h"

using namespace mg;

TEST_CASE("gradcheck: every differentiable op has a case in the registry") {
  std::set<std::string_view> covered;
  for (auto& c : GradcheckRegistry::get().cases()) covered.insert(op_name(c.op));
  for (auto name : library_op_names()) {
    INFO("op " << name << " has no gradcheck case: add one in its ops/ file");
    CHECK(covered.count(name) == 1);
  }
}

TEST_CASE("gradcheck: every registered case passes on the cpu") {
  const auto& cases = GradcheckRegistry::get().cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    Generator g(1000 + i);
    auto inputs = c.make_inputs(g, kCPU);
    GradcheckResult r = gradcheck(c.fn, inputs, c.atol, c.rtol, 1e-6, i);
    INFO(op_name(c.op) << " [" << c.label << "]: " << r.message);
    CHECK(r.pass);
  }
}

TEST_CASE("gradcheck: a wrong vjp fails") {
  // silu with the derivative of sigmoid in place of its own: close in shape, wrong in value.
  auto wrong_silu = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    Tensor out;
    {
      NoGradGuard ng;
      out = silu(x);
    }
    const OpKind kind = OpKind::custom("wrong_silu");
    record(kind, {x}, {&out}, [sx = SavedTensor(x, kind)](const VjpArgs& g) {
      Tensor s = sigmoid(sx.get());
      return std::vector<Tensor>{mul(g[0], mul(s, 1.0 - s))};
    });
    return out;
  };
  Generator g(1);
  GradcheckResult r = gradcheck(wrong_silu, {gc_randn({4}, g, kCPU)});
  CHECK(!r.pass);
  CHECK(r.message.find("input 0 element") != std::string::npos);
  // A vjp that drops half the gradient of a broadcast input.
  auto bad_add = [](const std::vector<Tensor>& in) {
    Tensor out;
    {
      NoGradGuard ng;
      out = add(in[0], in[1]);
    }
    record(OpId::add, {in[0], in[1]}, {&out}, [](const VjpArgs& g) {
      return std::vector<Tensor>{g[0], narrow(g[0], 0, 0, 1)};  // should sum over dim 0
    });
    return out;
  };
  r = gradcheck(bad_add, {gc_randn({3, 2}, g, kCPU), gc_randn({1, 2}, g, kCPU)});
  CHECK(!r.pass);
}

TEST_CASE("gradcheck: inputs must be float64") {
  Generator g(2);
  Tensor x = randn({3}, DType::f32, &g).requires_grad_();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); }, {x});
  CHECK(!r.pass);
  CHECK(r.message.find("must be float64") != std::string::npos);
}
