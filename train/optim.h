// AdamW (decoupled weight decay, Loshchilov & Hutter), global-norm gradient clipping and the
// learning-rate schedule of docs/design.md#training-defaults. Formulas follow torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ so that runs can be compared with PyTorch.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mg {

// Parameters that share a weight decay (docs/design.md#training-defaults: 0.1 for matrices, 0 for biases, norm weights,
// A_log, D and the embedding). Names must be unique across all groups; they name the optimizer
// state in checkpoints ("<name>.exp_avg", "<name>.exp_avg_sq").
struct ParamGroup {
  std::vector<std::pair<std::string, Tensor>> params;
  double weight_decay = 0.0;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
};

// One step, for every parameter p with a gradient g (params without a gradient are skipped: their
// state and values do not change), with t = step_count() after the increment:
//   p <- p * (1 - lr * weight_decay)
//   m <- beta1 m + (1 - beta1) g               v <- beta2 v + (1 - beta2) g^2
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// One fused pass over p, g, m, v per parameter (float32 or float64, contiguous), in the parameter's
// precision. On the CPU parameter by parameter; on CUDA every parameter of a device in one launch per
// dtype (cuda/optim.cu, the same arithmetic). The state lives on each parameter's device: move the
// model (Module::to) before making the optimizer. Unlike PyTorch, which keeps a step count per parameter, the step
// count is shared: it differs only for parameters that sometimes have no gradient (never the case for the LM). The
// state (m, v: zeros like each parameter) is allocated at construction, so state_tensors() is complete before the first
// step and a checkpoint can be restored into a fresh optimizer.
class AdamW {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, double lr = 1e-3, std::pair<double, double> betas = {0.9, 0.95},
                 double eps = 1e-8);
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options);

  void step();
  // Drops every parameter's gradient (the next backward allocates fresh ones).
  void zero_grad();

  double lr() const { return options_.lr; }
  void set_lr(double lr);
  const AdamWOptions& options() const { return options_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t step_count() const { return step_; }

  // "<param>.exp_avg" and "<param>.exp_avg_sq" for every parameter, in group order. The tensors are
  // the live state (not copies): save them before the next step().
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // Restores a checkpoint: `tensors` must hold exactly the names state_tensors() gives, with the
  // same shapes (dtypes are converted); values are copied into the live state.
  void load_state(const std::vector<std::pair<std::string, Tensor>>& tensors, int64_t step_count);

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq;
  };
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<State>> state_;  // parallel to groups_[g].params
  AdamWOptions options_;
  int64_t step_ = 0;
};

// Clips gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_: the norm over all
// gradients together (parameters without a gradient are skipped) is computed in double in a fixed
// order, independent of the thread count; when norm > max_norm every gradient is multiplied by
// max_norm / (norm + 1e-6). Returns the norm before clipping (NaN or inf when a gradient is not
// finite; then nothing is scaled and the caller should skip the step). CUDA gradients are summed on
// their device (per-block partial sums in double, added in a fixed order: deterministic) and scaled
// in one launch; only the norm comes back to the host.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const std::vector<std::pair<std::string, Tensor>>& params, double max_norm);
double clip_grad_norm(const std::vector<ParamGroup>& groups, double max_norm);

// The learning rate for optimizer step `step` (0-based: the value to use for the step that makes
// step_count() become step + 1):
//   warm-up, step < warmup:       peak * (step + 1) / warmup      (step 0 gets peak / warmup, step
//                                                                  warmup - 1 gets peak, as with
//                                                                  LambdaLR(lambda s: (s+1)/warmup))
//   cosine, warmup <= step < total: min + (peak - min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2
//   step >= total:                min = min_ratio * peak
// warmup = 0 starts directly at peak; warmup must not exceed total.
double lr_at(int64_t step, int64_t warmup, int64_t total, double peak, double min_ratio = 0.1);

}  // namespace mg
