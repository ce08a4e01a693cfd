#include "core/tensor.h"

#include <new>
#include <string>

#include "core/checked.h"

// Tensor's methods that are ops or need autograd (item, to_vector, requires_grad_, backward, reshape ...,
// str) are defined above core, in ops/tensor_methods.cpp: core calls nothing of the layers above it.
namespace mg {

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, const char* op) {
  const int64_t numel = check_shape(shape, op);
  const int64_t nbytes = checked_mul(numel, (int64_t)dtype_size(dtype), op, "the byte count of a tensor");
  auto impl = std::make_shared<TensorImpl>();
  // An allocation that is merely too large for this machine is an error naming the tensor, not a crash.
  try {
    impl->storage = std::make_shared<Storage>((size_t)nbytes, device, op);
  } catch (const std::bad_alloc&) {
    MG_THROW("[{}] cannot allocate {} bytes on {}: out of memory (a {} tensor of shape {})", op, nbytes, device.str(),
             dtype_name(dtype), shape);
  } catch (const Error& e) {  // the allocator's out-of-memory error: add what the memory was for
    const std::string what = e.what();
    // (A device that is not present, or a build without CUDA, says all there is to say.)
    if (what.find("out of memory") == std::string::npos) throw;
    MG_THROW("{} (a {} tensor of shape {})", what, dtype_name(dtype), shape);
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  check_shape(shape, "view");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// (wrap_dim lets a scalar take dim 0 or -1, as reductions do; a scalar has no size or stride to give.)
int64_t Tensor::size(int64_t d) const {
  MG_CHECK(dim() > 0, "[size] a 0-dim tensor has no dims (asked for dim {})", d);
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  MG_CHECK(dim() > 0, "[stride] a 0-dim tensor has no dims (asked for dim {})", d);
  return strides()[wrap_dim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

// ---- autograd ----

AutogradMeta& Tensor::autograd_meta() const {
  auto* i = impl();
  if (!i->autograd) i->autograd = std::make_unique<AutogradMeta>();
  return *i->autograd;
}

bool Tensor::requires_grad() const {
  auto* i = impl();
  return i->autograd && i->autograd->requires_grad;
}

bool Tensor::is_leaf() const { return !has_autograd_meta() || !impl()->autograd->grad_fn; }

Tensor Tensor::grad() const {
  if (!has_autograd_meta() || !impl()->autograd->grad) return Tensor();
  return Tensor(impl()->autograd->grad);
}

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    MG_CHECK(g.shape() == shape() && g.dtype() == dtype() && g.device() == device(),
             "[set_grad] gradient {} {} on {} does not match the tensor {} {} on {}", g.shape(), g.dtype(), g.device(),
             shape(), dtype(), device());
  autograd_meta().grad = g.impl_ptr();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return has_autograd_meta() ? impl()->autograd->grad_fn : none;
}

uint32_t Tensor::output_nr() const { return has_autograd_meta() ? impl()->autograd->output_nr : 0; }

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

}  // namespace mg
