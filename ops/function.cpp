#include "ops/function.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <new>
#include <typeindex>

#include "ops/ops.h"

namespace mg {

// ---- the context ----

void FunctionCtx::save_for_backward(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) saved_.emplace_back(t, op_);
}

const Tensor& SavedTensors::operator[](size_t i) const {
  MG_CHECK(i < size(),
           "ctx.saved()[{}], but {}: keep what backward needs with ctx.save_for_backward({{...}}) in forward", i,
           empty() ? std::string("forward saved no tensors")
                   : mg::format("forward saved {} (indices 0 to {})",
                                size() == 1 ? std::string("1 tensor") : mg::format("{} tensors", size()), size() - 1));
  return std::vector<Tensor>::operator[](i);
}

SavedTensors FunctionCtx::saved() const {
  SavedTensors out;
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

OpKind function_kind(std::string_view name, const std::type_info& type) {
  const OpKind kind = OpKind::custom(name);  // checks the name
  static std::mutex mu;
  static std::map<std::string, std::type_index, std::less<>> owners;
  std::lock_guard lock(mu);
  const auto [it, added] = owners.emplace(std::string(name), std::type_index(type));
  MG_CHECK(added || it->second == std::type_index(type),
           "[custom op] two Function types are named '{}': each op needs a name of its own (they would share one "
           "node name, profiler row and set of gradcheck cases)",
           name);
  return kind;
}

// ---- apply ----

namespace {

// The forward's outputs, checked.
void check_outputs(OpKind op, const std::vector<Tensor>& outputs) {
  MG_CHECK(!outputs.empty(), "[{}] the forward of this custom op returned no tensor", op.name());
  for (size_t i = 0; i < outputs.size(); ++i)
    MG_CHECK(outputs[i].defined(), "[{}] the forward of this custom op returned an undefined tensor as output {}",
             op.name(), i);
}

// A Tensor kept in ctx.saved_data would make a cycle (output -> node -> ctx -> output) that leaks the
// graph when backward never runs, and would escape the in-place check: tensors go through save_for_backward.
void check_saved_data(OpKind op, const FunctionCtx& ctx) {
  for (const auto& [key, value] : ctx.saved_data) {
    const auto& t = value.type();
    MG_CHECK(t != typeid(Tensor) && t != typeid(std::vector<Tensor>) && t != typeid(std::optional<Tensor>),
             "[{}] ctx.saved_data[\"{}\"] holds a tensor: keep tensors with ctx.save_for_backward (it checks that they "
             "are not modified in place and frees them after backward), and only other values in saved_data",
             op.name(), key);
  }
}

// Each tensor's storage version (0 for an undefined one): compared after the user's code to see what it
// modified in place.
std::vector<uint64_t> storage_versions(const std::vector<Tensor>& ts) {
  std::vector<uint64_t> v;
  v.reserve(ts.size());
  for (const Tensor& t : ts) v.push_back(t.defined() ? t.storage()->version() : 0);
  return v;
}

// Runs `f` (the user's forward or backward); an exception it throws is rethrown as mg::Error naming the op
// and the pass, so that "bad any_cast" or "[mul] dtypes differ" says where it came from.
template <class F>
auto in_user_code(OpKind op, const char* pass, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw;  // the command line's out-of-memory message names the machine's memory
  } catch (const std::exception& e) {
    MG_THROW("[{}] {}: {}", op.name(), pass, e.what());
  }
}

}  // namespace

std::vector<Tensor> apply_function(OpKind op, const std::vector<Tensor>& inputs, const FunctionForward& forward,
                                   FunctionBackward backward) {
  OpScope scope(op, inputs);        // the profiler's event, under the op's own name
  const bool custom = op.id() < 0;  // a user's op (the library's own ops do not come through here)
  auto ctx = std::make_shared<FunctionCtx>(op);
  ctx->needs_.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    ctx->needs_[i] = GradMode::enabled() && inputs[i].defined() && inputs[i].requires_grad();
  const std::vector<uint64_t> versions = storage_versions(inputs);
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;  // the ops inside the forward record nothing: the op is one node
    outputs = custom ? in_user_code(op, "forward", [&] { return forward(*ctx); }) : forward(*ctx);
  }
  // Grad mode is off inside forward, so an in-place op there is not refused as it is outside: an input
  // that needs a gradient and changed would get one of the wrong function.
  for (size_t i = 0; i < inputs.size(); ++i)
    MG_CHECK(!ctx->needs_[i] || inputs[i].storage()->version() == versions[i],
             "[{}] forward: input {} (which needs a gradient) was modified in place; compute a new tensor, or clone() "
             "the input first",
             op.name(), i);
  check_outputs(op, outputs);
  check_saved_data(op, *ctx);
  // Only the differentiable outputs are recorded; the vjp puts their gradients back in place, with
  // zeros for the others, so that backward sees one gradient per output of forward. Every output is a
  // new handle on its storage: recording never rewrites the history of a tensor the forward did not make
  // (an input returned as is, a captured parameter or cache, another graph's output).
  std::vector<Tensor*> recorded;
  std::vector<size_t> slot;
  std::vector<TensorMeta> metas;
  for (size_t i = 0; i < outputs.size(); ++i) {
    metas.push_back(TensorMeta::of(outputs[i]));
    const bool differentiable = !ctx->is_non_differentiable(outputs[i]);
    outputs[i] = outputs[i].detach();
    if (!differentiable) continue;
    recorded.push_back(&outputs[i]);
    slot.push_back(i);
  }
  if (recorded.empty()) return outputs;
  // backward gets contiguous gradients (an expanded one, as sum's backward gives, is copied), so that a
  // loop over data() reads each element; it must not modify them: a gradient's storage may be shared with
  // other inputs' gradients (add hands one to both), so an in-place change would corrupt theirs. Checked
  // by the storages' versions.
  record(op, inputs, recorded,
         [ctx, custom, backward = std::move(backward), slot = std::move(slot),
          metas = std::move(metas)](const VjpArgs& a) {
           std::vector<Tensor> grads(metas.size());
           for (size_t k = 0; k < slot.size(); ++k) grads[slot[k]] = a[k].defined() ? a[k].contiguous() : a[k];
           for (size_t i = 0; i < grads.size(); ++i)
             if (!grads[i].defined()) grads[i] = zeros(metas[i].shape, metas[i].dtype, metas[i].device);
           const std::vector<uint64_t> versions = storage_versions(grads);
           ctx->needs_ = a.needs;
           std::vector<Tensor> in_grads =
               custom ? in_user_code(ctx->op(), "backward", [&] { return backward(*ctx, grads); })
                      : backward(*ctx, grads);
           for (size_t i = 0; i < grads.size(); ++i)
             MG_CHECK(grads[i].storage()->version() == versions[i],
                      "[{}] backward: the gradient of output {} it received was modified in place; a gradient may "
                      "share its storage with other inputs' gradients, so compute a new tensor (mul(g, ...), not "
                      "g.mul_(...))",
                      ctx->op().name(), i);
           MG_CHECK(in_grads.size() == ctx->needs_.size(),
                    "[autograd] the backward of {} returned {} gradient{} for its {} tensor input{} (return one per "
                    "input, an undefined Tensor() where needs_input_grad(i) is false)",
                    ctx->op().name(), in_grads.size(), in_grads.size() == 1 ? "" : "s", ctx->needs_.size(),
                    ctx->needs_.size() == 1 ? "" : "s");
           return in_grads;
         });
  return outputs;
}

}  // namespace mg
