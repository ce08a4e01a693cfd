// Helpers for tests: comparisons (|a - b| <= atol + rtol * |b| elementwise, printing the first
// mismatches), the expected error of a call, and whole files as bytes.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace mg {

// |got - want| <= tol |want| (got == want where want is 0): relative at every magnitude, which doctest's
// Approx is not for values below 1 (its default scale adds 1 to the bound, so epsilon(e) is about e
// absolute there). CHECK_REL prints both values.
inline bool rel_close(double got, double want, double tol) {
  return got == want || std::abs(got - want) <= tol * std::abs(want);
}
#define CHECK_REL(got, want, tol)                      \
  CHECK_MESSAGE(::mg::rel_close((got), (want), (tol)), \
                "got " << std::setprecision(17) << (got) << ", want " << (want) << ", relative tolerance " << (tol))

// |got - want| for the comparisons below: 0 where they are equal (infinities of one sign included), infinite
// where either is NaN. (std::max(m, NaN) keeps m: a NaN result, such as memory a kernel never wrote, which the
// CUDA emulator fills with NaN, must fail a comparison instead of vanishing from it.)
inline double elem_diff(double got, double want) {
  if (got == want) return 0;
  const double d = std::abs(got - want);
  return std::isnan(d) ? INFINITY : d;
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, elem_diff(a[i], b[i]));
  return m;
}

inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b, double floor) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double r = elem_diff(a[i], b[i]) / std::max(std::abs(b[i]), floor);
    m = std::max(m, std::isnan(r) ? INFINITY : r);  // NaN where b is: the scale is NaN too
  }
  return m;
}

// max |got - want| / max |want| over the whole tensor (the relative error of a result, docs/design.md#tolerances).
inline double rel_err(const Tensor& got, const Tensor& want) {
  auto g = got.to(DType::f64).to_vector<double>(), w = want.to(DType::f64).to_vector<double>();
  REQUIRE(g.size() == w.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    num = std::max(num, elem_diff(g[i], w[i]));
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

// Checks that `what` throws mg::Error whose message contains every one of `parts`; returns the message.
template <class F>
std::string check_error(F&& what, const std::vector<std::string>& parts) {
  try {
    what();
    FAIL("expected an mg::Error containing '" << parts.front() << "'");
  } catch (const mg::Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
    return msg;
  }
  return {};
}

// A whole file's bytes ("" when it cannot be read), and a file made of `bytes`.
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), (std::streamsize)bytes.size());
}

// Damages the file at `path` in place: its byte at `at` xor `mask`.
inline void xor_byte(const std::string& path, size_t at, uint8_t mask) {
  std::string bytes = read_bytes(path);
  REQUIRE(at < bytes.size());
  bytes[at] ^= (char)mask;
  write_bytes(path, bytes);
}

}  // namespace mg
