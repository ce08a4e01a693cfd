#include "introspect/graph_dot.h"

#include <unordered_map>
#include <vector>

#include "autograd/node.h"
#include "core/format.h"
#include "introspect/anomaly.h"

namespace mg {

namespace {
// A DOT string; `s` may hold "\n" (DOT's line break), so only quotes are escaped.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}
std::string meta_str(const TensorMeta& m) { return mg::format("{} {}", m.shape, dtype_name(m.dtype)); }
}  // namespace

std::string autograd_graph_dot(const Tensor& root, const std::map<const TensorImpl*, std::string>& names) {
  MG_CHECK(root.defined() && root.requires_grad() && root.grad_fn(),
           "[graph] the root must be the output of a recorded op (a tensor with a grad_fn)");
  // Every node reachable from the root, numbered in the order they are first seen (depth first, as
  // the engine's first pass), so the output is deterministic.
  std::unordered_map<const Node*, size_t> id;
  std::vector<const Node*> order;
  std::vector<const Node*> stack{root.grad_fn().get()};
  id[stack[0]] = 0, order.push_back(stack[0]);
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges)
      if (e.fn && id.emplace(e.fn.get(), order.size()).second) order.push_back(e.fn.get()), stack.push_back(e.fn.get());
  }

  std::string out =
      "digraph autograd {\n  node [shape=box, style=filled, fillcolor=lightgray, fontname=monospace, fontsize=10];\n";
  std::map<std::string, std::vector<size_t>> clusters;  // module path -> its nodes
  for (size_t i = 0; i < order.size(); ++i) {
    const Node* n = order[i];
    if (const TensorImpl* leaf = n->leaf()) {
      const TensorMeta& m = n->output_meta.at(0);
      auto it = names.find(leaf);
      out += mg::format("  n{} [label=\"AccumulateGrad\"];\n", i);
      out += mg::format(
          "  v{} [label={}, fillcolor=lightblue];\n  v{} -> n{};\n", i,
          quoted(mg::format("{}\\n{}", it != names.end() ? it->second : std::string("leaf"), meta_str(m))), i, i);
      continue;
    }
    std::string label(n->name());
    for (const TensorMeta& m : n->output_meta) label += "\\n" + meta_str(m);
    out += mg::format("  n{} [label={}{}];\n", i, quoted(label), i == 0 ? ", fillcolor=darkolivegreen1" : "");
    if (const AnomalyInfo* a = anomaly_info(*n); a && a->module_path) clusters[*a->module_path].push_back(i);
  }
  size_t c = 0;
  for (const auto& [path, members] : clusters) {
    out += mg::format("  subgraph cluster_{} {{\n    label={}; style=dashed;\n   ", c++, quoted(path));
    for (size_t i : members) out += mg::format(" n{};", i);
    out += "\n  }\n";
  }
  for (size_t i = 0; i < order.size(); ++i)
    for (const Edge& e : order[i]->next_edges)
      if (e.fn) out += mg::format("  n{} -> n{};\n", id.at(e.fn.get()), i);
  return out + "}\n";
}

}  // namespace mg
