#include "ops/cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/adamw_element.h"
#include "core/parallel.h"

namespace mg::cpu {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double decay, double beta1, double beta2, double step_size,
                  double bc2_sqrt, double eps) {
  const AdamWCoefficients<T> c{(T)decay,     (T)(1.0 - beta1), (T)beta2, (T)(1.0 - beta2),
                               (T)step_size, (T)bc2_sqrt,      (T)eps};
  parallel_for(n, 8, [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i) adamw_element(p[i], g[i], m[i], v[i], c);
  });
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(nb, 0.0);
  parallel_for(nb, kBlock, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      int64_t lo = blk * kBlock, hi = std::min(n, lo + kBlock);
      double s = 0.0;
      for (int64_t i = lo; i < hi; ++i) s += (double)x[i] * (double)x[i];
      partial[blk] = s;
    }
  });
  double s = 0.0;
  for (double v : partial) s += v;
  return s;
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t, double, double, double, double, double,
                                  double);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t, double, double, double, double,
                                   double, double);
template double sum_squares<float>(const float*, int64_t);
template double sum_squares<double>(const double*, int64_t);

}  // namespace mg::cpu
