// The whole Mamba LM against a PyTorch fixture written from the math of docs/design.md in float64
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
#include "tests/mamba_fixture.h"

using namespace mg;

using test::MambaFixture;

TEST_CASE("mamba fixture: logits and loss match PyTorch (float64 reference, float32 model)") {
  MambaFixture fx;
  auto m = fx.model();
  Tensor logits = m->forward(fx.tokens);
  REQUIRE(logits.shape() == fx.at("logits").shape());
  test::FixtureErr e = test::compare_to_fixture(logits, fx.at("logits"));
  MESSAGE("logits: max abs error " << e.max_abs << " over values up to " << e.max_ref << " (normwise " << e.normwise()
                                   << ", worst elementwise rel " << e.worst_rel << " at " << e.worst_at << ")");
  CHECK(e.normwise() < 1e-5);
  CHECK(e.worst_rel < 5e-4);

  Tensor loss = m->loss(fx.tokens, fx.targets);
  const double want = fx.at("loss").item();
  MESSAGE("loss: " << loss.item() << " vs " << want << " (rel error " << std::abs(loss.item() - want) / want << ")");
  CHECK(std::abs(loss.item() - want) <= 1e-5 * want);
}

TEST_CASE("mamba fixture: every parameter's gradient matches PyTorch") {
  MambaFixture fx;
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
    test::FixtureErr e = test::compare_to_fixture(p.grad(), want);
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
  MambaFixture fx;
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
