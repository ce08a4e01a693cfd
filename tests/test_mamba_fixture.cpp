// The whole Mamba LM against a PyTorch fixture written from the SPEC's math in float64
// (tests/reference/make_mamba_fixture.py, the format of tests/fixture.h with the magic
// "MGMAMBFX"): the logits, the mean cross-entropy loss, and the gradient of every parameter, with
// the fixture's float64 weights loaded into the float32 model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "models/mamba.h"
#include "ops/ops.h"
#include "tests/fixture.h"

using namespace mg;

namespace {

struct Fixture {
  std::map<std::string, Tensor> arrays;
  MambaConfig cfg;
  Tensor tokens, targets;  // int64 (b, l)

  Fixture() : arrays(test::load_mamba_fixture()) {
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
  // A float32 model holding the fixture's weights (converted from float64).
  std::unique_ptr<MambaLM> model() const {
    auto m = std::make_unique<MambaLM>(cfg, 0);
    std::vector<std::pair<std::string, Tensor>> sd;
    for (auto& [name, t] : m->state_dict()) sd.push_back({name, at("param." + name).to(DType::f32)});
    m->load_state_dict(sd, "mamba_fixture.bin");
    return m;
  }
};

struct Err {
  double max_abs = 0;   // max |got - want|
  double max_ref = 0;   // max |want|
  double worst_rel = 0; // max |got - want| / (|want| + floor), floor = 1e-3 * max |want|
  int64_t worst_at = -1;
  double normwise() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

Err compare(const Tensor& got, const Tensor& want) {
  auto g = got.to(DType::f64).to_vector<double>(), w = want.to_vector<double>();
  Err e;
  for (double v : w) e.max_ref = std::max(e.max_ref, std::abs(v));
  const double floor = 1e-3 * e.max_ref;
  for (size_t i = 0; i < g.size(); ++i) {
    double d = std::abs(g[i] - w[i]);
    e.max_abs = std::max(e.max_abs, d);
    double r = d / (std::abs(w[i]) + floor);
    if (r > e.worst_rel) e.worst_rel = r, e.worst_at = (int64_t)i;
  }
  return e;
}

}  // namespace

TEST_CASE("mamba fixture: logits and loss match PyTorch (float64 reference, float32 model)") {
  Fixture fx;
  auto m = fx.model();
  Tensor logits = m->forward(fx.tokens);
  REQUIRE(logits.shape() == fx.at("logits").shape());
  Err e = compare(logits, fx.at("logits"));
  MESSAGE("logits: max abs error " << e.max_abs << " over values up to " << e.max_ref << " (normwise "
                                   << e.normwise() << ", worst elementwise rel " << e.worst_rel << " at "
                                   << e.worst_at << ")");
  CHECK(e.normwise() < 1e-5);
  CHECK(e.worst_rel < 5e-4);

  Tensor loss = m->loss(fx.tokens, fx.targets);
  const double want = fx.at("loss").item();
  MESSAGE("loss: " << loss.item() << " vs " << want << " (rel error " << std::abs(loss.item() - want) / want << ")");
  CHECK(std::abs(loss.item() - want) <= 1e-5 * want);
}

TEST_CASE("mamba fixture: every parameter's gradient matches PyTorch") {
  Fixture fx;
  auto m = fx.model();
  m->loss(fx.tokens, fx.targets).backward();
  int checked = 0;
  double worst = 0;
  std::string worst_name;
  for (auto& [name, p] : m->state_dict()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    const Tensor& want = fx.at("grad." + name);
    REQUIRE(p.grad().shape() == want.shape());
    Err e = compare(p.grad(), want);
    MESSAGE(name << ": max abs error " << e.max_abs << " over values up to " << e.max_ref << " (normwise "
                 << e.normwise() << ", worst elementwise rel " << e.worst_rel << " at " << e.worst_at << ")");
    REQUIRE(e.max_ref > 0);  // the fixture exercises every path
    CHECK(e.normwise() < 1e-4);
    CHECK(e.worst_rel < 1e-3);
    if (e.normwise() > worst) worst = e.normwise(), worst_name = name;
    ++checked;
  }
  MESSAGE("worst normwise gradient error " << worst << " (" << worst_name << ")");
  CHECK(checked == 2 + 10 * fx.cfg.n_layer);
}

TEST_CASE("mamba fixture: the recurrent step reproduces the fixture's logits") {
  Fixture fx;
  auto m = fx.model();
  const int64_t b = fx.tokens.size(0), l = fx.tokens.size(1), V = fx.cfg.vocab_size;
  auto want = fx.at("logits").to_vector<double>();
  auto state = m->initial_state(b);
  double max_err = 0, max_ref = 0;
  for (int64_t t = 0; t < l; ++t) {
    auto got = m->step(contiguous(narrow(fx.tokens, 1, t, 1).reshape({b})), state).to_vector<float>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t v = 0; v < V; ++v) {
        double ref = want[(i * l + t) * V + v];
        max_err = std::max(max_err, std::abs(got[i * V + v] - ref));
        max_ref = std::max(max_ref, std::abs(ref));
      }
  }
  MESSAGE("step logits: max abs error " << max_err << " over values up to " << max_ref);
  CHECK(max_err / max_ref < 1e-5);
}
