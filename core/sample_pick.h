// The last part of sample_tokens' rule (ops/sample.cpp states all of it), shared by the CPU loop and the
// CUDA kernel (cuda/sample.cu), so that both devices pick the same token from the same draw with the same
// double arithmetic: the kept entries, ranked, are weighed, cut to the nucleus and walked with the draw.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace mg {

// value[0 .. keep): the kept logits as doubles in rank order (value[0] the largest, none NaN), overwritten
// with their weights; index: their positions in the row; u: the row's uniform draw in [0, 1). Returns
// the picked position, or -1 for a row whose kept entries are all -inf.
MG_HD inline int64_t pick_ranked(double* value, const int64_t* index, int64_t keep, double temperature, double top_p,
                                 double u) {
  const double top = value[0];
  if (top == INFINITY) return index[0];  // the first kept +inf outweighs every finite entry
  if (top == -INFINITY) return -1;       // all -inf: nothing to draw from
  double total = 0;
  for (int64_t k = 0; k < keep; ++k) total += value[k] = std::exp((value[k] - top) / temperature);
  if (top_p < 1) {  // the nucleus: cut where the weights before an entry reach top_p of the total
    const double bound = top_p * total;
    double before = value[0];
    int64_t n = 1;
    while (n < keep && before < bound) before += value[n++];
    keep = n, total = before;
  }
  double r = u * total;
  for (int64_t k = 0; k < keep; ++k) {
    if (r < value[k]) return index[k];
    r -= value[k];
  }
  return index[keep - 1];  // rounding ran past the end
}

}  // namespace mg
