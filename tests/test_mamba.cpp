// The Mamba LM: parameter names and shapes (Hugging Face's), initialisation (docs/design.md#initialisation),
// parameter counts, gradients reaching every parameter, and the recurrent step against the full
// forward.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>

#include "autograd/grad_mode.h"
#include "models/mamba.h"
#include "tests/check.h"

using namespace mg;

namespace {
// The parameter count of docs/design.md#the-mamba-block, written out from the weight shapes of
// docs/design.md#checkpoints-and-the-run-folder.
int64_t documented_param_count(int64_t V, int64_t d, int64_t L, int64_t n = 16, int64_t k = 4) {
  int64_t di = 2 * d, R = (d + 15) / 16;
  int64_t layer = 2 * di * d + di * k + di + (R + 2 * n) * di + di * R + di + di * n + di + d * di + d;
  return V * d + L * layer + d;
}
}  // namespace

TEST_CASE("mamba: presets have the documented sizes and parameter counts") {
  MambaLM tiny(MambaConfig::preset("tiny"));
  MambaLM small(MambaConfig::preset("small"));
  CHECK(tiny.num_parameters() == documented_param_count(256, 64, 2));
  CHECK(small.num_parameters() == documented_param_count(256, 256, 4));
  CHECK(small.config().d_model == 256);
  CHECK(small.config().n_layer == 4);
  CHECK(MambaConfig::preset("base").d_model == 512);
  CHECK(MambaConfig::preset("base").n_layer == 8);
  CHECK(tiny.num_parameters() > 60000);
  CHECK(tiny.num_parameters() < 150000);
  CHECK_THROWS_WITH_AS(MambaConfig::preset("huge"), "[config] unknown preset 'huge' (valid: tiny, small, base)", Error);
}

TEST_CASE("mamba: parameter names and shapes are Hugging Face's") {
  MambaConfig c = MambaConfig::preset("tiny");
  MambaLM m(c);
  std::map<std::string, Shape> got;
  for (auto& [name, t] : m.state_dict()) got[name] = t.shape();
  const int64_t di = 128, R = 4, n = 16;
  std::map<std::string, Shape> want{{"backbone.embeddings.weight", {256, 64}}, {"backbone.norm_f.weight", {64}}};
  for (int i = 0; i < 2; ++i) {
    std::string p = "backbone.layers." + std::to_string(i) + ".";
    want[p + "norm.weight"] = {64};
    want[p + "mixer.in_proj.weight"] = {2 * di, 64};
    want[p + "mixer.conv1d.weight"] = {di, 1, 4};
    want[p + "mixer.conv1d.bias"] = {di};
    want[p + "mixer.x_proj.weight"] = {R + 2 * n, di};
    want[p + "mixer.dt_proj.weight"] = {di, R};
    want[p + "mixer.dt_proj.bias"] = {di};
    want[p + "mixer.A_log"] = {di, n};
    want[p + "mixer.D"] = {di};
    want[p + "mixer.out_proj.weight"] = {64, di};
  }
  CHECK(got == want);
  // Weight decay on matrices only.
  for (auto& p : m.named_parameters()) {
    bool matrix = p.name.find("proj.weight") != std::string::npos || p.name.find("conv1d.weight") != std::string::npos;
    INFO(p.name);
    CHECK(p.decay == matrix);
  }
}

TEST_CASE("mamba: initialisation follows the official code") {
  MambaConfig c = MambaConfig::preset("small");
  MambaLM m(c, 3);
  auto& mix = *m.layers[1]->mixer;
  const int64_t di = c.d_inner(), n = c.d_state, R = c.rank();
  auto alog = mix.A_log.to_vector<float>();
  for (int64_t ch = 0; ch < di; ch += 37)
    for (int64_t k = 0; k < n; ++k) CHECK(alog[ch * n + k] == doctest::Approx(std::log(k + 1.0)));
  for (float d : mix.D.to_vector<float>()) CHECK(d == 1.0f);
  // softplus(dt bias) recovers dt in [1e-3, 1e-1].
  for (float b : mix.dt_proj->bias.to_vector<float>()) {
    double dt = std::log1p(std::exp((double)b));
    CHECK(dt >= 1e-3 * 0.999);
    CHECK(dt <= 1e-1 * 1.001);
  }
  double s = 1.0 / std::sqrt((double)R), wmax = 0;
  for (float w : mix.dt_proj->weight.to_vector<float>()) wmax = std::max(wmax, (double)std::abs(w));
  CHECK(wmax <= s);
  CHECK(wmax > 0.9 * s);
  double omax = 0, bound = 1.0 / std::sqrt((double)di) / std::sqrt((double)c.n_layer);
  for (float w : mix.out_proj->weight.to_vector<float>()) omax = std::max(omax, (double)std::abs(w));
  CHECK(omax <= bound);
  CHECK(omax > 0.9 * bound);
  auto e = m.embeddings->weight.to_vector<float>();
  double ss = 0;
  for (float v : e) ss += (double)v * v;
  CHECK_REL(std::sqrt(ss / e.size()), 0.02, 0.03);  // 65,536 draws: about 0.3% of standard error
  for (float w : m.norm_f->weight.to_vector<float>()) CHECK(w == 1.0f);
  // Same seed, same model; another seed, another model.
  MambaLM m2(c, 3), m3(c, 4);
  CHECK(m2.layers[0]->mixer->in_proj->weight.to_vector<float>() ==
        m.layers[0]->mixer->in_proj->weight.to_vector<float>());
  CHECK(m3.layers[0]->mixer->in_proj->weight.to_vector<float>() !=
        m.layers[0]->mixer->in_proj->weight.to_vector<float>());
}

TEST_CASE("mamba: the initial loss is near ln(256) and every parameter gets a gradient") {
  MambaLM m(MambaConfig::preset("tiny"), 1);
  Generator g(5);
  Tensor tokens = randint(0, 256, {2, 32}, &g), targets = randint(0, 256, {2, 32}, &g);
  Tensor loss = m.loss(tokens, targets);
  CHECK(loss.item() == doctest::Approx(std::log(256.0)).epsilon(0.02));
  loss.backward();
  for (auto& p : m.named_parameters()) {
    INFO(p.name);
    REQUIRE(p.tensor.grad().defined());
    double ss = 0;
    for (float v : p.tensor.grad().to_vector<float>()) ss += (double)v * v;
    CHECK(ss > 0);
    CHECK(std::isfinite(ss));
  }
}

TEST_CASE("mamba: stepping through 300 tokens gives the full forward's logits") {
  MambaConfig c = MambaConfig::preset("tiny");
  MambaLM m(c, 2);
  Generator g(9);
  // Train-like weights rather than the init: perturb every parameter so no path is trivially zero.
  {
    NoGradGuard ng;
    for (auto& p : m.named_parameters())
      if (p.name.find("A_log") == std::string::npos) p.tensor.add_(randn(p.tensor.shape(), DType::f32, &g), 0.05);
  }
  const int64_t b = 2, l = 300;
  Tensor tokens = randint(0, 256, {b, l}, &g);
  Tensor full = m.forward(tokens);  // (b, l, V)
  auto state = m.initial_state(b);
  auto fv = full.to_vector<float>();
  double max_err = 0, max_ref = 0;
  for (int64_t t = 0; t < l; ++t) {
    Tensor step_logits = m.step(contiguous(narrow(tokens, 1, t, 1).reshape({b})), state);  // (b, V)
    auto sv = step_logits.to_vector<float>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t v = 0; v < 256; ++v) {
        double ref = fv[(i * l + t) * 256 + v];
        max_err = std::max(max_err, std::abs(sv[i * 256 + v] - ref));
        max_ref = std::max(max_ref, std::abs(ref));
      }
  }
  INFO("max abs error " << max_err << " over logits up to " << max_ref);
  CHECK(max_err / max_ref < 1e-5);
}

TEST_CASE("mamba: config.json round-trips and bad configs are named") {
  MambaConfig c = MambaConfig::preset("small");
  c.dt_rank = 7;
  MambaConfig back = MambaConfig::from_json(c.to_json(), "config.json");
  CHECK(back.d_model == 256);
  CHECK(back.rank() == 7);
  CHECK(back.n_layer == 4);
  CHECK_THROWS_WITH_AS(MambaConfig::from_json("{\"hidden_size\": 4}", "x/config.json"),
                       "[config] x/config.json has no \"num_hidden_layers\"", Error);
  CHECK_THROWS_WITH_AS(MambaConfig::from_json("{", "x/config.json"),
                       doctest::Contains("[config] x/config.json is not valid JSON"), Error);
  MambaConfig bad = c;
  bad.d_state = 0;
  CHECK_THROWS_WITH_AS(MambaLM{bad}, "[config] d_state must be at least 1, got 0", Error);
}

TEST_CASE("mamba: load_state_dict refuses integer and non-finite weights, naming the tensor and the file") {
  MambaLM m(MambaConfig::preset("tiny"), 1);
  MambaLM other(MambaConfig::preset("tiny"), 2);
  const std::string a_log = "backbone.layers.0.mixer.A_log";
  auto fresh = [&] {  // the other model's weights, as copies
    std::vector<std::pair<std::string, Tensor>> sd;
    for (auto& [name, t] : other.state_dict()) sd.push_back({name, clone(t.detach())});
    return sd;
  };
  auto set = [&](std::vector<std::pair<std::string, Tensor>>& sd, const std::string& name, Tensor t) {
    for (auto& [n, v] : sd)
      if (n == name) v = t;
  };
  const std::vector<float> before = m.state_dict()[0].second.to_vector<float>();
  std::map<std::string, Tensor> mine;
  for (auto& [name, t] : m.state_dict()) mine[name] = t;
  const Shape a_shape = mine.at(a_log).shape();  // (128, 16)

  // An integer tensor was cast to float silently.
  auto sd = fresh();
  set(sd, a_log, ones(a_shape, DType::i64));
  CHECK_THROWS_WITH_AS(m.load_state_dict(sd, "runs/x/model.safetensors"),
                       "[load] tensor 'backbone.layers.0.mixer.A_log' in runs/x/model.safetensors is int64, but the "
                       "parameter is float32: weights must be float32 or float64 (F32 or F64); the file is not a "
                       "checkpoint of this model",
                       Error);

  // NaN and inf weights loaded, and generation printed garbage.
  sd = fresh();
  std::vector<float> v = mine.at(a_log).to_vector<float>();
  v[17] = std::nanf(""), v[20] = INFINITY, v[300] = std::nanf("");
  set(sd, a_log, from_vector<float>(v, a_shape));
  CHECK_THROWS_WITH_AS(m.load_state_dict(sd, "runs/x/model.safetensors"),
                       "[load] tensor 'backbone.layers.0.mixer.A_log' in runs/x/model.safetensors has 3 non-finite "
                       "values (first NaN at flat index 17); the checkpoint is damaged",
                       Error);
  sd = fresh();
  set(sd, "backbone.norm_f.weight", full({64}, -INFINITY));
  CHECK_THROWS_WITH_AS(
      m.load_state_dict(sd, "ckpt"),
      doctest::Contains("'backbone.norm_f.weight' in ckpt has 64 non-finite values (first -inf at flat "
                        "index 0)"),
      Error);
  // float64 is accepted, but a value beyond float32's range would become inf.
  sd = fresh();
  std::vector<double> d(64, 1.0);
  d[5] = 1e300;
  set(sd, "backbone.norm_f.weight", from_vector<double>(d, {64}));
  CHECK_THROWS_WITH_AS(
      m.load_state_dict(sd, "ckpt"),
      doctest::Contains("has 1 non-finite value (first 1e+300, beyond float32's range, at flat index 5)"), Error);
  // Nothing was written by the refused loads.
  CHECK(m.state_dict()[0].second.to_vector<float>() == before);

  d[5] = 2.5;
  set(sd, "backbone.norm_f.weight", from_vector<double>(d, {64}));
  m.load_state_dict(sd, "ckpt");
  CHECK(mine.at("backbone.norm_f.weight").to_vector<float>()[5] == 2.5f);
  CHECK(mine.at("backbone.norm_f.weight").dtype() == DType::f32);
  CHECK(m.state_dict()[0].second.to_vector<float>() == other.state_dict()[0].second.to_vector<float>());
}

TEST_CASE("mamba: a config whose sizes overflow int64 is refused") {
  MambaConfig c = MambaConfig::preset("tiny");
  c.d_model = int64_t(1) << 62;
  CHECK_THROWS_WITH_AS(c.validate(),
                       "[config] d_inner = expand * d_model overflows int64: 2 * 4611686018427387904 is out of range "
                       "(int64 holds at most 9223372036854775807)",
                       Error);
  c = MambaConfig::preset("tiny");
  c.vocab_size = std::numeric_limits<int64_t>::max();
  CHECK_THROWS_WITH_AS(c.validate(),
                       doctest::Contains("[config] vocab_size + 7 (for the padded vocabulary) overflows int64"), Error);
}

TEST_CASE("mamba: a sequence in pieces with the states passed along gives the loss and gradients of one call") {
  MambaLM m(MambaConfig::preset("tiny"), 3);
  Generator g(5);
  const int64_t b = 2, L = 40;
  Tensor tokens = randint(0, 256, {b, L}, &g), targets = randint(0, 256, {b, L}, &g);
  auto grads = [&] {
    std::vector<std::vector<float>> out;
    for (auto& p : m.named_parameters()) out.push_back(p.tensor.grad().to_vector<float>());
    return out;
  };
  auto zero = [&] {
    for (auto& p : m.named_parameters()) p.tensor.zero_grad();
  };
  Tensor whole = m.loss(tokens, targets);
  whole.backward();
  const auto want = grads();
  // Pieces of 13, 1, 2 and 24 tokens: shorter than the conv's window too (d_conv - 1 = 3).
  for (bool detach : {false, true}) {
    zero();
    std::vector<LayerState> state, next;
    Tensor total;
    int64_t at = 0;
    for (int64_t len : {13, 1, 2, 24}) {
      Tensor l = m.loss(narrow(tokens, 1, at, len), narrow(targets, 1, at, len), state, next);
      REQUIRE(next.size() == 2);
      CHECK(next[0].conv.shape() == Shape{b, 128, 3});
      CHECK(next[0].ssm.shape() == Shape{b, 128, 16});
      Tensor part = mul_scalar(l, (double)len / L);
      total = total.defined() ? add(total, part) : part;
      state = next;
      if (detach)
        for (auto& s : state) s.conv = s.conv.detach(), s.ssm = s.ssm.detach();
      at += len;
    }
    CHECK(std::abs(total.item() - whole.item()) < 1e-5 * std::abs(whole.item()));  // the same values either way
    total.backward();
    const auto got = grads();
    double err = 0, ref = 0;
    for (size_t i = 0; i < want.size(); ++i)
      for (size_t j = 0; j < want[i].size(); ++j) {
        err = std::max(err, (double)std::abs(got[i][j] - want[i][j]));
        ref = std::max(ref, (double)std::abs(want[i][j]));
      }
    CAPTURE(detach);
    if (detach)
      CHECK(err > 1e-2 * ref);  // cutting the graph at each piece changes the gradients: the states carry them
    else
      CHECK(err < 2e-5 * ref);
  }
  zero();
  std::vector<LayerState> bad = {LayerState{zeros({b, 128, 3}), zeros({b, 128, 16})}}, out;
  check_error(
      [&] { m.loss(tokens, targets, bad, out); },
      {"[mamba] the initial state must hold 2 layers of conv (2, 128, 3) and ssm (2, 128, 16)", "got 1 layers"});
}
