// Elementwise ops: add, sub, mul, div (broadcasting; the vjp sums back to each input's shape), the
// unary ops of core/unary_ops.h (defined here from their list entries), and the in-place updates used by optimizers. On
// CUDA each runs one kernel of cuda/elementwise.cu or cuda/copy.cu over the same strides as the cpu loop.
#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/tensor_iter.h"
#include "ops/cpu/loops.h"
#include "ops/input_checks.h"
#include "ops/ops.h"
#include "core/unary_ops.h"

namespace mg {

namespace {

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  MG_CHECK(a.defined() && b.defined(), "[{}] got an undefined tensor", op);
  MG_CHECK(a.dtype() == b.dtype(), "[{}] dtypes differ: {} and {} (convert one with .to(DType))", op, a.dtype(),
           b.dtype());
  MG_CHECK(a.device() == b.device(), "[{}] tensors are on different devices: {} and {} (move one with .to(Device))", op,
           a.device(), b.device());
}

void check_floating(const char* op, const Tensor& x) {
  MG_CHECK(x.defined(), "[{}] got an undefined tensor", op);
  MG_CHECK(is_floating(x.dtype()), "[{}] expects a floating tensor (float32 or float64), got {} of shape {}", op,
           x.dtype(), x.shape());
}

// ---- binary ----
using BinOp = cuda::BinaryOp;

template <class T, BinOp op>
inline T bin(T a, T b) {
  if constexpr (op == BinOp::add) return a + b;
  if constexpr (op == BinOp::sub) return a - b;
  if constexpr (op == BinOp::mul) return a * b;
  if constexpr (op == BinOp::div) return a / b;
}

template <BinOp op>
Tensor binary_forward(const char* name, const Tensor& a, const Tensor& b) {
  check_same(name, a, b);
  check_floating(name, a);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device(), name);
  if (a.device().is_cuda()) {
    cuda::binary(op, a.dtype(), out.raw_data(), a.raw_data(), b.raw_data(),
                 cuda::iter<3>(name, shape,
                               {out.strides(), cuda::broadcast_strides(a, shape), cuda::broadcast_strides(b, shape)}),
                 cuda::device_of(a));
    return out;
  }
  MG_DISPATCH_FLOAT(a.dtype(), name, [&] {
    scalar_t* po = out.data<scalar_t>();
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    cpu::strided_loop<3>(
        shape, {contiguous_strides(shape), cpu::broadcast_strides(a, shape), cpu::broadcast_strides(b, shape)},
        [&](auto off, int64_t n, auto st) {
          scalar_t* o = po + off[0];
          const scalar_t* x = pa + off[1];
          const scalar_t* y = pb + off[2];
          if (st[1] == 1 && st[2] == 1) {
            for (int64_t i = 0; i < n; ++i) o[i] = bin<scalar_t, op>(x[i], y[i]);
          } else if (st[1] == 1 && st[2] == 0) {
            const scalar_t yv = *y;
            for (int64_t i = 0; i < n; ++i) o[i] = bin<scalar_t, op>(x[i], yv);
          } else {
            for (int64_t i = 0; i < n; ++i) o[i * st[0]] = bin<scalar_t, op>(x[i * st[1]], y[i * st[2]]);
          }
        });
  });
  return out;
}

// ---- unary ----
template <class F>
constexpr OpKind kind_of() {
  return OpKind::library(F::name);
}

template <class F>
Tensor unary_values(const Tensor& x, double p) {
  const char* name = F::name;
  check_floating(name, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), name);
  if (x.device().is_cuda()) {
    cuda::unary<F>(x.dtype(), out.raw_data(), x.raw_data(), p,
                   cuda::iter<2>(name, x.shape(), {out.strides(), x.strides()}), cuda::device_of(x));
    return out;
  }
  MG_DISPATCH_FLOAT(x.dtype(), name, [&] {
    scalar_t* po = out.data<scalar_t>();
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t pp = (scalar_t)p;
    cpu::strided_loop<2>(x.shape(), {out.strides(), x.strides()}, [&](auto off, int64_t n, auto st) {
      scalar_t* o = po + off[0];
      const scalar_t* a = px + off[1];
      if (st[1] == 1)
        for (int64_t i = 0; i < n; ++i) o[i] = F::f(a[i], pp);
      else
        for (int64_t i = 0; i < n; ++i) o[i * st[0]] = F::f(a[i * st[1]], pp);
    });
  });
  return out;
}

// g * f'(x), with y = f(x) available to the derivative.
template <class F>
Tensor unary_backward(const Tensor& g, const Tensor& x, const Tensor& y, double p) {
  const char* name = F::name;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), name);
  if (x.device().is_cuda()) {
    cuda::unary_backward<F>(x.dtype(), out.raw_data(), g.raw_data(), x.raw_data(), y.raw_data(), p,
                            cuda::iter<4>(name, x.shape(), {out.strides(), g.strides(), x.strides(), y.strides()}),
                            cuda::device_of(x));
    return out;
  }
  MG_DISPATCH_FLOAT(x.dtype(), name, [&] {
    scalar_t* po = out.data<scalar_t>();
    const scalar_t *pg = g.data<scalar_t>(), *px = x.data<scalar_t>(), *py = y.data<scalar_t>();
    const scalar_t pp = (scalar_t)p;
    cpu::strided_loop<4>(
        x.shape(), {out.strides(), g.strides(), x.strides(), y.strides()}, [&](auto off, int64_t n, auto st) {
          for (int64_t i = 0; i < n; ++i)
            po[off[0] + i * st[0]] = pg[off[1] + i * st[1]] * F::df(px[off[2] + i * st[2]], py[off[3] + i * st[3]], pp);
        });
  });
  return out;
}

template <class F>
Tensor unary(const Tensor& x, double p = 0.0) {
  constexpr OpKind kind = kind_of<F>();
  OpScope scope(kind, {&x});
  Tensor out = unary_values<F>(x, p);
  record(kind, {x}, {&out}, [sx = SavedTensor(x, kind), sy = SavedTensor(out, kind), p](const VjpArgs& a) {
    return std::vector<Tensor>{unary_backward<F>(a[0], sx.get(), sy.get(), p)};
  });
  return out;
}

void check_inplace(const char* op, const Tensor& t) {
  MG_CHECK(t.defined(), "[{}] on an undefined tensor", op);
  MG_CHECK(!(GradMode::enabled() && t.requires_grad()),
           "[{}] in-place ops are not recorded by autograd, and this tensor {} requires grad (run the update "
           "inside a NoGradGuard, or use the out-of-place op)",
           op, t.shape());
  for (int64_t d = 0; d < t.dim(); ++d)  // an expand()ed view: one element stands for several
    MG_CHECK(t.strides()[d] != 0 || t.shape()[d] <= 1,
             "[{}] the tensor {} has elements that share memory (stride 0 in dim {}: an expand()ed view), so an "
             "in-place op would write each of them several times; clone() it first",
             op, t.shape(), d);
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  OpScope scope(OpId::add, {&a, &b});
  Tensor out = binary_forward<BinOp::add>("add", a, b);
  record(OpId::add, {a, b}, {&out}, [sa = a.shape(), sb = b.shape()](const VjpArgs& g) {
    return std::vector<Tensor>{g.needs_grad(0) ? sum_to(g[0], sa) : Tensor(),
                               g.needs_grad(1) ? sum_to(g[0], sb) : Tensor()};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  OpScope scope(OpId::sub, {&a, &b});
  Tensor out = binary_forward<BinOp::sub>("sub", a, b);
  record(OpId::sub, {a, b}, {&out}, [sa = a.shape(), sb = b.shape()](const VjpArgs& g) {
    return std::vector<Tensor>{g.needs_grad(0) ? sum_to(g[0], sa) : Tensor(),
                               g.needs_grad(1) ? sum_to(neg(g[0]), sb) : Tensor()};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  OpScope scope(OpId::mul, {&a, &b});
  Tensor out = binary_forward<BinOp::mul>("mul", a, b);
  record(OpId::mul, {a, b}, {&out}, [sa = SavedTensor(a, OpId::mul), sb = SavedTensor(b, OpId::mul)](const VjpArgs& g) {
    Tensor a = sa.get(), b = sb.get();
    return std::vector<Tensor>{g.needs_grad(0) ? sum_to(mul(g[0], b), a.shape()) : Tensor(),
                               g.needs_grad(1) ? sum_to(mul(g[0], a), b.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  OpScope scope(OpId::div, {&a, &b});
  Tensor out = binary_forward<BinOp::div>("div", a, b);
  record(OpId::div, {a, b}, {&out},
         [sb = SavedTensor(b, OpId::div), so = SavedTensor(out, OpId::div), sa = a.shape()](const VjpArgs& g) {
           Tensor b = sb.get();
           Tensor ga = div(g[0], b);  // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b
           return std::vector<Tensor>{g.needs_grad(0) ? sum_to(ga, sa) : Tensor(),
                                      g.needs_grad(1) ? sum_to(neg(mul(ga, so.get())), b.shape()) : Tensor()};
         });
  return out;
}

// The ops of core/unary_ops.h, each defined from its entry (declared in ops/ops.h).
#define MG_X(op, ...) \
  Tensor op(const Tensor& x) { return unary<fn::op##_op>(x); }
MG_UNARY_OPS(MG_X)
#undef MG_X
#define MG_X(op, ...) \
  Tensor op(const Tensor& x, double p) { return unary<fn::op##_op>(x, p); }
MG_UNARY_SCALAR_OPS(MG_X)
#undef MG_X

// ---- in-place ----

namespace {

// An in-place op of a tensor and a scalar (fill_, mul_), after its checks: on a CUDA tensor the kernel
// `cuda_op` (cuda/kernels.h's fill or scale), on the CPU every element x set to f(x, v) with v in the
// element type (every dtype when All, else float32 / float64); the version bumped either way.
template <bool All, class CudaOp, class F>
void scalar_inplace(const Tensor& t, const char* op, double v, CudaOp cuda_op, F f) {
  if (t.device().is_cuda()) {
    cuda_op(t.dtype(), t.raw_data(), v, cuda::iter<1>(op, t.shape(), {t.strides()}), cuda::device_of(t));
  } else {
    auto run = [&](auto zero) {
      using T = decltype(zero);
      T* p = t.data<T>();
      const T val = (T)v;
      cpu::strided_loop<1>(t.shape(), {t.strides()}, [&](auto off, int64_t n, auto st) {
        for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = f(p[off[0] + i * st[0]], val);
      });
    };
    if constexpr (All)
      MG_DISPATCH_ALL(t.dtype(), op, [&] { run(scalar_t{}); });
    else
      MG_DISPATCH_FLOAT(t.dtype(), op, [&] { run(scalar_t{}); });
  }
  t.storage()->bump_version();
}

}  // namespace

const Tensor& Tensor::fill_(double v) const {
  check_inplace("fill_", *this);
  check_int64_value(dtype(), v, "fill_");
  scalar_inplace<true>(*this, "fill_", v, cuda::fill, [](auto, auto val) { return val; });
  return *this;
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_inplace("copy_", *this);
  MG_CHECK(src.defined(), "[copy_] source is undefined");
  MG_CHECK(broadcast_shapes(src.shape(), shape(), "copy_") == shape(),
           "[copy_] source of shape {} cannot be broadcast to the destination's shape {}", src.shape(), shape());
  Tensor s = src.device() == device() ? src.detach() : to_device(src.detach(), device());
  // Floats into int64 go through to_dtype, which refuses NaN, infinities and values out of range.
  if (dtype() == DType::i64 && is_floating(s.dtype())) s = to_dtype(s, DType::i64);
  if (device().is_cuda()) {  // the kernel converts the dtype as it copies
    cuda::copy(dtype(), raw_data(), s.dtype(), s.raw_data(),
               cuda::iter<2>("copy_", shape(), {strides(), cuda::broadcast_strides(s, shape())}),
               cuda::device_of(*this));
    storage()->bump_version();
    return *this;
  }
  if (s.dtype() != dtype()) s = to_dtype(s, dtype());
  MG_DISPATCH_ALL(dtype(), "copy_", [&] {
    scalar_t* pd = data<scalar_t>();
    const scalar_t* ps = s.data<scalar_t>();
    cpu::strided_loop<2>(shape(), {strides(), cpu::broadcast_strides(s, shape())}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] = ps[off[1] + i * st[1]];
    });
  });
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::add_(const Tensor& other, double alpha) const {
  check_inplace("add_", *this);
  check_same("add_", *this, other);
  check_floating("add_", *this);
  MG_CHECK(broadcast_shapes(other.shape(), shape(), "add_") == shape(),
           "[add_] operand of shape {} cannot be broadcast to {}", other.shape(), shape());
  if (device().is_cuda()) {
    cuda::add_scaled(dtype(), raw_data(), other.raw_data(), alpha,
                     cuda::iter<2>("add_", shape(), {strides(), cuda::broadcast_strides(other, shape())}),
                     cuda::device_of(*this));
    storage()->bump_version();
    return *this;
  }
  MG_DISPATCH_FLOAT(dtype(), "add_", [&] {
    scalar_t* pd = data<scalar_t>();
    const scalar_t* ps = other.data<scalar_t>();
    const scalar_t al = (scalar_t)alpha;
    cpu::strided_loop<2>(shape(), {strides(), cpu::broadcast_strides(other, shape())},
                         [&](auto off, int64_t n, auto st) {
                           for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] += al * ps[off[1] + i * st[1]];
                         });
  });
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::mul_(double s) const {
  check_inplace("mul_", *this);
  check_floating("mul_", *this);
  scalar_inplace<false>(*this, "mul_", s, cuda::scale, [](auto x, auto val) { return x * val; });
  return *this;
}

// ---- gradcheck cases ----
void register_elementwise_gradchecks(GradcheckRegistry& r) {
  auto bin = [&](OpKind id, Tensor (*f)(const Tensor&, const Tensor&), Shape sa, Shape sb, std::string label,
                 bool positive_b = false) {
    r.add({id, label,
           [=](Generator& g, Device d) {
             return std::vector<Tensor>{gc_randn(sa, g, d),
                                        positive_b ? gc_uniform(sb, 0.5, 2.0, g, d) : gc_randn(sb, g, d)};
           },
           [f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }});
  };
  for (auto [id, f] : {std::pair{OpId::add, &add}, {OpId::sub, &sub}, {OpId::mul, &mul}, {OpId::div, &div}}) {
    bin(id, f, {3, 4}, {3, 4}, "same shape", id == OpId::div);
    bin(id, f, {2, 3, 1}, {4}, "broadcast both ways", id == OpId::div);
  }
  auto un = [&](OpKind kind, std::function<Tensor(const Tensor&)> f, double lo, double hi, std::string label) {
    r.add({kind, label,
           [=](Generator& g, Device d) {
             return std::vector<Tensor>{gc_uniform({3, 5}, lo, hi, g, d)};
           },
           [f](const std::vector<Tensor>& in) { return f(in[0]); }});
  };
  // One case per entry of core/unary_ops.h, on the interval (and with the p) the entry gives.
#define MG_X(op, f_, df_, lo, hi) \
  un(                             \
      kind_of<fn::op##_op>(), [](const Tensor& x) { return op(x); }, lo, hi, mg::format("x in [{}, {}]", lo, hi));
  MG_UNARY_OPS(MG_X)
#undef MG_X
#define MG_X(op, f_, df_, lo, hi, p)                                            \
  un(                                                                           \
      kind_of<fn::op##_op>(), [](const Tensor& x) { return op(x, p); }, lo, hi, \
      mg::format("x in [{}, {}], p = {}", lo, hi, p));
  MG_UNARY_SCALAR_OPS(MG_X)
#undef MG_X
  // The branches the entries' intervals do not reach.
  un(
      kind_of<fn::pow_op>(), [](const Tensor& x) { return pow(x, -1.5); }, 0.5, 3, "p = -1.5");
  un(
      kind_of<fn::pow_op>(), [](const Tensor& x) { return pow(x, 1.0); }, -2, 2, "p = 1");
  un(
      kind_of<fn::pow_op>(), [](const Tensor& x) { return pow(x, 2.5); }, 0.5, 3, "p = 2.5");
  un(kind_of<fn::softplus_op>(), softplus, 20.5, 30, "x > 20 (linear branch)");
}

}  // namespace mg
