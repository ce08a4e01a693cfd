// Shape ops and views: reshape/view, transpose/permute, narrow, expand, squeeze/unsqueeze,
// cat/split/chunk, and the copies: contiguous, clone, to_dtype, to_device.
// Views share the input's storage; their vjps route the gradient back to the input's layout.
// Views are the same on every device; the copies run cuda::copy (cuda/copy.cu) on CUDA, and
// to_device moves data between the host and devices (differentiable: the gradient moves back).
#include <string>

#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "core/checked.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/tensor_iter.h"
#include "ops/cpu/loops.h"
#include "ops/input_checks.h"
#include "ops/ops.h"

namespace mg {

namespace {

void check_defined(const char* op, const Tensor& x) { MG_CHECK(x.defined(), "[{}] got an undefined tensor", op); }

// dst[...] = (dst type) src[...] elementwise; same shape, any strides, CPU.
void convert_copy(const Tensor& dst, const Tensor& src) {
  MG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using D = scalar_t;
    D* pd = dst.data<D>();
    MG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      const scalar_t* ps = src.data<scalar_t>();
      cpu::strided_loop<2>(dst.shape(), {dst.strides(), src.strides()}, [&](auto off, int64_t n, auto st) {
        if (st[0] == 1 && st[1] == 1)
          for (int64_t i = 0; i < n; ++i) pd[off[0] + i] = (D)ps[off[1] + i];
        else
          for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] = (D)ps[off[1] + i * st[1]];
      });
    });
  });
}

// A contiguous copy of x with dtype `dtype` (no autograd).
Tensor copy_as(const Tensor& x, DType dtype) {
  Tensor out = Tensor::empty(x.shape(), dtype, x.device(), "copy");
  if (x.device().is_cuda())
    cuda::copy(dtype, out.raw_data(), x.dtype(), x.raw_data(),
               cuda::iter<2>("copy", x.shape(), {out.strides(), x.strides()}), cuda::device_of(x));
  else
    convert_copy(out, x);
  return out;
}

// Resolves a -1 in `shape` against `numel`.
Shape infer_shape(const char* op, Shape shape, int64_t numel, const Shape& from) {
  int64_t known = 1, infer = -1;  // known: the product of the non-zero sizes other than the -1
  bool zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MG_CHECK(infer < 0, "[{}] only one dim can be -1 in {}", op, shape);
      infer = (int64_t)i;
    } else {
      MG_CHECK(shape[i] >= 0, "[{}] invalid size {} in {}", op, shape[i], shape);
      if (shape[i] == 0)
        zero = true;
      else
        known = checked_mul(known, shape[i], op, "the product of the sizes");
    }
  }
  if (infer >= 0) {
    MG_CHECK(!zero && numel % known == 0, "[{}] cannot reshape {} ({} elements) into {}", op, from, numel, shape);
    shape[infer] = numel / known;
  }
  MG_CHECK(shape.numel() == numel, "[{}] cannot reshape {} ({} elements) into {} ({} elements)", op, from, numel, shape,
           shape.numel());
  return shape;
}

// Strides that let `shape` view data laid out as (old_shape, old_strides), or nullopt (PyTorch's
// computeStride: each run of old dims that is contiguous within itself can be split or merged).
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  Strides st(shape.size());
  if (old_shape.numel() == 0 || old_shape.empty()) return contiguous_strides(shape);
  int64_t view_d = (int64_t)shape.size() - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = (int64_t)old_shape.size() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

Tensor reshape_impl(const char* op, const Tensor& x, Shape shape, bool allow_copy) {
  OpScope scope(OpId::reshape, {&x});
  check_defined(op, x);
  shape = infer_shape(op, std::move(shape), x.numel(), x.shape());
  Tensor out;
  if (auto st = view_strides(x.shape(), x.strides(), shape)) {
    out = make_view(x, shape, *st, x.offset());
  } else {
    MG_CHECK(allow_copy,
             "[view] cannot view a tensor of shape {} and strides ({}) as {}: its memory is not laid out for it "
             "(call contiguous() first, or use reshape)",
             x.shape(), mg::join(x.strides(), ", "), shape);
    Tensor c = copy_as(x, x.dtype());
    out = make_view(c, shape, contiguous_strides(shape), 0);
  }
  record(OpId::reshape, {x}, {&out},
         [in = x.shape()](const VjpArgs& g) { return std::vector<Tensor>{reshape(g[0], in)}; });
  return out;
}

}  // namespace

Tensor reshape(const Tensor& x, Shape shape) { return reshape_impl("reshape", x, std::move(shape), true); }
Tensor view(const Tensor& x, Shape shape) { return reshape_impl("view", x, std::move(shape), false); }

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  check_defined("unsqueeze", x);
  int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + d, 1);
  return view(x, s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  check_defined("squeeze", x);
  int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.dim() == 0 || x.size(d) != 1) return x;
  Shape s = x.shape();
  s.erase(s.begin() + d);
  return view(x, s);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  check_defined("flatten", x);
  if (x.dim() == 0) return reshape(x, {1});
  int64_t a = wrap_dim(start_dim, x.dim(), "flatten"), b = wrap_dim(end_dim, x.dim(), "flatten");
  MG_CHECK(a <= b, "[flatten] start_dim {} comes after end_dim {}", start_dim, end_dim);
  Shape s(x.shape().begin(), x.shape().begin() + a);
  int64_t m = 1;
  for (int64_t i = a; i <= b; ++i) m *= x.size(i);
  s.push_back(m);
  s.insert(s.end(), x.shape().begin() + b + 1, x.shape().end());
  return reshape(x, s);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  OpScope scope(OpId::permute, {&x});
  check_defined("permute", x);
  MG_CHECK((int64_t)dims.size() == x.dim(), "[permute] got {} dims ({}) for a tensor with {} dims {}", dims.size(),
           mg::join(dims, ", "), x.dim(), x.shape());
  std::vector<int64_t> p(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape s(dims.size());
  Strides st(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    p[i] = wrap_dim(dims[i], x.dim(), "permute");
    MG_CHECK(!seen[p[i]], "[permute] dim {} repeats in ({})", dims[i], mg::join(dims, ", "));
    seen[p[i]] = true;
    s[i] = x.size(p[i]);
    st[i] = x.strides()[p[i]];
  }
  Tensor out = make_view(x, s, st, x.offset());
  record(OpId::permute, {x}, {&out}, [p](const VjpArgs& g) {
    std::vector<int64_t> inv(p.size());
    for (size_t i = 0; i < p.size(); ++i) inv[p[i]] = (int64_t)i;
    return std::vector<Tensor>{permute(g[0], inv)};
  });
  return out;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  OpScope scope(OpId::transpose, {&x});
  check_defined("transpose", x);
  int64_t a = wrap_dim(d0, x.dim(), "transpose"), b = wrap_dim(d1, x.dim(), "transpose");
  Shape s = x.shape();
  Strides st = x.strides();
  if (x.dim() > 0) std::swap(s[a], s[b]), std::swap(st[a], st[b]);
  Tensor out = make_view(x, s, st, x.offset());
  record(OpId::transpose, {x}, {&out}, [a, b](const VjpArgs& g) { return std::vector<Tensor>{transpose(g[0], a, b)}; });
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  OpScope scope(OpId::narrow, {&x});
  check_defined("narrow", x);
  MG_CHECK(x.dim() > 0, "[narrow] cannot narrow a 0-dim tensor");
  int64_t d = wrap_dim(dim, x.dim(), "narrow");
  int64_t n = x.size(d);
  if (start < 0) start += n;
  if (!(start >= 0 && length >= 0 && start <= n && length <= n - start)) {  // start + length may overflow
    int64_t end;
    const std::string end_str =
        __builtin_add_overflow(start, length, &end) ? mg::format("{} + {}", start, length) : std::to_string(end);
    MG_THROW("[narrow] range [{}, {}) is outside dim {} of size {} (shape {})", start, end_str, dim, n, x.shape());
  }
  Shape s = x.shape();
  s[d] = length;
  Tensor out = make_view(x, s, x.strides(), x.offset() + start * x.strides()[d]);
  record(OpId::narrow, {x}, {&out}, [in = x.shape(), d, start, length](const VjpArgs& g) {
    Tensor dx = zeros(in, g[0].dtype(), g[0].device());
    narrow(dx, d, start, length).copy_(g[0]);
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  OpScope scope(OpId::expand, {&x});
  check_defined("expand", x);
  MG_CHECK(shape.size() >= (size_t)x.dim(), "[expand] cannot expand {} to fewer dims {}", x.shape(), shape);
  size_t lead = shape.size() - x.dim();
  Shape s(shape.size());
  Strides st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      MG_CHECK(shape[i] >= 0, "[expand] size -1 is not allowed for the new leading dim {} in {}", i, shape);
      s[i] = shape[i];
      continue;
    }
    MG_CHECK(shape[i] >= -1, "[expand] invalid size {} in {} (sizes are 0 or more, or -1 to keep a dim)", shape[i],
             shape);
    int64_t cur = x.size(i - lead), want = shape[i] == -1 ? cur : shape[i];
    MG_CHECK(cur == want || cur == 1, "[expand] cannot expand {} to {}: dim {} has size {} (only size-1 dims can grow)",
             x.shape(), shape, i, cur);
    s[i] = want;
    st[i] = cur == want ? x.strides()[i - lead] : 0;
  }
  if (s == x.shape()) return x;
  Tensor out = make_view(x, s, st, x.offset());
  record(OpId::expand, {x}, {&out},
         [in = x.shape()](const VjpArgs& g) { return std::vector<Tensor>{sum_to(g[0], in)}; });
  return out;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  OpScope scope(OpId::cat, xs);
  MG_CHECK(!xs.empty(), "[cat] needs at least one tensor");
  const Tensor& f = xs[0];
  check_defined("cat", f);
  MG_CHECK(f.dim() > 0, "[cat] cannot concatenate 0-dim tensors");
  int64_t d = wrap_dim(dim, f.dim(), "cat");
  Shape s = f.shape();
  s[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_defined("cat", x);
    MG_CHECK(x.dtype() == f.dtype() && x.device() == f.device(),
             "[cat] tensor {} is {} on {}, but tensor 0 is {} on {}", i, x.dtype(), x.device(), f.dtype(), f.device());
    bool ok = x.dim() == f.dim();
    for (int64_t k = 0; ok && k < f.dim(); ++k) ok = k == d || x.size(k) == f.size(k);
    MG_CHECK(ok, "[cat] tensor {} has shape {}, which differs from tensor 0's {} outside dim {}", i, x.shape(),
             f.shape(), dim);
    s[d] = checked_add(s[d], x.size(d), "cat", "the size of the concatenated dim");
  }
  Tensor out = Tensor::empty(s, f.dtype(), f.device());
  std::vector<int64_t> sizes;
  {
    NoGradGuard ng;
    int64_t at = 0;
    for (auto& x : xs) {
      narrow(out, d, at, x.size(d)).copy_(x.detach());
      at += x.size(d);
      sizes.push_back(x.size(d));
    }
  }
  record(OpId::cat, xs, {&out}, [sizes, d](const VjpArgs& g) {
    std::vector<Tensor> gs;
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      gs.push_back(g.needs_grad(i) ? narrow(g[0], d, at, sizes[i]) : Tensor());
      at += sizes[i];
    }
    return gs;
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  OpScope scope(OpId::split, {&x});
  check_defined("split", x);
  MG_CHECK(x.dim() > 0, "[split] cannot split a 0-dim tensor (it has no dim {})", dim);
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    MG_CHECK(s >= 0, "[split] sizes must be non-negative, got ({})", mg::join(sizes, ", "));
    total = checked_add(total, s, "split", "the sum of the sizes");
  }
  MG_CHECK(total == x.size(d), "[split] sizes ({}) add up to {}, but dim {} of {} has size {}", mg::join(sizes, ", "),
           total, dim, x.shape(), x.size(d));
  // Views of x, recorded as one node: its vjp writes every part's gradient into one (x-shaped)
  // tensor, as PyTorch's split_backward does, instead of one zero-padded x-sized gradient per part
  // summed afterwards.
  std::vector<Tensor> out;
  std::vector<Tensor*> outs;
  int64_t at = 0;
  for (int64_t s : sizes) {
    Shape sh = x.shape();
    sh[d] = s;
    out.push_back(make_view(x, sh, x.strides(), x.offset() + at * x.strides()[d]));
    at += s;
  }
  for (Tensor& t : out) outs.push_back(&t);
  record(OpId::split, {x}, outs, [in = x.shape(), d, sizes](const VjpArgs& g) {
    Tensor dx = Tensor::empty(in, g[0].dtype(), g[0].device());  // every element is written below
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      narrow(dx, d, at, sizes[i]).copy_(g[i]);  // g[i] is zero-filled where part i got no gradient
      at += sizes[i];
    }
    return std::vector<Tensor>{dx};
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  check_defined("split", x);
  MG_CHECK(size > 0, "[split] split size must be positive, got {}", size);
  MG_CHECK(x.dim() > 0, "[split] cannot split a 0-dim tensor (it has no dim {})", dim);
  int64_t n = x.size(wrap_dim(dim, x.dim(), "split"));
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < n; at += sizes.back()) sizes.push_back(std::min(size, n - at));  // at + size may overflow
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MG_CHECK(chunks > 0, "[chunk] number of chunks must be positive, got {}", chunks);
  check_defined("chunk", x);
  MG_CHECK(x.dim() > 0, "[chunk] cannot chunk a 0-dim tensor (it has no dim {})", dim);
  int64_t n = x.size(wrap_dim(dim, x.dim(), "chunk"));
  return split(x, std::max<int64_t>(1, n / chunks + (n % chunks != 0)), dim);  // ceil(n / chunks), no overflow
}

Tensor contiguous(const Tensor& x) {
  check_defined("contiguous", x);
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  OpScope scope(OpId::contiguous, {&x});
  check_defined("clone", x);
  Tensor out = copy_as(x, x.dtype());
  record(OpId::contiguous, {x}, {&out}, [](const VjpArgs& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

// Converting a float that is NaN, infinite or outside [-2^63, 2^63) to int64 is undefined behaviour in C++
// (and PyTorch's result for it is implementation-defined): such a value is refused, naming it and where
// it is. The check reads the source once (on CUDA from a host copy); nothing in the library converts
// floats to int64 on a hot path.
void check_int64_convertible(const Tensor& x) {
  Tensor h = contiguous(x.device().is_cpu() ? x.detach() : to_device(x.detach(), kCPU));
  MG_DISPATCH_FLOAT(h.dtype(), "to_dtype", [&] {
    const scalar_t* p = h.data<scalar_t>();
    for (int64_t i = 0; i < h.numel(); ++i) {
      const double v = (double)p[i];  // exact for float and double
      MG_CHECK(fits_int64(v),
               "[to_dtype] cannot convert {} to int64: the element at flat index {} is {} (valid: finite values "
               "in [-2^63, 2^63))",
               x.dtype(), i, v);
    }
  });
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  OpScope scope(OpId::to_dtype, {&x});
  check_defined("to_dtype", x);
  if (x.dtype() == dtype) return x;
  if (dtype == DType::i64 && is_floating(x.dtype())) check_int64_convertible(x);
  Tensor out = copy_as(x, dtype);
  if (is_floating(dtype) && is_floating(x.dtype()))
    record(OpId::to_dtype, {x}, {&out},
           [from = x.dtype()](const VjpArgs& g) { return std::vector<Tensor>{to_dtype(g[0], from)}; });
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  OpScope scope(OpId::to_device, {&x});
  check_defined("to_device", x);
  if (x.device() == device) return x;
  Tensor src = contiguous(x.detach());  // on x's device
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device, "to_device");
  if (x.device().is_cpu())
    cuda::copy_host_to_device(out.raw_data(), src.raw_data(), out.nbytes(), device.index, "to_device");
  else if (device.is_cpu())
    cuda::copy_device_to_host(out.raw_data(), src.raw_data(), out.nbytes(), x.device().index, "to_device");
  else
    cuda::copy_between_devices(out.raw_data(), device.index, src.raw_data(), x.device().index, out.nbytes(),
                               "to_device");
  if (is_floating(x.dtype()))
    record(OpId::to_device, {x}, {&out},
           [from = x.device()](const VjpArgs& g) { return std::vector<Tensor>{to_device(g[0], from)}; });
  return out;
}

void register_shape_gradchecks(GradcheckRegistry& r) {
  auto one = [&](OpId id, Shape s, std::function<Tensor(const Tensor&)> f, std::string label) {
    r.add({id, label, [=](Generator& g, Device d) { return std::vector<Tensor>{gc_randn(s, g, d)}; },
           [f](const std::vector<Tensor>& in) { return f(in[0]); }});
  };
  one(
      OpId::reshape, {2, 3, 4},
      [](const Tensor& x) {
        return reshape(x, {4, -1});
      },
      "(2,3,4) -> (4,6)");
  one(
      OpId::reshape, {3, 4}, [](const Tensor& x) { return reshape(transpose(x, 0, 1), {12}); },
      "non-contiguous input (copy)");
  one(
      OpId::transpose, {2, 3, 4}, [](const Tensor& x) { return transpose(x, 0, 2); }, "dims 0, 2");
  one(
      OpId::permute, {2, 3, 4},
      [](const Tensor& x) {
        return permute(x, {1, 2, 0});
      },
      "(1, 2, 0)");
  one(
      OpId::narrow, {5, 4}, [](const Tensor& x) { return narrow(x, 0, 1, 3); }, "dim 0 [1, 4)");
  one(
      OpId::split, {3, 6},
      [](const Tensor& x) {
        return split(x, {2, 4}, 1)[1];
      },
      "split [2, 4] along dim 1, one part used");
  one(
      OpId::split, {3, 6}, [](const Tensor& x) { return chunk(x, 3, 1)[2] * chunk(x, 3, 1)[0]; },
      "chunk 3, two chunks used");
  one(
      OpId::split, {4, 5},
      [](const Tensor& x) {
        auto p = split(x, {1, 0, 3}, 0);
        return cat({p[2], p[0] * p[0], p[1].reshape({0, 5})}, 0);
      },
      "sizes [1, 0, 3] along dim 0, every part used");
  one(
      OpId::expand, {3, 1},
      [](const Tensor& x) {
        return expand(x, {2, 3, 4});
      },
      "(3,1) -> (2,3,4)");
  one(
      OpId::contiguous, {3, 4}, [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); }, "of a transpose");
  // The float32 round trip rounds the finite differences to ~6% of the step: a loose tolerance that
  // still fails for a wrong vjp (zero, doubled or sign-flipped).
  r.add({OpId::to_dtype, "f64 -> f32 -> f64 (loose: float32 rounding)",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({3, 4}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return to_dtype(to_dtype(in[0], DType::f32), DType::f64); }, 0.1, 0.1});
  // On a CUDA device the round trip runs both directions of the vjp; on the cpu both moves are the
  // identity (nothing is recorded and the gradient is the input's own).
  r.add({OpId::to_device, "to the cpu and back",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({3, 4}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return to_device(to_device(in[0], kCPU), in[0].device()); }});
  r.add({OpId::cat, "three tensors along dim 1",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({2, 1}, g, d), gc_randn({2, 3}, g, d), gc_randn({2, 2}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return cat(in, 1); }});
}

}  // namespace mg
