// A small module system: a module owns named parameters (each marked for weight decay or not) and
// named child modules; named_parameters() lists them with dotted names ("layers.0.mixer.D").
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mg {

struct NamedParam {
  std::string name;
  Tensor tensor;
  bool decay;  // whether AdamW's weight decay applies (matrices only: docs/design.md#initialisation)
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter below this module, in registration order, named from here.
  std::vector<NamedParam> named_parameters() const;
  // Name -> tensor pairs: the state dict (tensors are the live parameters, not copies).
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Copies every tensor of `sd` into the parameter of the same name. Throws naming the tensor and
  // `source` when a name is missing or unexpected, when shapes differ, when a float parameter is given
  // a tensor that is not float32 or float64, or when a value is NaN or infinite (after conversion to
  // the parameter's dtype); everything is checked before any parameter is written.
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd, const std::string& source);
  int64_t num_parameters() const;

  // Moves every parameter below this module (and its gradient, if any) to `device`, in place, as
  // torch's module.to(device): every Tensor handle to a parameter (the modules' fields, the state
  // dict, an optimizer's groups) sees the moved data, with the same name, shape, dtype,
  // requires_grad and leaf status. All parameters are copied before any is switched, so a failure
  // (no CUDA, out of memory) leaves the module where it was. Parameters already on `device` are not
  // touched (to(kCPU) of a CPU module is a no-op). Make optimizers after moving: their state is
  // allocated on the parameters' device.
  void to(Device device);
  // Where the parameters are (the first parameter's device; kCPU for a module without any).
  Device device() const;

 protected:
  // Registers a leaf parameter (requires grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor t, bool decay);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.push_back({name, m});
    return m;
  }

 private:
  std::vector<NamedParam> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace mg
