// matmul (batched, broadcasting batch dims) and linear (x W^T + b), on ops/cpu/gemm on the cpu and
// on cuBLAS on CUDA (cuda/blas.cu: one strided-batched call per matmul where the batch allows).
// Transposed operands are passed to the gemm as flags, never copied. Under an AutocastGuard (ops/autocast.h)
// float32 products take bfloat16 inputs and float32 sums; the node keeps that precision for its backward.
#include <cstring>
#include <type_traits>

#include "ops/autocast.h"
#include "core/bf16.h"
#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/tensor_iter.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

namespace {

// How the gemm should read the last two dims of a (possibly strided) matrix view.
struct MatLayout {
  bool trans;
  int64_t ld;
};
std::optional<MatLayout> mat_layout(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if (s_col == 1 || cols == 1) return MatLayout{false, rows == 1 ? std::max<int64_t>(cols, 1) : s_row};
  if (s_row == 1 || rows == 1) return MatLayout{true, cols == 1 ? std::max<int64_t>(rows, 1) : s_col};
  return std::nullopt;
}

// t as (rows, its last dim), the leading dims flattened. The sizes are explicit: reshape cannot resolve a -1
// next to a 0 (an empty last dim: in_features or k of 0).
Tensor as_rows(const Tensor& t) {
  const Shape lead(t.shape().begin(), t.shape().end() - 1);
  return reshape(t, {lead.numel(), t.size(-1)});
}

// Makes the last two dims readable by the gemm (copies only when neither layout fits).
Tensor gemm_ready(const Tensor& x) {
  int64_t n = x.dim();
  if (mat_layout(x.size(n - 2), x.size(n - 1), x.strides()[n - 2], x.strides()[n - 1])) return x;
  return contiguous(x);
}

// The same for cuBLAS, which also needs the leading dimension to be at least the stored row length
// (a stride-0 or overlapping layout is not readable by it).
std::optional<MatLayout> cublas_layout(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if ((s_col == 1 || cols == 1) && (rows == 1 || s_row >= std::max<int64_t>(cols, 1)))
    return MatLayout{false, rows == 1 ? std::max<int64_t>(cols, 1) : s_row};
  if ((s_row == 1 || rows == 1) && (cols == 1 || s_col >= std::max<int64_t>(rows, 1)))
    return MatLayout{true, cols == 1 ? std::max<int64_t>(rows, 1) : s_col};
  return std::nullopt;
}
MatLayout cublas_layout_of(const Tensor& x) {
  const int64_t n = x.dim();
  return *cublas_layout(x.size(n - 2), x.size(n - 1), x.strides()[n - 2], x.strides()[n - 1]);
}
Tensor cublas_ready(const Tensor& x) {
  const int64_t n = x.dim();
  if (cublas_layout(x.size(n - 2), x.size(n - 1), x.strides()[n - 2], x.strides()[n - 1])) return x;
  return contiguous(x);
}

void check_mm_operands(const char* op, const Tensor& a, const Tensor& b) {
  MG_CHECK(a.defined() && b.defined(), "[{}] got an undefined tensor", op);
  MG_CHECK(a.dtype() == b.dtype(), "[{}] dtypes differ: {} and {}", op, a.dtype(), b.dtype());
  MG_CHECK(is_floating(a.dtype()), "[{}] expects floating tensors, got {}", op, a.dtype());
  MG_CHECK(a.device() == b.device(), "[{}] devices differ: {} and {}", op, a.device(), b.device());
}

// Element offsets of each batch matrix of a and b, both expanded to `batch` + their matrix dims.
void batch_offsets(const Shape& batch, const Tensor& a, const Tensor& b, std::vector<int64_t>& off_a,
                   std::vector<int64_t>& off_b) {
  const int64_t nbatch = batch.numel();
  off_a.assign(nbatch, 0), off_b.assign(nbatch, 0);
  for (int64_t i = 0; i < nbatch; ++i) {
    int64_t r = i, oa = 0, ob = 0;
    for (int64_t d = (int64_t)batch.size() - 1; d >= 0; --d) {
      int64_t idx = r % batch[d];
      r /= batch[d];
      oa += idx * a.strides()[d];
      ob += idx * b.strides()[d];
    }
    off_a[i] = oa, off_b[i] = ob;
  }
}

// The CUDA forward of matmul_forward: one cuBLAS (strided-batched) call when every batch matrix of a
// and of b sits at a fixed stride from the previous one (always, unless two batch dims broadcast
// differently), else one call per matrix.
Tensor matmul_forward_cuda(const Tensor& a_in, const Tensor& b_in, const Shape& batch, Tensor out, bool bf16) {
  const int64_t m = a_in.size(-2), k = a_in.size(-1), n = b_in.size(-1);
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), {m, k});
  sb.insert(sb.end(), {k, n});
  Tensor a = cublas_ready(a_in).detach().expand(sa), b = cublas_ready(b_in).detach().expand(sb);
  const MatLayout la = cublas_layout_of(a), lb = cublas_layout_of(b);
  std::vector<int64_t> off_a, off_b;
  batch_offsets(batch, a, b, off_a, off_b);
  const int64_t nbatch = batch.numel();
  const int64_t step_a = nbatch > 1 ? off_a[1] : 0, step_b = nbatch > 1 ? off_b[1] : 0;
  bool even = true;
  for (int64_t i = 0; i < nbatch && even; ++i) even = off_a[i] == i * step_a && off_b[i] == i * step_b;
  const int dev = a.device().index;
  if (even) {
    cuda::gemm(a.dtype(), la.trans, lb.trans, m, n, k, a.raw_data(), la.ld, step_a, b.raw_data(), lb.ld, step_b, 0.0,
               out.raw_data(), n, m * n, nbatch, dev, bf16);
    return out;
  }
  const int64_t es = (int64_t)dtype_size(a.dtype());
  for (int64_t i = 0; i < nbatch; ++i)
    cuda::gemm(a.dtype(), la.trans, lb.trans, m, n, k, static_cast<const char*>(a.raw_data()) + off_a[i] * es, la.ld, 0,
               static_cast<const char*>(b.raw_data()) + off_b[i] * es, lb.ld, 0, 0.0,
               static_cast<char*>(out.raw_data()) + i * m * n * es, n, 0, 1, dev, bf16);
  return out;
}

// Whether a product of float32 tensors runs with bf16 inputs now.
bool use_bf16(DType t) { return t == DType::f32 && autocast_precision() == Precision::bf16; }

// Whether linear's bf16 products run as the float32 gemm on operands it rounds itself, once: on the cpu,
// where the bf16 gemm is the fp32 way (gemm.h, "Mixed precision"), for a layer of at most
// kRoundOnceFeatures input features (dt_proj). Both backward products of such a layer have N = in_features,
// where the gemm reads op(A) in place and the fp32 way must first copy the output gradient's block to round
// it, once per product. linear then rounds x and the weight in the forward (x is narrow), keeps the rounded
// copies for the backward and rounds the output gradient once for both products. The same operands rounded
// once instead of twice, so the same bits: rounding is idempotent and the fp32 way is bit-identical to the
// float32 gemm on rounded copies. Wider layers keep the fp32 way, whose rounding as the packing copies
// costs less than a separate rounding pass over memory (docs/perf.md, "bf16 without AMX").
constexpr int64_t kRoundOnceFeatures = 32;
bool rounds_once(const Tensor& x, const Tensor& w) {
  return x.device().is_cpu() && use_bf16(x.dtype()) && w.size(1) <= kRoundOnceFeatures &&
         cpu::bf16_gemm_choice() == cpu::Bf16Gemm::fp32;
}

// x (float32, cpu) with every element rounded to bf16 (core/bf16.h), as a new contiguous float32 tensor:
// one pass, or a contiguous copy rounded in place.
Tensor rounded_bf16(const Tensor& x_in) {
  const Tensor x = x_in.detach();
  const bool dense = x.is_contiguous();
  Tensor out = dense ? Tensor::empty(x.shape(), DType::f32, x.device(), "bf16-rounded operand") : contiguous(x);
  const float* src = (dense ? x : out).data<float>();
  float* dst = out.data<float>();
  parallel_for(x.numel(), 1, [&](int64_t s, int64_t e) { cpu::round_bf16_span(src + s, dst + s, e - s); });
  return out;
}

// C = op(A) op(B) + beta C on the cpu, in bf16 when asked (float32 only).
template <class T>
void cpu_gemm(bool bf16, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
              int64_t ldb, T beta, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16) return cpu::gemm_bf16(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  }
  cpu::gemm<T>(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

// out (..., m, n) = a (..., m, k) @ b (..., k, n) with broadcast batch dims, no autograd.
Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in) {
  const bool bf16 = use_bf16(a_in.dtype());
  const int64_t m = a_in.size(-2), k = a_in.size(-1), n = b_in.size(-1);
  Shape ba(a_in.shape().begin(), a_in.shape().end() - 2), bb(b_in.shape().begin(), b_in.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device(), "matmul");
  if (out.numel() == 0) return out;
  if (k == 0) return out.fill_(0.0), out;
  if (a_in.device().is_cuda()) return matmul_forward_cuda(a_in, b_in, batch, out, bf16);

  Tensor a = gemm_ready(a_in), b = gemm_ready(b_in);
  // Expand both to the full batch (views with stride 0 on broadcast dims).
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), {m, k});
  sb.insert(sb.end(), {k, n});
  a = a.detach().expand(sa);
  b = b.detach().expand(sb);
  const int64_t nd = a.dim();
  MatLayout la = *mat_layout(m, k, a.strides()[nd - 2], a.strides()[nd - 1]);
  MatLayout lb = *mat_layout(k, n, b.strides()[nd - 2], b.strides()[nd - 1]);

  const int64_t nbatch = batch.numel();
  std::vector<int64_t> off_a, off_b;
  batch_offsets(batch, a, b, off_a, off_b);
  MG_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    // Many small matrices: threads over the batch; few large ones: threads inside the gemm.
    parallel_for(nbatch, nbatch > 1 ? m * n * k : 1, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i)
        cpu_gemm<scalar_t>(bf16, la.trans, lb.trans, m, n, k, pa + off_a[i], la.ld, pb + off_b[i], lb.ld, scalar_t(0),
                           po + i * m * n, n);
    });
  });
  return out;
}

}  // namespace

bool matmul_rows_independent(Device device, int64_t rows) {
  return device.is_cpu() && rows >= 1 && rows <= cpu::kGemmSmallM;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  OpScope scope(OpId::matmul, {&a, &b});
  check_mm_operands("matmul", a, b);
  MG_CHECK(a.dim() >= 2 && b.dim() >= 2, "[matmul] needs operands with at least 2 dims, got {} @ {}", a.shape(),
           b.shape());
  MG_CHECK(a.size(-1) == b.size(-2), "[matmul] inner dimensions differ: {} @ {} ({} != {})", a.shape(), b.shape(),
           a.size(-1), b.size(-2));
  Tensor out;
  // A matrix times a batch of rows: fold the batch into M for one large gemm.
  if (b.dim() == 2 && a.dim() > 2) {
    Tensor a2 = as_rows(a.detach());
    Shape s = a.shape();
    s.back() = b.size(-1);
    out = matmul_forward(a2, b.detach()).view(s);
  } else {
    out = matmul_forward(a, b);
  }
  record(OpId::matmul, {a, b}, {&out},
         [sa = SavedTensor(a, OpId::matmul), sb = SavedTensor(b, OpId::matmul),
          precision = autocast_precision()](const VjpArgs& g) {
           AutocastGuard same(precision);  // the backward's products in the forward's precision
           Tensor a = sa.get(), b = sb.get();
           Tensor da, db;
           if (g.needs_grad(0)) da = sum_to(matmul(g[0], transpose(b, -1, -2)), a.shape());
           if (g.needs_grad(1)) {
             if (b.dim() == 2 && a.dim() > 2)  // sum over the batch inside one gemm
               db = matmul(transpose(as_rows(a), 0, 1), as_rows(g[0]));
             else
               db = sum_to(matmul(transpose(a, -1, -2), g[0]), b.shape());
           }
           return std::vector<Tensor>{da, db};
         });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  OpScope scope(OpId::linear, {&x, &w, &b});
  check_mm_operands("linear", x, w);
  MG_CHECK(w.dim() == 2, "[linear] weight must be (out_features, in_features), got {}", w.shape());
  MG_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1),
           "[linear] input {} has {} features in its last dim, but the weight {} expects {}", x.shape(),
           x.dim() ? x.size(-1) : 0, w.shape(), w.size(1));
  if (b.defined()) {
    check_mm_operands("linear", x, b);
    MG_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "[linear] bias must be ({},), got {}", w.size(0), b.shape());
  }
  const int64_t in = w.size(1), outf = w.size(0);
  // The operands the gemm reads and the backward keeps: x and w, or their rounded copies (rounds_once).
  const bool once = rounds_once(x, w);
  const Tensor xo = once ? rounded_bf16(x) : x, wo = once ? rounded_bf16(w) : w;
  const bool bf16 = use_bf16(x.dtype()) && !once;
  Shape out_shape = x.shape();
  out_shape.back() = outf;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device(), "linear");
  if (x.device().is_cuda()) {
    const int dev = x.device().index;
    const int64_t rows = out.numel() / std::max<int64_t>(outf, 1);
    const Shape out2{rows, outf};
    double beta = 0;
    if (b.defined()) {  // start from the bias broadcast over the rows: the gemm adds to it
      cuda::copy(out.dtype(), out.raw_data(), b.dtype(), b.raw_data(),
                 cuda::iter<2>("linear", out2, {contiguous_strides(out2), {0, b.strides()[0]}}), dev);
      beta = 1;
    } else if (in == 0) {
      out.fill_(0.0);
    }
    if (rows > 0 && outf > 0 && in > 0) {
      Tensor x2 = cublas_ready(as_rows(x.detach()));
      Tensor wr = cublas_ready(w.detach());
      const MatLayout lx = cublas_layout_of(x2), lw = cublas_layout_of(wr);
      // out = x2 @ w^T: w^T is w read with the opposite transpose flag.
      cuda::gemm(x.dtype(), lx.trans, !lw.trans, rows, outf, in, x2.raw_data(), lx.ld, 0, wr.raw_data(), lw.ld, 0, beta,
                 out.raw_data(), outf, 0, 1, dev, bf16);
    }
  } else {
    Tensor x2 = gemm_ready(as_rows(xo.detach()));
    Tensor wr = gemm_ready(wo.detach());
    const int64_t rows = x2.size(0);
    MG_DISPATCH_FLOAT(x.dtype(), "linear", [&] {
      scalar_t* po = out.data<scalar_t>();
      scalar_t beta = 0;
      if (b.defined()) {  // start C from the bias: the gemm adds to it
        Tensor bc = contiguous(b.detach());
        const scalar_t* pb = bc.data<scalar_t>();
        for (int64_t r = 0; r < rows; ++r) std::copy(pb, pb + outf, po + r * outf);
        beta = 1;
      } else if (in == 0) {  // a sum of nothing, as on CUDA
        std::fill(po, po + rows * outf, scalar_t(0));
      }
      if (rows == 0 || outf == 0 || in == 0) return;
      auto lx = *mat_layout(rows, in, x2.strides()[0], x2.strides()[1]);
      auto lw = *mat_layout(outf, in, wr.strides()[0], wr.strides()[1]);
      // out = x2 @ w^T: w^T is w read with the opposite transpose flag.
      cpu_gemm<scalar_t>(bf16, lx.trans, !lw.trans, rows, outf, in, x2.data<scalar_t>(), lx.ld, wr.data<scalar_t>(),
                         lw.ld, beta, po, outf);
    });
  }
  record(OpId::linear, {x, w, b}, {&out},
         [sx = SavedTensor(xo, OpId::linear), sw = SavedTensor(wo, OpId::linear), has_b = b.defined(), once,
          precision = autocast_precision()](const VjpArgs& g) {
           // Rounded operands: the float32 products of the rounded gradient give the bf16 products' bits.
           AutocastGuard same(once ? Precision::f32 : precision);
           Tensor x = sx.get(), w = sw.get();
           Tensor g2 = as_rows(g[0]);
           const Tensor gm = once && (g.needs_grad(0) || g.needs_grad(1)) ? rounded_bf16(g2) : g2;
           Tensor dx, dw, db;
           if (g.needs_grad(0)) dx = reshape(matmul(gm, w), x.shape());
           if (g.needs_grad(1)) dw = matmul(transpose(gm, 0, 1), as_rows(x));
           if (has_b && g.needs_grad(2)) db = sum(g2, {0});
           return std::vector<Tensor>{dx, dw, db};
         });
  return out;
}

void register_matmul_gradchecks(GradcheckRegistry& r) {
  auto mm = [&](Shape sa, Shape sb, std::string label, bool ta = false) {
    r.add({OpId::matmul, label,
           [=](Generator& g, Device d) {
             return std::vector<Tensor>{gc_randn(sa, g, d), gc_randn(sb, g, d)};
           },
           [ta](const std::vector<Tensor>& in) { return matmul(ta ? transpose(in[0], -1, -2) : in[0], in[1]); }});
  };
  mm({3, 4}, {4, 5}, "2-D");
  mm({4, 3}, {4, 5}, "transposed left operand", true);
  mm({2, 3, 4}, {2, 4, 5}, "batched");
  mm({2, 1, 3, 4}, {3, 4, 2}, "broadcast batch dims");
  mm({2, 3, 4}, {4, 5}, "batch of rows @ matrix");
  r.add({OpId::linear, "with bias, 3-D input",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({2, 3, 4}, g, d), gc_randn({5, 4}, g, d), gc_randn({5}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }});
  r.add({OpId::linear, "no bias",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({3, 4}, g, d), gc_randn({2, 4}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }});
}

}  // namespace mg
