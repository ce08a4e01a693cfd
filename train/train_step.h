// One training step, written once: the trainer, the training benchmark, the tests and the README's
// C++ example all take their steps and make their parameter groups through these two functions.
#pragma once
#include <functional>
#include <vector>

#include "data/dataset.h"
#include "models/mamba.h"
#include "train/distributed.h"
#include "train/optim.h"

namespace mg {

// The official Mamba recipe's groups: group 0 holds the parameters marked for weight decay (the
// matrices) with `weight_decay`, group 1 the others (biases, norms, A_log, D) with none.
std::vector<ParamGroup> make_param_groups(const Module& model, double weight_decay);

struct StepResult {
  double loss = 0;       // the batch's mean cross-entropy (nats per byte)
  double grad_norm = 0;  // the global gradient norm before clipping
  bool updated = false;  // false when the loss or the norm is not finite: then the weights are untouched
};

// The phases of a step, for timing (bench): each is reported when it has been queued.
enum class StepPhase { forward, backward, update };

// forward (the loss), zero_grad, backward, clip_grad_norm to `clip` (on CUDA the step's one read-back,
// with the loss read after it), then the AdamW update unless the loss or the norm is not finite.
// `on_phase`, when given, is called after each phase (a benchmark synchronises the device and reads
// its clock there).
// With a `reducer` (data-parallel training, train/distributed.h) the gradients are all-reduced during
// and after backward, before the clip, and the loss returned is the mean of every rank's loss: each
// rank then takes the same update.
StepResult train_step(const MambaLM& model, AdamW& opt, const Batch& batch, double clip,
                      const std::function<void(StepPhase)>& on_phase = nullptr, GradientReducer* reducer = nullptr);
// The same with carried state (train --carry-state): the window starts from `carry` (empty: zeros) and
// `carry` becomes the window's final state, detached, for the next window (truncated backpropagation
// through time: the gradient stops at the window's start).
StepResult train_step(const MambaLM& model, AdamW& opt, const Batch& batch, double clip, std::vector<LayerState>& carry,
                      const std::function<void(StepPhase)>& on_phase = nullptr, GradientReducer* reducer = nullptr);

}  // namespace mg
