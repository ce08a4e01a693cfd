// The methods of Tensor (core/tensor.h) that are ops or need the autograd engine: core declares them so
// that `t.reshape(...)`, `t.backward()` and printing read naturally, and they are defined here, above
// core, so that core itself depends on nothing of ours.
#include <string>

#include "autograd/node.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace mg {

double Tensor::item() const {
  MG_CHECK(numel() == 1, "[item] needs a tensor with one element, got shape {}", shape());
  Tensor c = device().is_cpu() ? *this : to_device(*this, kCPU);
  switch (dtype()) {
    case DType::f32:
      return *c.data<float>();
    case DType::f64:
      return *c.data<double>();
    case DType::i64:
      return (double)*c.data<int64_t>();
  }
  return 0;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = mg::contiguous(to_device(detach(), kCPU));
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

const Tensor& Tensor::requires_grad_(bool on) const {
  MG_CHECK(is_leaf(), "[requires_grad_] can only be set on a leaf tensor; this one was made by {} (use detach() first)",
           grad_fn()->name());
  MG_CHECK(!on || is_floating(dtype()), "[requires_grad_] only floating tensors can require grad, got {}",
           dtype_name(dtype()));
  autograd_meta().requires_grad = on;
  return *this;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  MG_CHECK(requires_grad(), "[backward] tensor {} does not require grad and has no grad_fn", shape());
  Tensor g = grad;
  if (!g.defined()) {
    MG_CHECK(numel() == 1,
             "[backward] grad can be created implicitly only for scalar outputs; this output has shape {} "
             "(pass a gradient of that shape, or reduce it first with sum() or mean())",
             shape());
    g = ones(shape(), dtype(), device());
  }
  run_backward({*this}, {g}, retain_graph);
}

// ---- conveniences ----
Tensor Tensor::reshape(const Shape& s) const { return mg::reshape(*this, s); }
Tensor Tensor::view(const Shape& s) const { return mg::view(*this, s); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return mg::transpose(*this, d0, d1); }
Tensor Tensor::permute(const std::vector<int64_t>& d) const { return mg::permute(*this, d); }
Tensor Tensor::narrow(int64_t d, int64_t s, int64_t l) const { return mg::narrow(*this, d, s, l); }
Tensor Tensor::expand(const Shape& s) const { return mg::expand(*this, s); }
Tensor Tensor::unsqueeze(int64_t d) const { return mg::unsqueeze(*this, d); }
Tensor Tensor::squeeze(int64_t d) const { return mg::squeeze(*this, d); }
Tensor Tensor::contiguous() const { return mg::contiguous(*this); }
Tensor Tensor::clone() const { return mg::clone(*this); }
Tensor Tensor::to(DType t) const { return mg::to_dtype(*this, t); }
Tensor Tensor::to(Device d) const { return mg::to_device(*this, d); }
Tensor Tensor::sum() const { return mg::sum(*this); }
Tensor Tensor::mean() const { return mg::mean(*this); }

// ---- printing ----
namespace {
void print_rec(std::string& s, const std::vector<double>& v, const Shape& shape, const Strides& st, size_t d,
               int64_t off, bool is_int, bool summarize, int indent) {
  if (d == shape.size()) {
    s += is_int ? mg::format("{}", (int64_t)v[off]) : mg::format("{:.4f}", v[off]);
    return;
  }
  s += "[";
  int64_t n = shape[d];
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 6 && i == 3) {
      s += "...";
      i = n - 4;
      s += d + 1 == shape.size() ? ", " : ",\n" + std::string(indent + d + 1, ' ');
      continue;
    }
    print_rec(s, v, shape, st, d + 1, off + i * st[d], is_int, summarize, indent);
    if (i + 1 < n) s += d + 1 == shape.size() ? ", " : ",\n" + std::string(indent + d + 1, ' ');
  }
  s += "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  Tensor c = mg::contiguous(to_device(detach(), kCPU)).to(DType::f64);
  std::vector<double> v = c.to_vector<double>();
  std::string s = "tensor(";
  print_rec(s, v, shape(), contiguous_strides(shape()), 0, 0, dtype() == DType::i64, numel() > 1000, 7);
  if (dim() == 0)
    s = "tensor(" + (dtype() == DType::i64 ? mg::format("{}", (int64_t)v[0]) : mg::format("{:.4f}", v[0]));
  s += mg::format(", dtype={}", dtype_name(dtype()));
  if (!device().is_cpu()) s += mg::format(", device={}", device().str());
  if (requires_grad()) s += grad_fn() ? mg::format(", grad_fn={}", grad_fn()->name()) : ", requires_grad";
  return s + ")";
}

}  // namespace mg
