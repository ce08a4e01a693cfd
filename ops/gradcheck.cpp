#include "ops/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autograd/node.h"
#include "cuda/runtime.h"
#include "ops/ops.h"

namespace mg {

Tensor gc_randn(const Shape& s, Generator& g, Device dev) {
  Tensor t = randn(s, DType::f64, &g);
  if (!dev.is_cpu()) t = to_device(t, dev);
  return t.requires_grad_();
}

Tensor gc_uniform(const Shape& s, double lo, double hi, Generator& g, Device dev) {
  Tensor t = rand(s, DType::f64, &g, lo, hi);
  if (!dev.is_cpu()) t = to_device(t, dev);
  return t.requires_grad_();
}

std::string describe_inputs(const std::vector<Tensor>& inputs) {
  std::string s;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) s += ", ";
    s += inputs[i].defined() ? mg::format("{} {}", inputs[i].shape(),
                                          inputs[i].dtype() == DType::i64              ? "i64"
                                          : dtype_name(inputs[i].dtype()) == "float64" ? "f64"
                                                                                       : "f32")
                             : "none";
  }
  return s;
}

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, double atol, double rtol,
                          double eps, uint64_t seed) {
  GradcheckResult res;
  try {
    for (auto& t : inputs)
      if (t.defined() && t.requires_grad())
        MG_CHECK(t.dtype() == DType::f64, "[gradcheck] inputs that require grad must be float64, got {} {}", t.shape(),
                 t.dtype());
    Tensor out = fn(inputs);
    MG_CHECK(out.requires_grad(),
             "[gradcheck] the output does not require grad: nothing was recorded (no input requires grad, or grad "
             "mode is off)");
    Generator g(seed ^ 0x5eed);
    Tensor r = randn(out.shape(), DType::f64, &g);
    if (!out.device().is_cpu()) r = to_device(r, out.device());
    auto loss_of = [&](const Tensor& o) {
      NoGradGuard ng;
      return sum(mul(o, r)).item();
    };
    for (auto& t : inputs)
      if (t.defined()) t.zero_grad();
    sum(mul(out, r)).backward();

    for (size_t k = 0; k < inputs.size(); ++k) {
      const Tensor& t = inputs[k];
      if (!t.defined() || !t.requires_grad()) continue;
      Tensor ga = t.grad();
      std::vector<double> analytic = ga.defined() ? ga.to_vector<double>() : std::vector<double>(t.numel(), 0.0);
      // Perturb one element at a time in the input's own storage (on a device: one 8-byte copy each).
      MG_CHECK(t.is_contiguous(), "[gradcheck] input {} must be contiguous", k);
      const std::vector<double> values = t.to_vector<double>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        auto set = [&](double v) {
          if (t.device().is_cpu())
            t.data<double>()[i] = v;
          else
            cuda::copy_host_to_device(t.data<double>() + i, &v, sizeof(double), t.device().index, "gradcheck");
        };
        const double orig = values[i];
        double fp, fm;
        {
          NoGradGuard ng;
          // The element is restored whatever fn throws: the caller's input is never left perturbed.
          struct Restore {
            decltype(set)& put;
            double v;
            ~Restore() {
              try {
                put(v);
              } catch (...) {}
            }
          } restore{set, orig};
          auto at = [&](double delta) {
            set(orig + delta);
            try {
              return loss_of(fn(inputs));
            } catch (const std::exception& e) {
              MG_THROW("{} (at input {} element {} {} eps)", e.what(), k, i, delta > 0 ? "+" : "-");
            }
          };
          fp = at(eps);
          fm = at(-eps);
        }
        const double numeric = (fp - fm) / (2 * eps);
        const double a = analytic[i];
        const double err = std::abs(a - numeric);
        const double scale = std::max(std::abs(a), std::abs(numeric));
        res.max_abs_err = std::max(res.max_abs_err, err);
        if (scale > atol) res.max_rel_err = std::max(res.max_rel_err, err / scale);
        if (!(err <= atol + rtol * std::abs(numeric)) && res.message.empty())
          res.message = mg::format("input {} element {}: analytic {:.10g}, numeric {:.10g}", k, i, a, numeric);
      }
    }
    res.pass = res.message.empty();
  } catch (const std::exception& e) {  // mg::Error, or whatever a user's op threw: a failed case, not a crash
    res.pass = false;
    res.message = e.what();
  } catch (...) {
    res.pass = false;
    res.message = "the function threw something that is not a std::exception";
  }
  return res;
}

namespace {

// The ops that have a case, in registration order, each once.
std::vector<std::string_view> ops_with_cases(const std::vector<GradcheckCase>& cases) {
  std::vector<std::string_view> names;
  for (const auto& c : cases)
    if (std::find(names.begin(), names.end(), c.op.name()) == names.end()) names.push_back(c.op.name());
  return names;
}

}  // namespace

GradcheckSummary run_gradcheck(const GradcheckOptions& o) {
  const auto& cases = (o.registry ? *o.registry : GradcheckRegistry::get()).cases();
  const std::vector<std::string_view> ops = ops_with_cases(cases);
  if (!o.op.empty() && std::find(ops.begin(), ops.end(), o.op) == ops.end()) {
    std::string names;
    for (auto n : ops) names += std::string(names.empty() ? "" : ", ") + std::string(n);
    MG_THROW("[gradcheck] no case for op '{}' (ops with cases: {})", o.op, names);
  }
  size_t width = 2;  // the op column fits the longest name shown
  for (const auto& c : cases)
    if (o.op.empty() || c.op.name() == o.op) width = std::max(width, c.op.name().size());
  GradcheckSummary sum;
  auto emit = [&](const std::string& line) {
    sum.table += line;
    if (o.print) std::fputs(line.c_str(), stdout), std::fflush(stdout);
  };
  // On cuda the inputs live on the device and are perturbed there (gradcheck above).
  emit(mg::format("gradcheck on {}: float64, central differences\n", o.device.str()));
  emit(mg::format("{:<{}} {:<40} {:<34} {:>10} {:>10}  {}\n", "op", width, "case", "inputs", "max abs", "max rel",
                  "result"));
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    if (!o.op.empty() && c.op.name() != o.op) continue;
    Generator g(o.seed * 7919 + i);
    std::vector<Tensor> inputs = c.make_inputs(g, o.device);
    GradcheckResult r = gradcheck(c.fn, inputs, c.atol, c.rtol, 1e-6, o.seed + i);
    (r.pass ? sum.passed : sum.failed) += 1;
    emit(mg::format("{:<{}} {:<40} {:<34} {:>10.2e} {:>10.2e}  {}\n", c.op.name(), width, c.label.substr(0, 40),
                    describe_inputs(inputs).substr(0, 34), r.max_abs_err, r.max_rel_err, r.pass ? "PASS" : "FAIL"));
    if (!r.pass) emit(mg::format("    {}\n", r.message));
  }
  emit(mg::format("\n{} passed, {} failed\n", sum.passed, sum.failed));
  return sum;
}

GradcheckRegistry& GradcheckRegistry::get() {
  static GradcheckRegistry reg = [] {
    GradcheckRegistry r;
    register_elementwise_gradchecks(r);
    register_reduce_gradchecks(r);
    register_matmul_gradchecks(r);
    register_shape_gradchecks(r);
    register_embedding_gradchecks(r);
    register_softmax_gradchecks(r);
    register_rms_norm_gradchecks(r);
    register_selective_scan_gradchecks(r);
    register_causal_conv1d_gradchecks(r);
    register_state_update_gradchecks(r);
    return r;
  }();
  return reg;
}

}  // namespace mg
