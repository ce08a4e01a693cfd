// sample_tokens: the next token of each sequence from its logits, on the logits' device. Not an
// autograd op (its output is an index). The rule, the same on every device:
//   keep the top_k largest of the first `vocab` entries (all when top_k is 0, the largest alone when
//   temperature is 0), ordered by value descending and, on ties, by index ascending; give the kept
//   entry k the weight p_k = exp((l_k - l_0) / temperature) (in double); with top_p < 1 keep, of
//   those, the entries whose predecessors' weights sum to less than top_p * sum p (the smallest prefix
//   holding top_p of the probability: nucleus sampling, as Hugging Face's and the official Mamba code's
//   top_p, applied after top_k); with u the row's uniform draw in [0, 1) and r = u * (the kept weights'
//   sum), walk the kept entries in order and pick the first with r < p_k (r -= p_k otherwise; the last
//   one when rounding runs past the end).
// Infinities, the same on every device: a +inf among the kept entries outweighs every finite one, so the
//   first kept +inf (the lowest index among the +inf) is picked, whatever the draw (its weight would be
//   exp(inf - inf) = NaN). A row whose kept entries are all -inf (then all of its entries are) has no
//   distribution to draw from: PyTorch's torch.multinomial (and so Hugging Face's sampling) raises on
//   its probabilities, which are NaN; here it gives -1, as a row holding NaN does (generate raises on it).
//   Greedy (temperature 0) takes the first of the largest as torch.argmax does: 0 for an all -inf row.
// On CUDA one kernel does all rows (cuda/sample.cu), so decoding never copies logits to the host;
// only the picks (b int64) come back, and the uniform draws (b double) go over.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/dispatch.h"
#include "core/sample_pick.h"
#include "cuda/kernels.h"
#include "ops/ops.h"

namespace mg {

namespace {

template <class T>
int64_t pick_row(const T* l, int64_t vocab, double temperature, int64_t keep, double top_p, double u,
                 std::vector<int64_t>& idx, std::vector<double>& p) {
  for (int64_t i = 0; i < vocab; ++i)
    if (std::isnan((double)l[i])) return -1;
  if (temperature == 0) return std::max_element(l, l + vocab) - l;  // the first of the largest
  idx.resize(vocab);
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                    [&](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  p.resize(keep);
  for (int64_t k = 0; k < keep; ++k) p[k] = (double)l[idx[k]];
  return pick_ranked(p.data(), idx.data(), keep, temperature, top_p, u);
}

}  // namespace

Tensor sample_tokens(const Tensor& logits, int64_t vocab, double temperature, int64_t top_k,
                     const std::vector<double>& uniforms, double top_p) {
  MG_CHECK(logits.defined() && logits.dim() == 2 && is_floating(logits.dtype()),
           "[sample] logits must be a floating (batch, vocab) tensor, got {} {}", logits.dtype(), logits.shape());
  const int64_t b = logits.size(0), V = logits.size(1);
  MG_CHECK(vocab >= 1 && vocab <= V, "[sample] vocab must be from 1 to the logits' {} columns, got {}", V, vocab);
  MG_CHECK(std::isfinite(temperature) && temperature >= 0, "[sample] temperature must be >= 0 and finite, got {}",
           temperature);
  MG_CHECK(top_k >= 0, "[sample] top_k must be >= 0 (0: no cut), got {}", top_k);
  MG_CHECK(top_p > 0 && top_p <= 1, "[sample] top_p must be in (0, 1] (1: no cut), got {}", top_p);
  MG_CHECK(temperature == 0 || (int64_t)uniforms.size() == b,
           "[sample] needs one uniform draw per row: {} rows, {} draws", b, uniforms.size());
  for (double u : uniforms) MG_CHECK(u >= 0 && u < 1, "[sample] uniform draws must be in [0, 1), got {}", u);
  const int64_t keep = temperature == 0 ? 1 : top_k > 0 ? std::min(top_k, vocab) : vocab;
  const Device dev = logits.device();
  Tensor l = logits.detach();
  if (l.stride(1) != 1) l = contiguous(l);
  Tensor out = Tensor::empty({b}, DType::i64, dev, "sample");
  if (dev.is_cuda()) {
    Tensor u = temperature == 0 ? Tensor() : from_vector<double>(uniforms, {b}, dev);  // greedy draws nothing
    cuda::sample_rows(l.dtype(), l.raw_data(), b, l.stride(0), vocab, temperature, keep, top_p,
                      u.defined() ? u.data<double>() : nullptr, out.data<int64_t>(), dev.index);
    return out;
  }
  MG_DISPATCH_FLOAT(l.dtype(), "sample", [&] {
    std::vector<int64_t> idx;
    std::vector<double> p;
    const scalar_t* pl = l.data<scalar_t>();
    int64_t* po = out.data<int64_t>();
    for (int64_t r = 0; r < b; ++r)
      po[r] =
          pick_row(pl + r * l.stride(0), vocab, temperature, keep, top_p, temperature == 0 ? 0.0 : uniforms[r], idx, p);
  });
  return out;
}

}  // namespace mg
