// The whole-model PyTorch fixture (tests/fixtures/mamba_fixture.bin, written by
// tests/reference/make_mamba_fixture.py): its config, tokens, targets, weights, logits, loss and
// every gradient (float64), and the error measures the model tests compare with.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/mamba.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/fixture.h"

namespace mg::test {

struct MambaFixture {
  std::map<std::string, Tensor> arrays;
  MambaConfig cfg;
  Tensor tokens, targets;  // int64 (b, l)

  MambaFixture() : arrays(load_mamba_fixture()) {
    auto c = at("config").to_vector<double>();
    REQUIRE(c.size() == 8);
    cfg.vocab_size = (int64_t)c[0], cfg.d_model = (int64_t)c[1], cfg.n_layer = (int64_t)c[2];
    cfg.d_state = (int64_t)c[3], cfg.d_conv = (int64_t)c[4], cfg.expand = (int64_t)c[5];
    cfg.dt_rank = (int64_t)c[6], cfg.norm_eps = c[7];
    tokens = at("tokens").to(DType::i64);
    targets = at("targets").to(DType::i64);
  }
  const Tensor& at(const std::string& name) const {
    auto it = arrays.find(name);
    MG_CHECK(it != arrays.end(), "[fixture] mamba_fixture.bin has no array '{}'", name);
    return it->second;
  }
  // A float32 model (on the CPU) holding the fixture's weights (converted from float64).
  std::unique_ptr<MambaLM> model() const {
    auto m = std::make_unique<MambaLM>(cfg, 0);
    std::vector<std::pair<std::string, Tensor>> sd;
    for (auto& [name, t] : m->state_dict()) sd.push_back({name, at("param." + name).to(DType::f32)});
    m->load_state_dict(sd, "mamba_fixture.bin");
    return m;
  }
};

struct FixtureErr {
  double max_abs = 0;    // max |got - want|
  double max_ref = 0;    // max |want|
  double worst_rel = 0;  // max |got - want| / (|want| + floor), floor = 1e-3 * max |want|
  int64_t worst_at = -1;
  double normwise() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

// `got` on any device, `want` a fixture array.
inline FixtureErr compare_to_fixture(const Tensor& got, const Tensor& want) {
  auto g = got.to(kCPU).to(DType::f64).to_vector<double>(), w = want.to_vector<double>();
  REQUIRE(g.size() == w.size());
  FixtureErr e;
  for (double v : w) e.max_ref = std::max(e.max_ref, std::abs(v));
  const double floor = 1e-3 * e.max_ref;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = elem_diff(g[i], w[i]);  // infinite at a NaN
    e.max_abs = std::max(e.max_abs, d);
    const double r = std::isnan(w[i]) ? INFINITY : d / (std::abs(w[i]) + floor);
    if (r > e.worst_rel) e.worst_rel = r, e.worst_at = (int64_t)i;
  }
  return e;
}

}  // namespace mg::test
