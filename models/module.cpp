#include "models/module.h"

#include <map>

#include "autograd/grad_mode.h"
#include "cuda/runtime.h"
#include "ops/ops.h"

namespace mg {

std::vector<NamedParam> Module::named_parameters() const {
  std::vector<NamedParam> out = params_;
  for (auto& [name, child] : children_)
    for (auto& p : child->named_parameters()) out.push_back({name + "." + p.name, p.tensor, p.decay});
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> sd;
  for (auto& p : named_parameters()) sd.push_back({p.name, p.tensor});
  return sd;
}

void Module::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd, const std::string& source) {
  std::map<std::string, Tensor> given(sd.begin(), sd.end());
  auto mine = named_parameters();
  for (auto& p : mine) {
    auto it = given.find(p.name);
    MG_CHECK(it != given.end(), "[load] {} has no tensor '{}' (expected shape {})", source, p.name, p.tensor.shape());
    MG_CHECK(it->second.shape() == p.tensor.shape(), "[load] tensor '{}' in {} has shape {}, but the model expects {}",
             p.name, source, it->second.shape(), p.tensor.shape());
  }
  for (auto& [name, t] : sd) {
    bool known = false;
    for (auto& p : mine) known = known || p.name == name;
    MG_CHECK(known, "[load] {} has an unexpected tensor '{}' of shape {}", source, name, t.shape());
  }
  NoGradGuard ng;
  for (auto& p : mine) p.tensor.copy_(given.at(p.name));
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.tensor.numel();
  return n;
}

void Module::to(Device device) {
  if (device.is_cuda()) {  // a clear error before anything is copied
    if (!cuda::built_with_cuda()) cuda::unsupported("Module::to");
    MG_CHECK(device.index < cuda::device_count(), "[Module::to] {} is not present: this machine has {} CUDA devices",
             device.str(), cuda::device_count());
  }
  NoGradGuard ng;
  struct Move {
    Tensor param, data, grad;
  };
  std::vector<Move> moves;
  for (auto& p : named_parameters()) {
    if (p.tensor.device() == device) continue;
    MG_CHECK(p.tensor.is_contiguous(), "[Module::to] parameter '{}' {} is not contiguous", p.name, p.tensor.shape());
    Tensor g = p.tensor.grad();
    moves.push_back({p.tensor, to_device(p.tensor.detach(), device),
                     g.defined() ? to_device(contiguous(g.detach()), device) : Tensor()});
  }
  // Switch each parameter's storage under its existing TensorImpl: the handles stay the same tensor.
  for (auto& m : moves) {
    TensorImpl* impl = m.param.unsafe_impl();
    impl->storage = m.data.storage();
    impl->strides = m.data.strides();
    impl->offset = m.data.offset();
    m.param.set_grad(m.grad);
  }
}

Device Module::device() const {
  if (!params_.empty()) return params_.front().tensor.device();
  for (auto& [name, child] : children_) {
    auto ps = child->named_parameters();
    if (!ps.empty()) return ps.front().tensor.device();
  }
  return kCPU;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool decay) {
  t.requires_grad_();
  params_.push_back({name, t, decay});
  return t;
}

}  // namespace mg
