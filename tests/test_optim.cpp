// Tests for train/optim.h: AdamW, gradient clipping and the LR schedule. Expected values are computed
// independently of the code under test (written-out numbers from the PyTorch formulas).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "autograd/grad_mode.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "core/error.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "io/safetensors.h"
#include "train/optim.h"

using namespace mg;
namespace fs = std::filesystem;
using mg::test::TempDir;

namespace {

Tensor leaf(const std::vector<double>& v, DType dt = DType::f64) {
  Tensor t = from_vector<double>(v, Shape{(int64_t)v.size()}).to(dt);
  t.requires_grad_();
  return t;
}

void set_grad_values(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(from_vector<double>(g, p.shape()).to(p.dtype()));
}

}  // namespace

// ================================================================ AdamW

TEST_CASE("train: AdamW two steps match the PyTorch AdamW formula, decay only in the decayed group") {
  // Expected values: torch.optim.AdamW's update written out in plain Python floats (lr 0.01, betas
  // (0.9, 0.95), eps 1e-8; weight decay 0.1 for p, 0 for q), grads g1 then g2 for both tensors.
  const std::vector<double> g1 = {0.1, -0.2, 0.3}, g2 = {-0.5, 0.4, 0.0};
  const std::vector<double> p_expected = {0.9939263295104882, -1.9896457398902383, 0.48222402318899188};
  const std::vector<double> q_expected = {0.29591532951148825, 0.20636626010926179, -0.11678647681067478};
  const std::vector<double> m_expected = {-0.041, 0.022, 0.027};        // 0.9 * 0.1 g1 + 0.1 g2
  const std::vector<double> v_expected = {0.012975, 0.0099, 0.004275};  // 0.95 * 0.05 g1^2 + 0.05 g2^2

  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    const double tol = dt == DType::f64 ? 1e-14 : 2e-6;
    Tensor p = leaf({1.0, -2.0, 0.5}, dt), q = leaf({0.3, 0.2, -0.1}, dt);
    AdamW opt({ParamGroup{{{"p", p}}, 0.1}, ParamGroup{{{"q", q}}, 0.0}}, 0.01);
    CHECK(opt.options().beta1 == 0.9);
    CHECK(opt.options().beta2 == 0.95);
    CHECK(opt.options().eps == 1e-8);
    for (const auto& g : {g1, g2}) {
      set_grad_values(p, g);
      set_grad_values(q, g);
      opt.step();
    }
    CHECK(opt.step_count() == 2);
    auto pv = p.to(DType::f64).to_vector<double>(), qv = q.to(DType::f64).to_vector<double>();
    for (int i = 0; i < 3; ++i) {
      CHECK(pv[i] == doctest::Approx(p_expected[i]).epsilon(tol));
      CHECK(qv[i] == doctest::Approx(q_expected[i]).epsilon(tol));
    }
    auto state = opt.state_tensors();
    REQUIRE(state.size() == 4);
    CHECK(state[0].first == "p.exp_avg");
    CHECK(state[1].first == "p.exp_avg_sq");
    CHECK(state[2].first == "q.exp_avg");
    CHECK(state[3].first == "q.exp_avg_sq");
    auto mv = state[0].second.to(DType::f64).to_vector<double>();
    auto vv = state[1].second.to(DType::f64).to_vector<double>();
    for (int i = 0; i < 3; ++i) {
      CHECK(mv[i] == doctest::Approx(m_expected[i]).epsilon(tol));
      CHECK(vv[i] == doctest::Approx(v_expected[i]).epsilon(tol));
    }
  }
}

TEST_CASE("train: AdamW skips parameters without a gradient, zero_grad drops gradients, set_lr") {
  Tensor a = leaf({1.0, 2.0}), b = leaf({3.0, 4.0});
  AdamW opt({ParamGroup{{{"a", a}, {"b", b}}, 0.1}}, 0.1);
  set_grad_values(a, {1.0, -1.0});
  opt.step();
  // Without a gradient b keeps its value (no decay either) and its state stays zero.
  CHECK(b.to_vector<double>() == std::vector<double>{3.0, 4.0});
  CHECK(opt.state_tensors()[2].second.to_vector<double>() == std::vector<double>{0.0, 0.0});
  // First step: Adam moves each element by lr (m / sqrt(v) = sign(g) after bias correction),
  // after the decay p * (1 - 0.1 * 0.1).
  auto av = a.to_vector<double>();
  CHECK(av[0] == doctest::Approx(1.0 * 0.99 - 0.1).epsilon(1e-7));
  CHECK(av[1] == doctest::Approx(2.0 * 0.99 + 0.1).epsilon(1e-7));
  opt.zero_grad();
  CHECK(!a.grad().defined());
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
  check_error([&] { opt.set_lr(-1); }, {"[AdamW]", "lr"});
  opt.step();  // no gradients: nothing changes
  CHECK(a.to_vector<double>() == av);
}

TEST_CASE("train: AdamW rejects bad parameters") {
  Tensor a = leaf({1.0});
  check_error([&] { AdamW({ParamGroup{{{"a", a}, {"a", leaf({2.0})}}, 0.0}}); }, {"'a' appears twice"});
  check_error([&] { AdamW({ParamGroup{{{"a", a}, {"b", a}}, 0.0}}); }, {"same tensor"});
  check_error([&] { AdamW({ParamGroup{{{"i", arange(3)}}, 0.0}}); }, {"'i'", "int64"});
  check_error([&] { AdamW({ParamGroup{{{"a", a}}, 0.0}}, 1e-3, {1.0, 0.9}); }, {"betas"});
}

TEST_CASE("train: AdamW state restores into a fresh optimizer and continues identically") {
  TempDir dir;
  Tensor p1 = leaf({0.5, -1.5, 2.0, 0.25}, DType::f32);
  AdamW a({ParamGroup{{{"w", p1}}, 0.1}}, 0.01);
  const std::vector<std::vector<double>> grads = {{0.1, 0.2, -0.3, 0.4}, {-0.2, 0.1, 0.0, 0.3}, {0.5, -0.5, 0.1, 0.2}};
  for (int s = 0; s < 2; ++s) set_grad_values(p1, grads[s]), a.step();
  // Checkpoint parameters and state through a file, as the trainer does.
  NamedTensors ckpt = a.state_tensors();
  ckpt.emplace_back("w", p1);
  save_safetensors(dir.file("opt.safetensors"), ckpt);
  auto loaded = load_safetensors_map(dir.file("opt.safetensors"));

  Tensor p2 = loaded.at("w");
  p2.requires_grad_();
  AdamW b({ParamGroup{{{"w", p2}}, 0.1}}, 0.01);
  b.load_state({{"w.exp_avg", loaded.at("w.exp_avg")}, {"w.exp_avg_sq", loaded.at("w.exp_avg_sq")}}, a.step_count());
  CHECK(b.step_count() == 2);
  set_grad_values(p1, grads[2]), a.step();
  set_grad_values(p2, grads[2]), b.step();
  CHECK(p1.to_vector<float>() == p2.to_vector<float>());

  check_error([&] { b.load_state({{"w.exp_avg", loaded.at("w.exp_avg")}}, 2); }, {"no optimizer state 'w.exp_avg_sq'"});
  check_error(
      [&] {
        b.load_state({{"w.exp_avg", zeros({3})}, {"w.exp_avg_sq", zeros({4})}}, 2);
      },
      {"'w.exp_avg'", "shape"});
  check_error(
      [&] {
        b.load_state({{"w.exp_avg", zeros({4})}, {"w.exp_avg_sq", zeros({4})}, {"x.exp_avg", zeros({4})}}, 2);
      },
      {"unexpected optimizer state 'x.exp_avg'"});
}

// ================================================================ clipping

TEST_CASE("train: clip_grad_norm matches a hand-computed global norm") {
  Tensor a = leaf({3.0, 4.0}), b = leaf({12.0}, DType::f32), c = leaf({7.0});  // c has no gradient
  set_grad_values(a, {3.0, 4.0});
  set_grad_values(b, {-12.0});
  // sqrt(9 + 16 + 144) = 13: below max_norm nothing changes.
  CHECK(clip_grad_norm(std::vector<Tensor>{a, b, c}, 100.0) == doctest::Approx(13.0).epsilon(1e-15));
  CHECK(a.grad().to_vector<double>() == std::vector<double>{3.0, 4.0});
  // Above it every gradient is scaled by max_norm / (13 + 1e-6).
  double norm = clip_grad_norm(std::vector<std::pair<std::string, Tensor>>{{"a", a}, {"b", b}, {"c", c}}, 1.0);
  CHECK(norm == doctest::Approx(13.0).epsilon(1e-15));
  const double k = 1.0 / (13.0 + 1e-6);
  auto ag = a.grad().to_vector<double>();
  CHECK(ag[0] == doctest::Approx(3.0 * k).epsilon(1e-15));
  CHECK(ag[1] == doctest::Approx(4.0 * k).epsilon(1e-15));
  CHECK(b.grad().to_vector<float>()[0] == doctest::Approx(-12.0 * k).epsilon(1e-6));
  CHECK(!c.grad().defined());
  // The clipped norm is just under 1.
  CHECK(clip_grad_norm(std::vector<Tensor>{a, b}, 1.0) == doctest::Approx(13.0 * k).epsilon(1e-7));
  check_error([&] { clip_grad_norm(std::vector<Tensor>{a}, 0.0); }, {"max_norm"});
}

TEST_CASE("train: clip_grad_norm is the same for every thread count, and reports non-finite norms") {
  Generator gen(7);
  Tensor p = randn({300000}, DType::f32, &gen).requires_grad_();
  int saved = num_threads();
  std::vector<double> norms;
  for (int nt : {1, 3, 8}) {
    set_num_threads(nt);
    p.set_grad(randn({300000}, DType::f32, &(gen = Generator(11))));
    norms.push_back(clip_grad_norm(std::vector<Tensor>{p}, 1e9));
  }
  set_num_threads(saved);
  CHECK(norms[0] == norms[1]);
  CHECK(norms[0] == norms[2]);
  CHECK(norms[0] == doctest::Approx(std::sqrt(300000.0)).epsilon(0.01));

  Tensor q = leaf({1.0, 2.0});
  set_grad_values(q, {NAN, 1.0});
  CHECK(std::isnan(clip_grad_norm(std::vector<Tensor>{q}, 1.0)));
  CHECK(q.grad().to_vector<double>()[1] == 1.0);  // not scaled
}

// ================================================================ schedule

TEST_CASE("train: lr_at warm-up, cosine and floor") {
  const double peak = 1e-3;
  // warm-up of 10 steps: lr = peak * (step + 1) / 10
  CHECK(lr_at(0, 10, 110, peak) == doctest::Approx(1e-4).epsilon(1e-12));
  CHECK(lr_at(4, 10, 110, peak) == doctest::Approx(5e-4).epsilon(1e-12));
  CHECK(lr_at(9, 10, 110, peak) == doctest::Approx(1e-3).epsilon(1e-12));
  // cosine over steps 10..110 from 1e-3 to 1e-4
  CHECK(lr_at(10, 10, 110, peak) == doctest::Approx(1e-3).epsilon(1e-12));
  CHECK(lr_at(35, 10, 110, peak) == doctest::Approx(0.00086819805153394642).epsilon(1e-12));  // 1/4 of the way
  CHECK(lr_at(60, 10, 110, peak) == doctest::Approx(5.5e-4).epsilon(1e-12));                  // halfway
  CHECK_REL(lr_at(109, 10, 110, peak), 0.00010022204783542078, 1e-12);  // the cosine's last step before the floor
  CHECK(lr_at(110, 10, 110, peak) == doctest::Approx(1e-4).epsilon(1e-12));
  CHECK(lr_at(5000, 10, 110, peak) == doctest::Approx(1e-4).epsilon(1e-12));
  // no warm-up; another floor
  CHECK(lr_at(0, 0, 100, 2.0, 0.0) == doctest::Approx(2.0));
  CHECK(lr_at(50, 0, 100, 2.0, 0.0) == doctest::Approx(1.0));
  CHECK(lr_at(100, 0, 100, 2.0, 0.0) == doctest::Approx(0.0));
  check_error([] { lr_at(-1, 10, 100, 1.0); }, {"[lr_at]"});
  check_error([] { lr_at(0, 200, 100, 1.0); }, {"[lr_at]", "warmup"});
  check_error([] { lr_at(0, 10, 100, 1.0, 1.5); }, {"min_ratio"});
}

// ================================================================ safetensors
