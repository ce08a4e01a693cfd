// The recorded graph. Each op that needs a backward creates one Node holding its vjp, the edges to
// the nodes of its inputs (their grad_fn, or a leaf's AccumulateGrad) and the metadata the engine
// uses to check every returned gradient. Ops call record() (a user's op through apply_function(),
// ops/function.h); nothing else builds nodes. A node names itself: its OpKind's name.
// Tools observe nodes through autograd/observer.h.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/observer.h"
#include "core/op_kind.h"
#include "core/tensor.h"

namespace mg {

struct TensorMeta {
  Shape shape;
  DType dtype;
  Device device;
  static TensorMeta of(const Tensor& t) { return {t.shape(), t.dtype(), t.device()}; }
};

struct Edge {
  std::shared_ptr<Node> fn;  // null: that input needs no gradient
  uint32_t input_nr = 0;     // which output of `fn` the input was
};

class Node {
 public:
  virtual ~Node();
  virtual std::string_view name() const = 0;
  // grads: one per output of this node, each defined (the engine fills zeros for missing ones).
  // Returns one gradient per input (undefined where the input needs none).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grads) = 0;
  // Frees the saved tensors after a backward without retain_graph.
  virtual void release_saved() {}
  // The leaf tensor whose .grad this node fills (AccumulateGrad), else null. For graph drawing.
  virtual const TensorImpl* leaf() const { return nullptr; }

  std::vector<Edge> next_edges;         // one per input
  std::vector<TensorMeta> input_meta;   // what each input's gradient must look like
  std::vector<TensorMeta> output_meta;  // for zero-filling outputs that received no gradient
  std::unique_ptr<NodeNote> note;       // an observer's, set at creation (anomaly mode: where it was made)
};

// A tensor kept for backward: a detached alias plus the storage version at save time. get() throws
// if the storage was modified in place since.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, OpKind op);
  Tensor get() const;
  bool defined() const { return t_.defined(); }

 private:
  Tensor t_;
  uint64_t version_ = 0;
  OpKind op_ = OpId::add;  // replaced on construction from a tensor
};

// A tensor a vjp captures as is (not through SavedTensor: an op's own intermediate, such as the scan's
// checkpointed states, that nothing else can modify). Returns `t`; tells the observers that the node
// keeps it (the memory report counts it as saved).
Tensor kept_for_backward(const Tensor& t, OpKind op);

// What a vjp receives: the output gradients and which inputs need a gradient.
struct VjpArgs {
  const std::vector<Tensor>& grads;
  const std::vector<bool>& needs;
  const Tensor& operator[](size_t i) const { return grads[i]; }
  bool needs_grad(size_t i) const { return needs[i]; }
};
using VjpFn = std::function<std::vector<Tensor>(const VjpArgs&)>;

// True when grad mode is on and any of the tensors requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> ts);
bool any_requires_grad(const std::vector<Tensor>& ts);

// Records `outputs` as made by `op` (a listed OpId, or any OpKind: ops/function.h) from `inputs`
// (undefined inputs allowed) with backward `vjp`.
// Does nothing when no input requires grad or grad mode is off. Marks the outputs as requiring grad.
void record(OpKind op, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs, VjpFn vjp);

// The edge a gradient for `t` must travel: its grad_fn, or its AccumulateGrad when it is a leaf.
Edge gradient_edge(const Tensor& t);

// Runs backward from `roots` with `grads` (same count). Gradients accumulate into leaves.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace mg
