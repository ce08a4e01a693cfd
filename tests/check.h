// Comparison helpers for tests: |a - b| <= atol + rtol * |b| elementwise, printing the first mismatches.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace mg {

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b, double floor) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), floor));
  return m;
}

// max |got - want| / max |want| over the whole tensor (the relative error of a result, docs/design.md#tolerances).
inline double rel_err(const Tensor& got, const Tensor& want) {
  auto g = got.to(DType::f64).to_vector<double>(), w = want.to(DType::f64).to_vector<double>();
  REQUIRE(g.size() == w.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    num = std::max(num, std::abs(g[i] - w[i]));
    den = std::max(den, std::abs(w[i]));
  }
  return den > 0 ? num / den : num;
}

// True when every element of `got` is within atol + rtol * |want|; prints up to five mismatches.
inline bool check_close(const Tensor& got, const Tensor& want, double atol, double rtol, const std::string& what) {
  if (got.shape() != want.shape()) {
    MESSAGE(what << ": shape " << got.shape().str() << " != " << want.shape().str());
    return false;
  }
  auto g = got.to(DType::f64).to_vector<double>(), w = want.to(DType::f64).to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i])) continue;
    if (bad++ < 5) MESSAGE(what << ": element " << i << " got " << g[i] << " want " << w[i]);
  }
  if (bad) MESSAGE(what << ": " << bad << " of " << g.size() << " elements differ");
  return bad == 0;
}

}  // namespace mg
