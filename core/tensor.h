// Tensor: a view (shape, strides in elements, offset) of a shared Storage, plus autograd metadata.
// Copying a Tensor copies the handle, as in PyTorch: both names refer to the same tensor.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"
#include "core/strided.h"

namespace mg {

class Node;
class Tensor;

// Autograd state of one tensor. Leaves that require grad own `grad`; non-leaves point at the node
// that made them (`grad_fn`) and say which of its outputs they are.
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::shared_ptr<class TensorImpl> grad;  // accumulated gradient of a leaf
  std::weak_ptr<Node> grad_accumulator;    // the leaf's AccumulateGrad node, made on demand
};

class TensorImpl {
 public:
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // An uninitialised contiguous tensor; `op` names the caller in errors: a negative size, an element
  // or byte count that overflows int64 (check_shape, core/shape.h), or out of memory.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU, const char* op = "empty");

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl()->shape; }
  const Strides& strides() const { return impl()->strides; }
  int64_t offset() const { return impl()->offset; }
  int64_t dim() const { return (int64_t)impl()->shape.size(); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return impl()->shape.numel(); }
  DType dtype() const { return impl()->dtype; }
  Device device() const { return impl()->storage->device(); }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype()); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl()->storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Pointer to the first element (at the view's offset). Checks the element type.
  template <class T>
  T* data() const {
    MG_CHECK(dtype() == dtype_of<T>(), "[data] tensor is {} but {} was requested", dtype_name(dtype()),
             dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const {
    return static_cast<char*>(impl()->storage->data()) + impl()->offset * (int64_t)dtype_size(dtype());
  }

  // The single value of a one-element tensor, as a double.
  double item() const;
  // A contiguous host copy of the elements in row-major order.
  template <class T>
  std::vector<T> to_vector() const;

  // ---- autograd ----
  bool requires_grad() const;
  // Marks a leaf as requiring grad (throws on a non-leaf, or a non-floating dtype).
  const Tensor& requires_grad_(bool on = true) const;
  bool is_leaf() const;
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  void zero_grad() const { set_grad(Tensor()); }
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  // Backpropagates from this tensor. A non-scalar needs `grad` of its shape.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // The same data with no autograd history.
  Tensor detach() const;
  AutogradMeta& autograd_meta() const;  // creates it if absent
  bool has_autograd_meta() const { return impl()->autograd != nullptr; }

  // ---- conveniences that call the ops in ops/ops.h ----
  Tensor reshape(const Shape& s) const;
  Tensor view(const Shape& s) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t d, int64_t start, int64_t length) const;
  Tensor expand(const Shape& s) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor sum() const;
  Tensor mean() const;

  // ---- in-place (bump the storage version; never recorded by autograd) ----
  const Tensor& fill_(double v) const;
  const Tensor& zero_() const { return fill_(0.0); }
  const Tensor& copy_(const Tensor& src) const;  // src is broadcast to this shape
  const Tensor& add_(const Tensor& other, double alpha = 1.0) const;
  const Tensor& mul_(double s) const;

  std::string str() const;  // PyTorch-like printing

 private:
  TensorImpl* impl() const {
    MG_CHECK(impl_ != nullptr, "[tensor] operation on an undefined tensor");
    return impl_.get();
  }
  std::shared_ptr<TensorImpl> impl_;
};

// Builds a view of `base`'s storage with another shape/strides/offset (no autograd history).
Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset);

// Strides of `t` broadcast to `shape` (0 on broadcast dims); t's shape must broadcast to it.
inline Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  return broadcast_strides(t.shape(), t.strides(), shape);  // core/strided.h
}

}  // namespace mg

template <>
struct fmt::formatter<mg::Tensor> : mg::StrFormatter<mg::Tensor> {};
template <>
struct fmt::formatter<mg::Device> : mg::StrFormatter<mg::Device> {};
template <>
struct fmt::formatter<mg::DType> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const mg::DType& d, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(mg::dtype_name(d), ctx);
  }
};
