// Gradient checking. One harness: float64 inputs, loss = sum(out * r) for a fixed random r, analytic
// gradients from backward against central differences for every input that requires grad.
// Every differentiable op of the library has at least one case in the registry; `mambagrad gradcheck`
// runs them. A user's program checks its own ops the same way: gradcheck() on one function, or
// cases added to the registry and run_gradcheck() (the CLI's table and exit status) from its own main:
//
//   GradcheckRegistry::get().add({Softsign::kind(), "(3, 5)",
//       [](Generator& g, Device d) { return std::vector<Tensor>{gc_randn({3, 5}, g, d)}; },
//       [](const std::vector<Tensor>& in) { return Softsign::apply(in[0]); }});
//   return run_gradcheck({.op = "softsign"}).exit_code();
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/op_kind.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace mg {

struct GradcheckResult {
  bool pass = false;
  double max_abs_err = 0;  // over every element of every checked input
  double max_rel_err = 0;  // |analytic - numeric| / max(|analytic|, |numeric|), where that exceeds atol
  std::string message;     // the first mismatch, or the error thrown
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs must be float64; those that require grad are checked. Passes when every element satisfies
// |analytic - numeric| <= atol + rtol * |numeric|.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, double atol = 1e-7,
                          double rtol = 1e-6, double eps = 1e-6, uint64_t seed = 0);

struct GradcheckCase {
  OpKind op;          // a listed OpId, a unary op's kind, or a user's op (Function<Derived>::kind())
  std::string label;  // what makes this case special, e.g. "broadcast (3,1) + (4)"
  std::function<std::vector<Tensor>(Generator&, Device)> make_inputs;
  GradcheckFn fn;
  double atol = 1e-7;
  double rtol = 1e-6;
};

class GradcheckRegistry {
 public:
  static GradcheckRegistry& get();  // filled on first use from every ops/ file; a program may add its own
  void add(GradcheckCase c) { cases_.push_back(std::move(c)); }
  const std::vector<GradcheckCase>& cases() const { return cases_; }

 private:
  std::vector<GradcheckCase> cases_;
};

struct GradcheckOptions {
  std::string op;                               // only the cases of this op ("" = every case)
  Device device = kCPU;                         // where the inputs live (and are perturbed)
  uint64_t seed = 0;                            // of the random inputs
  bool print = true;                            // print the table to stdout as it goes (else only return it)
  const GradcheckRegistry* registry = nullptr;  // whose cases (null: GradcheckRegistry::get())
};

struct GradcheckSummary {
  int passed = 0, failed = 0;
  std::string table;  // what was printed: a header, one row per case, the first mismatch under a failed row, the totals
  int exit_code() const { return failed ? 1 : 0; }
};

// Runs the registered cases (as `mambagrad gradcheck` does): throws mg::Error when `op` has no case,
// listing the ops that have one.
GradcheckSummary run_gradcheck(const GradcheckOptions& options = {});

// Describes inputs for the table: "(2, 3) f64, (3,) f64".
std::string describe_inputs(const std::vector<Tensor>& inputs);

// Helpers for case builders: float64 tensors on `dev` that require grad.
Tensor gc_randn(const Shape& s, Generator& g, Device dev);
Tensor gc_uniform(const Shape& s, double lo, double hi, Generator& g, Device dev);

// Registration hooks, one per ops/ file (called once by GradcheckRegistry::get()).
void register_elementwise_gradchecks(GradcheckRegistry&);
void register_reduce_gradchecks(GradcheckRegistry&);
void register_matmul_gradchecks(GradcheckRegistry&);
void register_shape_gradchecks(GradcheckRegistry&);
void register_embedding_gradchecks(GradcheckRegistry&);
void register_softmax_gradchecks(GradcheckRegistry&);
void register_rms_norm_gradchecks(GradcheckRegistry&);
void register_selective_scan_gradchecks(GradcheckRegistry&);
void register_causal_conv1d_gradchecks(GradcheckRegistry&);
void register_state_update_gradchecks(GradcheckRegistry&);

}  // namespace mg
