// log_softmax over one dim, and cross_entropy from logits: fused (one pass for the log-sum-exp, the
// vjp is softmax minus one-hot) with a composed reference from primitives as its oracle. On CUDA the
// rows run in cuda/softmax.cu (one block per row); the targets are copied to the host to be checked
// and counted, as the cpu does.
#include <cmath>

#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/vec.h"
#include "ops/ops.h"

namespace mg {

namespace {
// log(sum(exp(row))) as the row's max m and log(sum(exp(row - m))) (the shift keeps exp from overflowing;
// the sum is kept in double). Kept apart, so that log_softmax is (x - m) - log_sum, as PyTorch computes it:
// x - (m + log_sum) would round m + log_sum to the precision of m (6e-5 at 1000 in float32) first.
template <class T>
struct RowLse {
  T max;
  double log_sum;
  T value() const { return max + (T)log_sum; }
};
template <class T>
RowLse<T> row_logsumexp(const T* row, int64_t n) {
  T m = row[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, row[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp((double)(row[i] - m));
  return {m, std::log(s)};
}
// float rows: exp(row - m) by vec.h's vexp (about 1 ulp of float, as PyTorch's float kernels), a vector
// of lanes at a time, each lane's terms summed in double and the lanes added by hsum's fixed tree. One
// std::exp in double per element cost more than the rest of the step's loss.
RowLse<float> row_logsumexp(const float* row, int64_t n) {
  using V = cpu::Vec<float>;
  using D = cpu::VecN<double, cpu::kVecLanes>;
  float m = row[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, row[i]);
  const V mv = cpu::splat<V>(m);
  D acc = {};
  int64_t i = 0;
  for (; i + cpu::kVecLanes <= n; i += cpu::kVecLanes)
    acc += __builtin_convertvector(cpu::vexp(cpu::loadu<float>(row + i) - mv), D);
  if (i < n) {
    V e = cpu::vexp(cpu::load_first<float>(row + i, n - i) - mv);
    for (int64_t j = n - i; j < cpu::kVecLanes; ++j) e[j] = 0.0f;
    acc += __builtin_convertvector(e, D);
  }
  return {m, std::log(cpu::hsum(acc))};
}
// exp(row - lse) * scale over a row, float by vexp, double by std::exp.
template <class T>
void softmax_scaled(const T* row, T lse, T scale, int64_t n, T* out) {
  if constexpr (std::is_same_v<T, float>) {
    using V = cpu::Vec<float>;
    const V lv = cpu::splat<V>(lse);
    int64_t i = 0;
    for (; i + cpu::kVecLanes <= n; i += cpu::kVecLanes)
      cpu::storeu(out + i, cpu::vexp(cpu::loadu<float>(row + i) - lv) * scale);
    if (i < n) cpu::store_first(out + i, cpu::vexp(cpu::load_first<float>(row + i, n - i) - lv) * scale, n - i);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = std::exp(row[i] - lse) * scale;
  }
}
}  // namespace

Tensor log_softmax(const Tensor& x, int64_t dim) {
  OpScope scope(OpId::log_softmax, {&x});
  MG_CHECK(x.defined(), "[log_softmax] got an undefined tensor");
  MG_CHECK(is_floating(x.dtype()), "[log_softmax] expects a floating tensor, got {}", x.dtype());
  MG_CHECK(x.dim() > 0, "[log_softmax] needs at least one dim");
  int64_t d = wrap_dim(dim, x.dim(), "log_softmax");
  // Move `dim` last, work on contiguous rows, move it back.
  Tensor xt = contiguous(transpose(x.detach(), d, -1));
  const int64_t n = xt.size(-1), rows = xt.numel() / std::max<int64_t>(n, 1);
  Tensor yt = Tensor::empty(xt.shape(), x.dtype(), x.device(), "log_softmax");
  if (x.device().is_cuda()) {
    cuda::log_softmax_rows(x.dtype(), xt.raw_data(), yt.raw_data(), rows, n, x.device().index);
  } else {
    MG_DISPATCH_FLOAT(x.dtype(), "log_softmax", [&] {
      const scalar_t* px = xt.data<scalar_t>();
      scalar_t* py = yt.data<scalar_t>();
      parallel_for(rows, n, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const scalar_t* row = px + r * n;
          const RowLse<scalar_t> lse = row_logsumexp(row, n);
          const scalar_t ls = (scalar_t)lse.log_sum;
          for (int64_t i = 0; i < n; ++i) py[r * n + i] = (row[i] - lse.max) - ls;
        }
      });
    });
  }
  Tensor out = contiguous(transpose(yt, d, -1));
  record(OpId::log_softmax, {x}, {&out}, [so = SavedTensor(out, OpId::log_softmax), d](const VjpArgs& g) {
    Tensor y = so.get();  // dx = g - softmax * sum(g)
    return std::vector<Tensor>{sub(g[0], mul(exp(y), sum(g[0], {d}, true)))};
  });
  return out;
}

namespace {
void check_ce(const char* op, const Tensor& logits, const Tensor& targets) {
  MG_CHECK(logits.defined() && targets.defined(), "[{}] got an undefined tensor", op);
  MG_CHECK(logits.dim() == 2, "[{}] logits must be (N, C), got {} (flatten the leading dims first)", op,
           logits.shape());
  MG_CHECK(is_floating(logits.dtype()), "[{}] logits must be floating, got {}", op, logits.dtype());
  // (With no class every target would have to be ignore_index, and each row's log-sum-exp is of nothing.)
  MG_CHECK(logits.size(1) > 0, "[{}] logits need at least one class (got shape {})", op, logits.shape());
  MG_CHECK(targets.dtype() == DType::i64, "[{}] targets must be int64, got {}", op, targets.dtype());
  MG_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
           "[{}] targets must be ({},) to match logits {}, got {}", op, logits.size(0), logits.shape(),
           targets.shape());
  MG_CHECK(logits.device() == targets.device(), "[{}] logits are on {} but targets on {}", op, logits.device(),
           targets.device());
}
void check_targets(const char* op, const Tensor& tc, int64_t C, int64_t ignore_index) {
  const int64_t* pt = tc.data<int64_t>();
  for (int64_t i = 0; i < tc.numel(); ++i)
    MG_CHECK(pt[i] == ignore_index || (pt[i] >= 0 && pt[i] < C),
             "[{}] target {} at position {} is out of range for {} classes (valid: 0 to {}, or ignore_index {})", op,
             pt[i], i, C, C - 1, ignore_index);
}
}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  OpScope scope(OpId::cross_entropy, {&logits, &targets});
  check_ce("cross_entropy", logits, targets);
  const Device dev = logits.device();
  const int64_t N = logits.size(0), C = logits.size(1);
  Tensor x = contiguous(logits.detach());
  Tensor tc = contiguous(targets);
  Tensor targets_host = dev.is_cpu() ? tc : to_device(tc, kCPU);
  check_targets("cross_entropy", targets_host, C, ignore_index);
  const int64_t* pt = targets_host.data<int64_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) count += pt[i] != ignore_index;
  Tensor lse = Tensor::empty({N}, x.dtype(), dev, "cross_entropy");  // saved: the vjp needs softmax = exp(x - lse)
  Tensor out;
  if (dev.is_cuda()) {
    out = Tensor::empty({}, x.dtype(), dev, "cross_entropy");
    cuda::cross_entropy_forward(x.dtype(), x.raw_data(), tc.data<int64_t>(), N, C, ignore_index, count, lse.raw_data(),
                                out.raw_data(), dev.index);
  } else {
    double total = 0;
    MG_DISPATCH_FLOAT(x.dtype(), "cross_entropy", [&] {
      const scalar_t* px = x.data<scalar_t>();
      scalar_t* pl = lse.data<scalar_t>();
      std::vector<double> row_loss(N, 0.0);
      parallel_for(N, C, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const scalar_t* row = px + r * C;
          const RowLse<scalar_t> lse = row_logsumexp(row, C);
          pl[r] = lse.value();
          if (pt[r] != ignore_index) row_loss[r] = ((double)lse.max - (double)row[pt[r]]) + lse.log_sum;
        }
      });
      for (int64_t r = 0; r < N; ++r) total += row_loss[r];  // in order: deterministic
    });
    // Mean over counted targets; with none counted the loss is NaN, as in PyTorch.
    out = scalar_tensor(count ? total / (double)count : std::nan(""), x.dtype());
  }
  record(OpId::cross_entropy, {logits, targets}, {&out},
         [sx = SavedTensor(x, OpId::cross_entropy), lse = kept_for_backward(lse, OpId::cross_entropy),
          st = SavedTensor(targets, OpId::cross_entropy), tc, count, ignore_index](const VjpArgs& g) {
           // The caller's targets are version-checked (as PyTorch does): tc is their storage when they are
           // contiguous, the vjp writes at d[target], and the count was taken from them.
           st.get();
           Tensor x = sx.get();
           const int64_t N = x.size(0), C = x.size(1);
           Tensor dx = Tensor::empty({N, C}, x.dtype(), x.device(), "cross_entropy");
           if (x.device().is_cuda()) {  // reads the loss gradient on the device: no sync
             Tensor gl = contiguous(g[0]);
             cuda::cross_entropy_backward(x.dtype(), x.raw_data(), lse.raw_data(), tc.data<int64_t>(), gl.raw_data(), N,
                                          C, ignore_index, count, dx.raw_data(), x.device().index);
             return std::vector<Tensor>{dx, Tensor()};
           }
           MG_DISPATCH_FLOAT(x.dtype(), "cross_entropy", [&] {
             const scalar_t* px = x.data<scalar_t>();
             const scalar_t* pl = lse.data<scalar_t>();
             const int64_t* pt = tc.data<int64_t>();
             scalar_t* pd = dx.data<scalar_t>();
             const scalar_t scale = count ? (scalar_t)(g[0].item() / (double)count) : scalar_t(0);
             parallel_for(N, C, [&](int64_t b, int64_t e) {
               for (int64_t r = b; r < e; ++r) {
                 scalar_t* d = pd + r * C;
                 if (pt[r] == ignore_index) {
                   std::fill(d, d + C, scalar_t(0));
                   continue;
                 }
                 softmax_scaled(px + r * C, pl[r], scale, C, d);
                 d[pt[r]] -= scale;
               }
             });
           });
           return std::vector<Tensor>{dx, Tensor()};
         });
  return out;
}

Tensor cross_entropy_reference(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_ce("cross_entropy_reference", logits, targets);
  const int64_t N = logits.size(0), C = logits.size(1);
  Tensor tc = contiguous(to_device(targets, kCPU));
  check_targets("cross_entropy_reference", tc, C, ignore_index);
  // A one-hot mask of the counted targets (a constant), then -sum(mask * (x - lse)) / count, with the
  // log-sum-exp composed here from max, sub, exp, sum and log (not log_softmax: the fused op shares
  // row_logsumexp with it). The shift by the row max is a constant: lse does not depend on it.
  std::vector<double> mask(N * C, 0.0);
  const int64_t* pt = tc.data<int64_t>();
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r)
    if (pt[r] != ignore_index) mask[r * C + pt[r]] = 1.0, ++count;
  Tensor m = to_dtype(from_vector<double>(mask, {N, C}, logits.device()), logits.dtype());
  Tensor shift = max(logits, 1, true).first.detach();                     // (N, 1)
  Tensor lse = add(log(sum(exp(sub(logits, shift)), {1}, true)), shift);  // (N, 1)
  return mul_scalar(sum(mul(sub(logits, lse), m)), -1.0 / (double)count);
}

void register_softmax_gradchecks(GradcheckRegistry& r) {
  r.add({OpId::log_softmax, "dim -1",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({3, 5}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); }});
  r.add({OpId::log_softmax, "dim 0 of 3-D",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({4, 2, 3}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); }});
  r.add({OpId::cross_entropy, "with an ignored target",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({4, 6}, g, d), from_vector<int64_t>({1, -100, 5, 0}, {4}, d)};
         },
         [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); }});
}

}  // namespace mg
