// Reductions: sum and mean over any dims (keepdim or not), max over one dim with indices, and
// sum_to (the inverse of broadcasting, used by the broadcasting vjps). On CUDA the row sums and max
// run in cuda/reduce.cu, deterministically (fixed-order trees, no float atomics).
#include <algorithm>
#include <limits>

#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

namespace {

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape keep_shape;           // output shape with keepdim
  Shape out_shape;            // output shape as returned
  int64_t count = 1;          // elements reduced into each output
};

ReducePlan plan_reduce(const char* op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  MG_CHECK(x.defined(), "[{}] got an undefined tensor", op);
  ReducePlan p;
  p.reduced.assign(x.dim(), dims.empty());  // no dims: reduce everything
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    MG_CHECK(x.dim() == 0 || !p.reduced[w], "[{}] dim {} appears twice in the reduction dims", op, d);
    if (x.dim() > 0) p.reduced[w] = true;
  }
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (p.reduced[i]) {
      p.keep_shape.push_back(1);
      p.count *= x.size(i);
      if (keepdim) p.out_shape.push_back(1);
    } else {
      p.keep_shape.push_back(x.size(i));
      p.out_shape.push_back(x.size(i));
    }
  }
  return p;
}

// Sums the reduced dims of x, scaled by `scale`, into a tensor of plan.keep_shape.
Tensor sum_kernel(const char* op, const Tensor& x, const ReducePlan& p, double scale) {
  MG_CHECK(is_floating(x.dtype()), "[{}] expects a floating tensor, got {} of shape {}", op, x.dtype(), x.shape());
  // Put kept dims first and reduced dims last, so each output sums one contiguous block.
  std::vector<int64_t> order;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (!p.reduced[i]) order.push_back(i);
  for (int64_t i = 0; i < x.dim(); ++i)
    if (p.reduced[i]) order.push_back(i);
  Tensor xc;
  {
    NoGradGuard ng;
    xc = contiguous(permute(x.detach(), order));
  }
  Tensor out = Tensor::empty(p.keep_shape, x.dtype(), x.device(), op);
  const int64_t rows = out.numel(), n = p.count;
  if (x.device().is_cuda()) {
    cuda::sum_rows(x.dtype(), xc.raw_data(), out.raw_data(), rows, n, scale, x.device().index);
    return out;
  }
  MG_DISPATCH_FLOAT(x.dtype(), op, [&] {
    const scalar_t* px = xc.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(rows, n, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        double acc = 0;  // double accumulation: float32 sums of long rows stay accurate
        const scalar_t* row = px + r * n;
        for (int64_t i = 0; i < n; ++i) acc += row[i];
        po[r] = (scalar_t)(acc * scale);
      }
    });
  });
  return out;
}

Tensor reduce_op(OpId id, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  OpScope scope(id, {&x});
  const char* op = op_name(id).data();
  ReducePlan p = plan_reduce(op, x, dims, keepdim);
  double scale = id == OpId::mean ? 1.0 / (double)std::max<int64_t>(p.count, 1) : 1.0;
  MG_CHECK(id != OpId::mean || p.count > 0, "[mean] of an empty tensor of shape {}", x.shape());
  Tensor out = sum_kernel(op, x, p, scale).view(p.out_shape);
  record(id, {x}, {&out}, [in_shape = x.shape(), keep = p.keep_shape, scale](const VjpArgs& g) {
    Tensor ge = g[0].reshape(keep).expand(in_shape);
    return std::vector<Tensor>{scale == 1.0 ? ge : mul_scalar(ge, scale)};
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(OpId::sum, x, dims, keepdim);
}
Tensor sum(const Tensor& x) { return reduce_op(OpId::sum, x, {}, false); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(OpId::mean, x, dims, keepdim);
}
Tensor mean(const Tensor& x) { return reduce_op(OpId::mean, x, {}, false); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  MG_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "[sum_to] shape {} is not a broadcast of {}",
           x.shape(), shape);
  std::vector<int64_t> dims;
  int64_t lead = x.dim() - (int64_t)shape.size();
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.size(i) != 1)) dims.push_back(i);
  return sum(x, dims, true).reshape(shape);
}

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  OpScope scope(OpId::max, {&x});
  MG_CHECK(x.defined(), "[max] got an undefined tensor");
  MG_CHECK(is_floating(x.dtype()), "[max] expects a floating tensor, got {} of shape {}", x.dtype(), x.shape());
  MG_CHECK(x.dim() > 0, "[max] needs at least one dim, got a scalar");
  int64_t d = wrap_dim(dim, x.dim(), "max");
  MG_CHECK(x.size(d) > 0, "[max] cannot reduce the empty dim {} of shape {}", dim, x.shape());
  int64_t outer = 1, inner = 1, n = x.size(d);
  for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
  Shape keep = x.shape();
  keep[d] = 1;
  Shape out_shape = keep;
  if (!keepdim) out_shape.erase(out_shape.begin() + d);
  Tensor xc = contiguous(x.detach());
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device(), "max");
  Tensor indices = Tensor::empty(out_shape, DType::i64, x.device(), "max");
  if (x.device().is_cuda()) {
    cuda::max_dim(x.dtype(), xc.raw_data(), values.raw_data(), indices.data<int64_t>(), outer, n, inner,
                  x.device().index);
  } else {
    MG_DISPATCH_FLOAT(x.dtype(), "max", [&] {
      const scalar_t* px = xc.data<scalar_t>();
      scalar_t* pv = values.data<scalar_t>();
      int64_t* pi = indices.data<int64_t>();
      parallel_for(outer * inner, n, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          int64_t o = r / inner, in = r % inner;
          const scalar_t* p = px + o * n * inner + in;
          int64_t best = 0;
          scalar_t bv = p[0];
          for (int64_t i = 1; i < n; ++i)
            if (p[i * inner] > bv || (std::isnan(p[i * inner]) && !std::isnan(bv))) bv = p[i * inner], best = i;
          pv[r] = bv;
          pi[r] = best;
        }
      });
    });
  }
  record(OpId::max, {x}, {&values},
         [si = SavedTensor(indices, OpId::max), in_shape = x.shape(), outer, inner, n](const VjpArgs& g) {
           // The indices are returned to the caller too: version-checked, since the vjp writes where they point.
           Tensor idx = si.get(), gc = contiguous(g[0]);
           Tensor dx = zeros(in_shape, gc.dtype(), gc.device());
           if (gc.device().is_cuda()) {
             cuda::max_backward(gc.dtype(), gc.raw_data(), idx.data<int64_t>(), dx.raw_data(), outer, n, inner,
                                gc.device().index);
             return std::vector<Tensor>{dx};
           }
           MG_DISPATCH_FLOAT(gc.dtype(), "max", [&] {
             const scalar_t* pg = gc.data<scalar_t>();
             const int64_t* pi = idx.data<int64_t>();
             scalar_t* pd = dx.data<scalar_t>();
             for (int64_t r = 0; r < outer * inner; ++r)
               pd[(r / inner) * n * inner + pi[r] * inner + r % inner] = pg[r];
           });
           return std::vector<Tensor>{dx};
         });
  return {values, indices};
}

void register_reduce_gradchecks(GradcheckRegistry& r) {
  auto add = [&](OpId id, Shape s, std::function<Tensor(const Tensor&)> f, std::string label) {
    r.add({id, label, [=](Generator& g, Device d) { return std::vector<Tensor>{gc_randn(s, g, d)}; },
           [f](const std::vector<Tensor>& in) { return f(in[0]); }});
  };
  add(
      OpId::sum, {2, 3, 4}, [](const Tensor& x) { return sum(x); }, "all dims");
  add(
      OpId::sum, {2, 3, 4},
      [](const Tensor& x) {
        return sum(x, {0, 2}, true);
      },
      "dims (0, 2) keepdim");
  add(
      OpId::sum, {2, 3, 4}, [](const Tensor& x) { return sum(x, {-1}); }, "dim -1");
  add(
      OpId::mean, {2, 3, 4}, [](const Tensor& x) { return mean(x, {1}); }, "dim 1");
  add(
      OpId::mean, {2, 3, 4}, [](const Tensor& x) { return mean(x); }, "all dims");
  add(
      OpId::max, {3, 5, 2}, [](const Tensor& x) { return max(x, 1).first; }, "dim 1");
  add(
      OpId::max, {3, 5}, [](const Tensor& x) { return max(x, -1, true).first; }, "dim -1 keepdim");
}

}  // namespace mg
