#include "ops/function.h"

#include <algorithm>

#include "ops/ops.h"

namespace mg {

// ---- the context ----

void FunctionCtx::save_for_backward(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) saved_.emplace_back(t, op_);
}

std::vector<Tensor> FunctionCtx::saved() const {
  std::vector<Tensor> out;
  out.reserve(saved_.size());
  for (const SavedTensor& s : saved_) out.push_back(s.get());
  return out;
}

void FunctionCtx::mark_non_differentiable(const std::vector<Tensor>& outputs) {
  for (const Tensor& t : outputs)
    if (t.defined()) non_differentiable_.push_back(t.impl_ptr().get());
}

bool FunctionCtx::is_non_differentiable(const Tensor& output) const {
  return !is_floating(output.dtype()) || std::find(non_differentiable_.begin(), non_differentiable_.end(),
                                                   output.impl_ptr().get()) != non_differentiable_.end();
}

// ---- apply ----

namespace {

// The forward's outputs, checked; an output that is one of the inputs itself becomes a new handle on
// the same storage, so that recording it never rewrites the input's own grad_fn.
std::vector<Tensor> checked_outputs(OpKind op, std::vector<Tensor> outputs, const std::vector<Tensor>& inputs) {
  MG_CHECK(!outputs.empty(), "[{}] the forward of this custom op returned no tensor", op.name());
  for (size_t i = 0; i < outputs.size(); ++i) {
    MG_CHECK(outputs[i].defined(), "[{}] the forward of this custom op returned an undefined tensor as output {}",
             op.name(), i);
    for (const Tensor& in : inputs)
      if (in.defined() && in.impl_ptr() == outputs[i].impl_ptr()) outputs[i] = outputs[i].detach();
  }
  return outputs;
}

}  // namespace

std::vector<Tensor> apply_function(OpKind op, const std::vector<Tensor>& inputs, const FunctionForward& forward,
                                   FunctionBackward backward) {
  OpScope scope(op, inputs);  // the profiler's event, under the op's own name
  auto ctx = std::make_shared<FunctionCtx>(op);
  ctx->needs_.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    ctx->needs_[i] = GradMode::enabled() && inputs[i].defined() && inputs[i].requires_grad();
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;  // the ops inside the forward record nothing: the op is one node
    outputs = checked_outputs(op, forward(*ctx), inputs);
  }
  // Only the differentiable outputs are recorded; the vjp puts their gradients back in place, with
  // zeros for the others, so that backward sees one gradient per output of forward.
  std::vector<Tensor*> recorded;
  std::vector<size_t> slot;
  std::vector<TensorMeta> metas;
  for (size_t i = 0; i < outputs.size(); ++i) {
    metas.push_back(TensorMeta::of(outputs[i]));
    if (ctx->is_non_differentiable(outputs[i])) continue;
    recorded.push_back(&outputs[i]);
    slot.push_back(i);
  }
  if (recorded.empty()) return outputs;
  record(op, inputs, recorded,
         [ctx, backward = std::move(backward), slot = std::move(slot), metas = std::move(metas)](const VjpArgs& a) {
           std::vector<Tensor> grads(metas.size());
           for (size_t k = 0; k < slot.size(); ++k) grads[slot[k]] = a[k];
           for (size_t i = 0; i < grads.size(); ++i)
             if (!grads[i].defined()) grads[i] = zeros(metas[i].shape, metas[i].dtype, metas[i].device);
           ctx->needs_ = a.needs;
           std::vector<Tensor> in_grads = backward(*ctx, grads);
           MG_CHECK(in_grads.size() == ctx->needs_.size(),
                    "[autograd] the backward of {} returned {} gradients for its {} tensor inputs (return one per "
                    "input, an undefined Tensor() where needs_input_grad(i) is false)",
                    ctx->op().name(), in_grads.size(), ctx->needs_.size());
           return in_grads;
         });
  return outputs;
}

}  // namespace mg
