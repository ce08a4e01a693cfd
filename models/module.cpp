#include "models/module.h"

#include <cmath>
#include <map>

#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace mg {

namespace {
// How many of p[0, n) are NaN or infinite; `first` gets the index of the first (-1 when none).
template <class T>
int64_t count_non_finite(const T* p, int64_t n, int64_t& first) {
  int64_t bad = 0;
  first = -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) {
      if (first < 0) first = i;
      ++bad;
    }
  return bad;
}
}  // namespace

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
  // Every value is checked before any parameter is written, so a bad file leaves the model as it was.
  // A float parameter takes F32 or F64 only (an integer tensor is not weights), converted to the
  // parameter's dtype on the host, and every converted value must be finite: NaN or inf weights (or
  // F64 values beyond float32's range) would only show later as a NaN loss or garbage text.
  NoGradGuard ng;
  std::vector<Tensor> values;
  for (auto& p : mine) {
    const Tensor& t = given.at(p.name);
    if (!is_floating(p.tensor.dtype())) {
      values.push_back(t);
      continue;
    }
    MG_CHECK(is_floating(t.dtype()),
             "[load] tensor '{}' in {} is {}, but the parameter is {}: weights must be float32 or float64 (F32 or "
             "F64); the file is not a checkpoint of this model",
             p.name, source, dtype_name(t.dtype()), dtype_name(p.tensor.dtype()));
    const Tensor src = contiguous(to_device(t.detach(), kCPU));
    const Tensor v = contiguous(to_dtype(src, p.tensor.dtype()));
    int64_t first = -1;
    const int64_t bad = v.dtype() == DType::f64 ? count_non_finite(v.data<double>(), v.numel(), first)
                                                : count_non_finite(v.data<float>(), v.numel(), first);
    if (bad > 0) {
      const double x = src.dtype() == DType::f64 ? src.data<double>()[first] : src.data<float>()[first];
      const std::string what = std::isnan(x)   ? std::string("NaN")
                               : std::isinf(x) ? std::string(x > 0 ? "inf" : "-inf")
                                               : mg::format("{}, beyond {}'s range,", x, dtype_name(v.dtype()));
      MG_THROW(
          "[load] tensor '{}' in {} has {} non-finite value{} (first {} at flat index {}); the checkpoint is damaged",
          p.name, source, bad, bad == 1 ? "" : "s", what, first);
    }
    values.push_back(v);
  }
  for (size_t i = 0; i < mine.size(); ++i) mine[i].tensor.copy_(values[i]);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.tensor.numel();
  return n;
}

void Module::to(Device device) {
  require_device(device, "Module::to");  // a clear error before anything is copied
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

Tensor Module::register_parameter(const std::string& name, Tensor t, bool decay) {
  t.requires_grad_();
  params_.push_back({name, t, decay});
  return t;
}

}  // namespace mg
