#include "train/train_step.h"

#include <cmath>

namespace mg {

std::vector<ParamGroup> make_param_groups(const Module& model, double weight_decay) {
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  for (auto& p : model.named_parameters()) groups[p.decay ? 0 : 1].params.push_back({p.name, p.tensor});
  return groups;
}

namespace {

// The step after the forward: backward, clip, update (see train_step).
StepResult step_from_loss(AdamW& opt, Tensor loss, double clip, const std::function<void(StepPhase)>& on_phase,
                          GradientReducer* reducer) {
  if (on_phase) on_phase(StepPhase::forward);
  opt.zero_grad();
  if (reducer) reducer->begin();
  loss.backward();
  if (reducer) reducer->finish();  // every rank now holds the same gradients
  if (on_phase) on_phase(StepPhase::backward);
  StepResult r;
  // The norm comes back to the host (on CUDA the step's one wait for the device); the loss is read
  // after it, so reading it costs no extra wait. Neither lets a non-finite step update the model.
  r.grad_norm = clip_grad_norm(opt.groups(), clip);
  r.loss = loss.item();
  if (reducer) r.loss = reducer->mean_over_ranks(r.loss);  // so that every rank decides alike below
  r.updated = std::isfinite(r.loss) && std::isfinite(r.grad_norm);
  if (r.updated) opt.step();
  if (on_phase) on_phase(StepPhase::update);
  return r;
}
}  // namespace

StepResult train_step(const MambaLM& model, AdamW& opt, const Batch& batch, double clip,
                      const std::function<void(StepPhase)>& on_phase, GradientReducer* reducer) {
  Tensor loss = model.loss(batch.inputs, batch.targets);
  return step_from_loss(opt, loss, clip, on_phase, reducer);
}

StepResult train_step(const MambaLM& model, AdamW& opt, const Batch& batch, double clip, std::vector<LayerState>& carry,
                      const std::function<void(StepPhase)>& on_phase, GradientReducer* reducer) {
  std::vector<LayerState> final;
  Tensor loss = model.loss(batch.inputs, batch.targets, carry, final);
  StepResult r = step_from_loss(opt, loss, clip, on_phase, reducer);
  for (auto& s : final) s.conv = s.conv.detach(), s.ssm = s.ssm.detach();
  carry = std::move(final);
  return r;
}

}  // namespace mg
