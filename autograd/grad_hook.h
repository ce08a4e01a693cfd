// A hook on a leaf's gradient accumulation, for data-parallel training (train/distributed.h starts a
// bucket's all-reduce from it while the rest of backward runs).
#pragma once
#include <functional>

#include "core/tensor.h"

namespace mg {

// Calls `hook` each time a backward has accumulated `leaf`'s gradient into leaf.grad(): once per
// backward that reaches the leaf (the engine sums all of a leaf's incoming gradients before its
// AccumulateGrad runs), as soon as that gradient is final. One hook per leaf; an empty function removes
// it, which its owner must do before the leaf is destroyed. Throws for a tensor that is not a leaf
// requiring grad.
void set_grad_hook(const Tensor& leaf, std::function<void()> hook);

}  // namespace mg
