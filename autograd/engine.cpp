// The backward engine: count each node's dependencies (how many edges point at it from the part of
// the graph reachable from the roots), then run nodes whose dependencies are all satisfied, taking
// the most recently readied first (a LIFO stack, `ready`). Iterative throughout, so a graph of any depth is fine.
#include <unordered_map>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mg {

namespace {

void check_gradient(const Node& node, size_t i, const Tensor& g) {
  const TensorMeta& m = node.input_meta[i];
  MG_CHECK(g.shape() == m.shape && g.dtype() == m.dtype && g.device() == m.device,
           "[autograd] the backward of {} returned a gradient {} {} on {} for its input {}, which is {} {} on {}",
           node.name(), g.shape(), g.dtype(), g.device(), i, m.shape, m.dtype, m.device);
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  MG_ASSERT(roots.size() == grads.size());
  NoGradGuard no_grad;
  std::vector<std::pair<Edge, Tensor>> starts;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    const Tensor& g = grads[i];
    MG_CHECK(g.shape() == r.shape() && g.dtype() == r.dtype() && g.device() == r.device(),
             "[backward] gradient {} {} on {} does not match the output {} {} on {}", g.shape(), g.dtype(), g.device(),
             r.shape(), r.dtype(), r.device());
    Edge e = gradient_edge(r);
    MG_CHECK(e.fn != nullptr, "[backward] output {} does not require grad", r.shape());
    starts.push_back({e, g});
  }
  // The observers see where backward starts and ends (backward_end also when a vjp throws), and each vjp.
  const bool observed = observers::any();
  struct Phase {
    bool on;
    ~Phase() {
      if (on) observers::notify([](EngineObserver& o) { o.backward_end(); });
    }
  } phase{observed};
  if (observed) [[unlikely]]
    observers::notify([&](EngineObserver& o) { o.backward_begin(roots, grads); });

  // 1. Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  {
    std::vector<Node*> stack;
    std::unordered_map<Node*, bool> seen;
    for (auto& [e, g] : starts)
      if (!seen[e.fn.get()]) seen[e.fn.get()] = true, stack.push_back(e.fn.get());
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& e : n->next_edges) {
        if (!e.fn) continue;
        deps[e.fn.get()]++;
        if (!seen[e.fn.get()]) seen[e.fn.get()] = true, stack.push_back(e.fn.get());
      }
    }
  }

  // 2. Gradient buffers, one slot per node output; summed as they arrive.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto accumulate = [&](Node* n, uint32_t slot, const Tensor& g) {
    auto& buf = buffers[n];
    if (buf.empty()) buf.resize(n->output_meta.size());
    buf[slot] = buf[slot].defined() ? add(buf[slot], g) : g;
  };
  std::vector<Node*> ready;
  for (auto& [e, g] : starts) {
    accumulate(e.fn.get(), e.input_nr, g);
    if (deps[e.fn.get()] == 0 && std::find(ready.begin(), ready.end(), e.fn.get()) == ready.end())
      ready.push_back(e.fn.get());
  }

  // 3. Run ready nodes.
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    std::vector<Tensor> out_grads = std::move(buffers[n]);
    buffers.erase(n);
    out_grads.resize(n->output_meta.size());
    bool any = false;
    for (auto& g : out_grads) any = any || g.defined();
    std::vector<Tensor> in_grads;
    if (any) {
      for (size_t i = 0; i < out_grads.size(); ++i)
        if (!out_grads[i].defined()) {
          const auto& m = n->output_meta[i];
          out_grads[i] = zeros(m.shape, m.dtype, m.device);
        }
      if (observed) [[unlikely]]
        observers::notify([&](EngineObserver& o) { o.vjp_begin(*n, out_grads); });
      in_grads = n->apply(out_grads);
      if (!retain_graph) n->release_saved();
      if (observed) [[unlikely]]
        observers::notify([&](EngineObserver& o) { o.vjp_end(*n, in_grads); });
      MG_CHECK(in_grads.size() == n->next_edges.size() || n->next_edges.empty(),
               "[autograd] the backward of {} returned {} gradients for {} inputs", n->name(), in_grads.size(),
               n->next_edges.size());
    }
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.fn) continue;
      if (any && in_grads[i].defined()) {
        check_gradient(*n, i, in_grads[i]);
        accumulate(e.fn.get(), e.input_nr, in_grads[i]);
      }
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
    }
  }
}

}  // namespace mg
