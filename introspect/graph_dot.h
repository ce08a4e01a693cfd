// The recorded graph as Graphviz DOT, drawn as torchviz draws it: one box per node (the op, its
// outputs' shapes and dtypes), an edge from each input's node to the node that used it, every leaf's
// AccumulateGrad with the leaf itself (light blue; named when `names` knows it) feeding it, and the
// root in green. Nodes recorded under AnomalyMode carry their module path and are grouped into one
// cluster per path. The bytes each node saves for backward are not shown: its SavedTensors live
// inside the vjp's closure, which the graph cannot look into.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace mg {

// `names`: leaf tensors' names, by their TensorImpl (e.g. from Module::named_parameters()).
std::string autograd_graph_dot(const Tensor& root, const std::map<const TensorImpl*, std::string>& names = {});

}  // namespace mg
