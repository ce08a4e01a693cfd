#include "train/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <map>
#include <set>

#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "ops/optim.h"

namespace mg {

namespace {

template <class Visit>
void for_each_param(const std::vector<ParamGroup>& groups, Visit&& visit) {
  for (const auto& grp : groups)
    for (const auto& [name, p] : grp.params) visit(p);
}

double clip_grads(const std::vector<Tensor>& grads, double max_norm) {
  MG_CHECK(max_norm > 0 && std::isfinite(max_norm), "[clip_grad_norm] max_norm must be positive and finite, got {}",
           max_norm);
  for (const Tensor& g : grads)
    MG_CHECK(is_floating(g.dtype()), "[clip_grad_norm] gradients must be float32 or float64, got {}", g.dtype());
  // The sum of squares is deterministic on every device (ops/optim.cpp).
  double norm = std::sqrt(sum_squares(grads));
  if (norm > max_norm)  // false for NaN; inf gives a coefficient of 0, as in PyTorch (callers should skip)
    mul_each_(grads, max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(std::vector<ParamGroup> groups, double lr, std::pair<double, double> betas, double eps)
    : AdamW(std::move(groups), AdamWOptions{lr, betas.first, betas.second, eps}) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options) : groups_(std::move(groups)), options_(options) {
  MG_CHECK(options_.lr >= 0 && std::isfinite(options_.lr), "[AdamW] lr must be finite and >= 0, got {}", options_.lr);
  MG_CHECK(options_.beta1 >= 0 && options_.beta1 < 1 && options_.beta2 >= 0 && options_.beta2 < 1,
           "[AdamW] betas must be in [0, 1), got ({}, {})", options_.beta1, options_.beta2);
  MG_CHECK(options_.eps >= 0, "[AdamW] eps must be >= 0, got {}", options_.eps);
  std::set<std::string> names;
  std::set<const void*> impls;
  NoGradGuard guard;
  for (const auto& grp : groups_) {
    MG_CHECK(grp.weight_decay >= 0 && std::isfinite(grp.weight_decay),
             "[AdamW] weight_decay must be finite and >= 0, got {}", grp.weight_decay);
    std::vector<State> st;
    for (const auto& [name, p] : grp.params) {
      MG_CHECK(!name.empty(), "[AdamW] a parameter has an empty name");
      MG_CHECK(names.insert(name).second, "[AdamW] parameter name '{}' appears twice", name);
      MG_CHECK(p.defined(), "[AdamW] parameter '{}' is undefined", name);
      MG_CHECK(impls.insert(p.unsafe_impl()).second, "[AdamW] parameter '{}' is the same tensor as another one", name);
      MG_CHECK(is_floating(p.dtype()), "[AdamW] parameter '{}' is {}; only float32 and float64 can be optimized", name,
               p.dtype());
      MG_CHECK(p.is_leaf(), "[AdamW] parameter '{}' {} is not a leaf (it was computed by an op)", name, p.shape());
      MG_CHECK(p.is_contiguous(), "[AdamW] parameter '{}' {} must be contiguous", name, p.shape());
      st.push_back({zeros(p.shape(), p.dtype(), p.device()), zeros(p.shape(), p.dtype(), p.device())});
    }
    state_.push_back(std::move(st));
  }
}

void AdamW::set_lr(double lr) {
  MG_CHECK(lr >= 0 && std::isfinite(lr), "[AdamW] lr must be finite and >= 0, got {}", lr);
  options_.lr = lr;
}

void AdamW::step() {
  NoGradGuard guard;
  ++step_;
  const double lr = options_.lr, b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1.0 - std::pow(b1, (double)step_);
  const double bc2 = 1.0 - std::pow(b2, (double)step_);
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  // One op over every parameter with a gradient; it picks the CPU or CUDA kernel (ops/optim.cpp).
  std::vector<AdamWParam> update;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double decay = 1.0 - lr * groups_[gi].weight_decay;
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const auto& [name, p] = groups_[gi].params[pi];
      if (!p.grad().defined()) continue;
      const State& s = state_[gi][pi];
      MG_CHECK(p.is_contiguous(), "[AdamW] parameter '{}' is no longer contiguous", name);
      MG_CHECK(s.exp_avg.device() == p.device(),
               "[AdamW] parameter '{}' is on {} but its optimizer state is on {}; move the model before making the "
               "optimizer",
               name, p.device(), s.exp_avg.device());
      update.push_back({p, p.grad(), s.exp_avg, s.exp_avg_sq, decay});
    }
  }
  adamw_step_(update, AdamWStep{b1, b2, step_size, bc2_sqrt, options_.eps});
}

void AdamW::zero_grad() {
  for_each_param(groups_, [](const Tensor& p) { p.zero_grad(); });
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& name = groups_[gi].params[pi].first;
      out.emplace_back(name + ".exp_avg", state_[gi][pi].exp_avg);
      out.emplace_back(name + ".exp_avg_sq", state_[gi][pi].exp_avg_sq);
    }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, Tensor>>& tensors, int64_t step_count) {
  MG_CHECK(step_count >= 0, "[AdamW::load_state] step count must be >= 0, got {}", step_count);
  std::map<std::string, Tensor> by_name;
  for (const auto& [name, t] : tensors) {
    MG_CHECK(t.defined(), "[AdamW::load_state] state tensor '{}' is undefined", name);
    MG_CHECK(by_name.emplace(name, t).second, "[AdamW::load_state] state tensor '{}' appears twice", name);
  }
  auto live = state_tensors();
  // Check everything before changing anything.
  for (const auto& [name, dst] : live) {
    auto it = by_name.find(name);
    MG_CHECK(it != by_name.end(), "[AdamW::load_state] the checkpoint has no optimizer state '{}'", name);
    MG_CHECK(it->second.shape() == dst.shape(), "[AdamW::load_state] state '{}' has shape {} but the parameter has {}",
             name, it->second.shape(), dst.shape());
    MG_CHECK(is_floating(it->second.dtype()), "[AdamW::load_state] state '{}' is {}, expected a floating dtype", name,
             it->second.dtype());
  }
  if (by_name.size() != live.size()) {
    std::set<std::string> known;
    for (const auto& [name, t] : live) known.insert(name);
    for (const auto& [name, t] : by_name)
      MG_CHECK(known.count(name), "[AdamW::load_state] unexpected optimizer state '{}' (no such parameter)", name);
  }
  NoGradGuard guard;
  for (const auto& [name, dst] : live) dst.copy_(by_name.at(name));
  step_ = step_count;
}

// ---------------------------------------------------------------- clipping

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  return clip_grads(grads, max_norm);
}

double clip_grad_norm(const std::vector<std::pair<std::string, Tensor>>& params, double max_norm) {
  std::vector<Tensor> ps;
  for (const auto& [name, p] : params) ps.push_back(p);
  return clip_grad_norm(ps, max_norm);
}

double clip_grad_norm(const std::vector<ParamGroup>& groups, double max_norm) {
  std::vector<Tensor> ps;
  for_each_param(groups, [&](const Tensor& p) { ps.push_back(p); });
  return clip_grad_norm(ps, max_norm);
}

// ---------------------------------------------------------------- schedule

double lr_at(int64_t step, int64_t warmup, int64_t total, double peak, double min_ratio) {
  MG_CHECK(step >= 0 && warmup >= 0 && total >= 0, "[lr_at] step {}, warmup {} and total {} must be >= 0", step, warmup,
           total);
  MG_CHECK(warmup <= total, "[lr_at] warmup {} is longer than the whole schedule of {} steps", warmup, total);
  MG_CHECK(min_ratio >= 0 && min_ratio <= 1, "[lr_at] min_ratio must be in [0, 1], got {}", min_ratio);
  if (step < warmup) return peak * (double)(step + 1) / (double)warmup;
  const double lo = min_ratio * peak;
  if (step >= total) return lo;
  double progress = (double)(step - warmup) / (double)(total - warmup);
  return lo + (peak - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace mg
