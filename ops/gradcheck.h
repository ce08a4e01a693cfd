// Gradient checking. One harness: float64 inputs, loss = sum(out * r) for a fixed random r, analytic
// gradients from backward against central differences for every input that requires grad.
// Every differentiable op has at least one case in the registry; `mambagrad gradcheck` runs them.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/op_list.h"
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
  OpId op;
  std::string label;  // what makes this case special, e.g. "broadcast (3,1) + (4)"
  std::function<std::vector<Tensor>(Generator&, Device)> make_inputs;
  GradcheckFn fn;
  double atol = 1e-7;
  double rtol = 1e-6;
};

class GradcheckRegistry {
 public:
  static GradcheckRegistry& get();  // filled on first use from every ops/ file
  void add(GradcheckCase c) { cases_.push_back(std::move(c)); }
  const std::vector<GradcheckCase>& cases() const { return cases_; }

 private:
  std::vector<GradcheckCase> cases_;
};

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
