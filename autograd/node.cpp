#include "autograd/node.h"

#include <unordered_map>

#include "autograd/grad_hook.h"
#include "ops/ops.h"

namespace mg {

// ---- grad mode ----
namespace {
thread_local bool g_grad_enabled = true;
}
bool GradMode::enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

// ---- node destruction without recursion ----
// Dropping the last reference to the head of a long chain would destroy node after node through
// nested destructors and overflow the stack. Instead each destructor hands its edges to a
// thread-local list, and only the outermost destructor drains it, one node at a time.
Node::~Node() {
  thread_local std::vector<std::shared_ptr<Node>> pending;
  thread_local bool draining = false;
  for (auto& e : next_edges)
    if (e.fn) pending.push_back(std::move(e.fn));
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // may push more edges onto `pending`
  }
  draining = false;
}

// ---- saved tensors ----
SavedTensor::SavedTensor(const Tensor& t, OpKind op) : op_(op) {
  if (!t.defined()) return;
  t_ = t.detach();
  version_ = t.storage()->version();
  kept_for_backward(t, op);
}

Tensor kept_for_backward(const Tensor& t, OpKind op) {
  if (observers::any()) [[unlikely]]
    observers::notify([&](EngineObserver& o) { o.tensor_saved(t, op); });
  return t;
}

Tensor SavedTensor::get() const {
  if (t_.defined())
    MG_CHECK(t_.storage()->version() == version_,
             "[autograd] a tensor of shape {} that {} saved for backward was modified in place after it was "
             "saved (its version is now {}, it was {} when saved); clone() it before modifying it",
             t_.shape(), op_name(op_), t_.storage()->version(), version_);
  return t_;
}

// ---- the nodes ----
namespace {

class FunctionNode final : public Node {
 public:
  FunctionNode(OpKind op, VjpFn vjp) : op_(op), vjp_(std::move(vjp)) {}
  std::string_view name() const override { return op_.name(); }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    MG_CHECK(vjp_ != nullptr,
             "[autograd] trying to backward through the graph a second time: the saved tensors of {} were "
             "freed by the first backward (pass retain_graph=true to it)",
             name());
    std::vector<bool> needs(next_edges.size());
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = next_edges[i].fn != nullptr;
    return vjp_(VjpArgs{grads, needs});
  }
  void release_saved() override { vjp_ = nullptr; }

 private:
  OpKind op_;
  VjpFn vjp_;
};

// set_grad_hook's hooks, by leaf (few: a model's parameters while a reducer lives; the engine runs on one thread).
std::unordered_map<const TensorImpl*, std::function<void()>>& grad_hooks() {
  static std::unordered_map<const TensorImpl*, std::function<void()>> hooks;
  return hooks;
}

// Sums incoming gradients into a leaf's .grad. Holds the leaf; the leaf holds this node weakly.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::string_view name() const override { return "AccumulateGrad"; }
  const TensorImpl* leaf() const override { return leaf_.get(); }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    Tensor leaf(leaf_);
    const Tensor& g = grads[0];
    Tensor cur = leaf.grad();
    if (cur.defined())
      cur.add_(g);
    else if (can_steal(g))
      leaf.autograd_meta().grad = g.impl_ptr();
    else
      leaf.autograd_meta().grad = mg::clone(g).impl_ptr();  // own copy: g may alias other gradients
    if (!grad_hooks().empty()) [[unlikely]]
      if (auto it = grad_hooks().find(leaf_.get()); it != grad_hooks().end()) it->second();
    return {};
  }

  // As PyTorch's AccumulateGrad: the incoming gradient becomes .grad without a copy when nothing else
  // can see it (the engine's buffer holds the only handle, no view shares its storage) and it is a
  // plain dense tensor (not, say, an expanded view whose elements overlap).
  static bool can_steal(const Tensor& g) {
    return g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && !g.requires_grad() && g.is_contiguous() &&
           g.offset() == 0 && g.storage()->nbytes() == g.nbytes();
  }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

}  // namespace

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  auto& meta = t.autograd_meta();
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    acc->input_meta = {};
    acc->output_meta = {TensorMeta::of(t)};
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

void set_grad_hook(const Tensor& leaf, std::function<void()> hook) {
  MG_CHECK(leaf.defined() && leaf.requires_grad() && !leaf.autograd_meta().grad_fn,
           "[autograd] set_grad_hook: the tensor must be a leaf that requires grad (a parameter)");
  if (hook)
    grad_hooks()[leaf.impl_ptr().get()] = std::move(hook);
  else
    grad_hooks().erase(leaf.impl_ptr().get());
}

bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!GradMode::enabled()) return false;
  for (auto* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& ts) {
  if (!GradMode::enabled()) return false;
  for (auto& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(OpKind op, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs, VjpFn vjp) {
  std::shared_ptr<FunctionNode> node;
  if (any_requires_grad(inputs)) {
    node = std::make_shared<FunctionNode>(op, std::move(vjp));
    node->next_edges.reserve(inputs.size());
    node->input_meta.reserve(inputs.size());
    for (auto& in : inputs) {
      node->next_edges.push_back(gradient_edge(in));
      node->input_meta.push_back(in.defined() ? TensorMeta::of(in) : TensorMeta{});
    }
    for (uint32_t i = 0; i < outputs.size(); ++i) {
      Tensor& out = *outputs[i];
      node->output_meta.push_back(TensorMeta::of(out));
      auto& meta = out.autograd_meta();
      meta.requires_grad = true;
      meta.grad_fn = node;
      meta.output_nr = i;
    }
  }
  if (observers::any()) [[unlikely]]
    observers::notify([&](EngineObserver& o) { o.node_created(op, node.get(), outputs); });
}

}  // namespace mg
