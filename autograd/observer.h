// The engine's one window for tools (introspect/: the profiler, the memory report, anomaly mode). An
// installed EngineObserver hears of each op's entry and return (OpScope), each tensor an op keeps for
// backward, each node record() makes, and backward and each vjp. With none installed, each of those
// places costs one relaxed load and one branch. Install and remove observers while no op runs.
#pragma once
#include <atomic>
#include <initializer_list>
#include <vector>

#include "core/op_kind.h"
#include "core/tensor.h"

namespace mg {

class Node;

// What an observer attaches to a node (Node::note; anomaly mode: where the forward ran).
struct NodeNote {
  virtual ~NodeNote() = default;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // An op's entry point and its return or throw (op_end may come to an observer installed in between).
  virtual void op_begin(OpKind op, const Tensor* const* inputs, size_t n) {}
  virtual void op_end(OpKind op) {}
  // `op` keeps `t` for its vjp (SavedTensor, kept_for_backward), before its record() call.
  virtual void tensor_saved(const Tensor& t, OpKind op) {}
  // record() made `node` (null: no input needed a gradient, and nothing was recorded).
  virtual void node_created(OpKind op, Node* node, const std::vector<Tensor*>& outputs) {}
  // run_backward(): backward_end comes also when a vjp throws (which then gets no vjp_end).
  virtual void backward_begin(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) {}
  virtual void backward_end() {}
  virtual void vjp_begin(const Node& node, const std::vector<Tensor>& grads) {}
  virtual void vjp_end(const Node& node, const std::vector<Tensor>& input_grads) {}
};

// Adding an installed observer, or removing one that is not, does nothing. At most 8 at once.
void add_engine_observer(EngineObserver* o);
void remove_engine_observer(EngineObserver* o);

namespace observers {
extern std::atomic<int> g_count;
extern std::atomic<EngineObserver*> g_slots[8];
inline bool any() { return g_count.load(std::memory_order_relaxed) != 0; }
template <class F>
void notify(F&& f) {
  for (auto& slot : g_slots)
    if (EngineObserver* o = slot.load(std::memory_order_acquire)) f(*o);
}
}  // namespace observers

// An op's entry point: tells the observers that the op starts here and ends with the scope.
//   Tensor matmul(const Tensor& a, const Tensor& b) { OpScope scope(OpId::matmul, {&a, &b}); ... }
class OpScope {
 public:
  OpScope(OpKind op, std::initializer_list<const Tensor*> inputs) : op_(op) {
    if (observers::any()) [[unlikely]]
      begin(inputs.begin(), inputs.size());
  }
  OpScope(OpKind op, const std::vector<Tensor>& inputs);
  ~OpScope() {
    if (active_) [[unlikely]]
      observers::notify([this](EngineObserver& o) { o.op_end(op_); });
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin(const Tensor* const* inputs, size_t n);
  OpKind op_;
  bool active_ = false;
};

}  // namespace mg
