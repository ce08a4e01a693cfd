// An op defined outside the library, with a backward of its own: softsign(x) = x / (1 + |x|), as a
// mg::Function (ops/function.h, the equivalent of torch.autograd.Function). Its forward is a CPU
// loop of its own (other devices: the library's ops), its backward is written by hand from the saved
// input. The program checks that its node is named "softsign" (grad_fn, the graph, the profiler),
// gradchecks it in float64 through the public registry and run_gradcheck, then trains a small MLP that
// uses it. Built by the main build (mambagrad_example_custom_op), run by the tests, and built again by
// examples/external/ against an installed mambagrad. Exits 1 if any check fails or the loss does not drop 10x.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ops/function.h"
#include "fit_sine.h"
#include "introspect/graph_dot.h"
#include "introspect/profiler.h"
#include "ops/gradcheck.h"
#include "ops/ops.h"

using namespace mg;

struct Softsign : Function<Softsign> {
  static constexpr const char* name = "softsign";

  static Tensor forward(FunctionCtx& ctx, const Tensor& x) {
    ctx.save_for_backward({x});
    if (!x.device().is_cpu()) return div(x, add_scalar(sqrt(mul(x, x)), 1.0));  // |x| = sqrt(x^2)
    const Tensor xc = contiguous(x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    auto loop = [&](auto* out, const auto* in) {
      for (int64_t i = 0; i < x.numel(); ++i) out[i] = in[i] / (1 + std::abs(in[i]));
    };
    if (x.dtype() == DType::f64)
      loop(y.data<double>(), xc.data<double>());
    else
      loop(y.data<float>(), xc.data<float>());
    return y;
  }

  // d softsign / dx = 1 / (1 + |x|)^2
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    const Tensor x = ctx.saved()[0];
    return {div(grads[0], pow(add_scalar(sqrt(mul(x, x)), 1.0), 2.0))};
  }
};

Tensor softsign(const Tensor& x) { return Softsign::apply(x); }

namespace {

bool check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  return ok;
}

// The node's name where the tools show it.
bool check_names() {
  Tensor x = from_vector<float>({-2.0f, 0.5f, 3.0f}, {3}).requires_grad_();
  Tensor y = softsign(x);
  bool ok = check(y.grad_fn() && y.grad_fn()->name() == "softsign", "grad_fn is named softsign");
  ok &= check(autograd_graph_dot(sum(y)).find("softsign") != std::string::npos, "the graph names softsign");
  Profiler prof;
  sum(softsign(x)).backward();
  prof.stop();
  ok &= check(prof.table_text().find("softsign") != std::string::npos, "the profiler's table names softsign");
  return ok;
}

// Gradcheck, float64, through the registry a program adds its cases to.
bool check_gradients() {
  GradcheckRegistry::get().add({Softsign::kind(), "(4, 5)",
                                [](Generator& g, Device d) {
                                  return std::vector<Tensor>{gc_randn({4, 5}, g, d)};
                                },
                                [](const std::vector<Tensor>& in) { return softsign(in[0]); }});
  return check(run_gradcheck({.op = "softsign"}).failed == 0, "gradcheck of softsign");
}

// The MLP of examples/mlp.cpp with softsign as its activation fits y = sin(3x) on [-1, 1].
bool train() {
  const FitResult r = fit_sine(softsign, 400);
  return check(r.last_mse < r.first_mse / 10, "the MLP with softsign trains");
}

}  // namespace

int main() {
  bool ok = check_names();
  ok &= check_gradients();
  ok &= train();
  return ok ? 0 : 1;
}
