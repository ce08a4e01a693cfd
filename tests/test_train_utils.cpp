// Tests for train/: AdamW, gradient clipping, the LR schedule, safetensors, atomic writes, the
// metrics log and the SVG curves. Expected values are computed independently of the code under test
// (written-out numbers from the PyTorch formulas, or bytes produced by Python's safetensors).
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
#include "io/atomic_file.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "io/safetensors.h"

using namespace mg;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("mg_test_train_{}_{}", (long long)::getpid(), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), (std::streamsize)bytes.size());
}

// A safetensors file from a header text and a data section (the length prefix is computed).
std::string st_file(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

// Checks that `what` throws mg::Error whose message contains every one of `parts`.
template <class F>
void check_error(F&& what, const std::vector<std::string>& parts) {
  try {
    what();
    FAIL("expected an mg::Error containing '" << parts.front() << "'");
  } catch (const mg::Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
  }
}

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
  const std::vector<double> m_expected = {-0.041, 0.022, 0.027};       // 0.9 * 0.1 g1 + 0.1 g2
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
  check_error([&] { b.load_state({{"w.exp_avg", zeros({3})}, {"w.exp_avg_sq", zeros({4})}}, 2); },
              {"'w.exp_avg'", "shape"});
  check_error([&] { b.load_state({{"w.exp_avg", zeros({4})}, {"w.exp_avg_sq", zeros({4})}, {"x.exp_avg", zeros({4})}}, 2); },
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
  CHECK(lr_at(109, 10, 110, peak) == doctest::Approx(1e-4).epsilon(1e-3));
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

TEST_CASE("train: safetensors round trip of f32, f64, i64, 0-dim, empty and strided tensors") {
  TempDir dir;
  Tensor f32 = from_vector<float>({1.5f, -2.25f, 3.0f, 0.125f, -0.0f, 1e-30f}, Shape{2, 3});
  Tensor f64 = from_vector<double>({std::numbers::pi, -1e300, 0.0, 5e-324}, Shape{4});
  Tensor i64 = from_vector<int64_t>({INT64_MIN, -1, 0, INT64_MAX}, Shape{2, 2});
  Tensor scalar = scalar_tensor(-7.5, DType::f32);
  Tensor empty = zeros({0, 5}, DType::f64);
  Tensor strided = from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3}).transpose(0, 1);  // (3, 2), not contiguous
  Tensor with_grad = leaf({1.0, 2.0});
  std::string path = dir.file("model.safetensors");
  save_safetensors(path,
                   {{"backbone.f32", f32}, {"f64", f64}, {"i64", i64}, {"scalar", scalar}, {"empty", empty},
                    {"strided", strided}, {"param", with_grad}},
                   {{"format", "pt"}, {"step", "1200"}});
  CHECK(temp_files_in(dir.path).empty());
  SafetensorsFile f = read_safetensors(path);
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"step", "1200"}});
  REQUIRE(f.tensors.size() == 7);
  auto m = load_safetensors_map(path);
  CHECK(m.at("backbone.f32").shape() == Shape{2, 3});
  CHECK(m.at("backbone.f32").to_vector<float>() == f32.to_vector<float>());
  CHECK(std::signbit(m.at("backbone.f32").to_vector<float>()[4]));
  CHECK(m.at("f64").to_vector<double>() == f64.to_vector<double>());
  CHECK(m.at("i64").dtype() == DType::i64);
  CHECK(m.at("i64").to_vector<int64_t>() == i64.to_vector<int64_t>());
  CHECK(m.at("scalar").dim() == 0);
  CHECK(m.at("scalar").item() == -7.5);
  CHECK(m.at("empty").shape() == Shape{0, 5});
  CHECK(m.at("empty").dtype() == DType::f64);
  CHECK(m.at("strided").shape() == Shape{3, 2});
  CHECK(m.at("strided").to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK(!m.at("param").requires_grad());
  CHECK(m.at("param").to_vector<double>() == std::vector<double>{1.0, 2.0});
  // File order: int64 first, then float64, then float32, by name within a dtype.
  std::vector<std::string> order;
  for (const auto& [name, t] : f.tensors) order.push_back(name);
  CHECK(order == std::vector<std::string>{"i64", "empty", "f64", "param", "backbone.f32", "scalar", "strided"});
  // An empty metadata map writes no __metadata__.
  save_safetensors(path, {{"x", f32}}, {});
  CHECK(read_safetensors(path).metadata.empty());
  CHECK(read_bytes(path).find("__metadata__") == std::string::npos);
}

TEST_CASE("train: safetensors bytes are identical to Python safetensors") {
  // Generated once with safetensors 0.8.0 (pip install safetensors numpy):
  //   from safetensors.numpy import save
  //   save({"b": np.array([1.5, -2.0, 3.25], np.float32).reshape(1, 3), "a": np.array([7, -1], np.int64),
  //         "c": np.array(0.5, np.float64), "e": np.zeros((0, 2), np.float32)}, metadata={"format": "pt"})
  static const unsigned char kPython[] = {
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74,
    0x22, 0x3a, 0x22, 0x70, 0x74, 0x22, 0x7d, 0x2c, 0x22, 0x61, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74,
    0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70,
    0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
    0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x63,
    0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22,
    0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74,
    0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c, 0x32,
    0x34, 0x5d, 0x7d, 0x2c, 0x22, 0x62, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22,
    0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x31, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65,
    0x74, 0x73, 0x22, 0x3a, 0x5b, 0x32, 0x34, 0x2c, 0x33, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x65, 0x22,
    0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c,
    0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64,
    0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x33, 0x36,
    0x2c, 0x33, 0x36, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f,
    0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x50, 0x40,
  };
  const std::string expected(reinterpret_cast<const char*>(kPython), sizeof(kPython));
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"b", from_vector<float>({1.5f, -2.0f, 3.25f}, Shape{1, 3})},
                          {"a", from_vector<int64_t>({7, -1}, Shape{2})},
                          {"c", scalar_tensor(0.5, DType::f64)},
                          {"e", zeros({0, 2})}});
  std::string ours = read_bytes(path);
  CHECK(ours.size() == expected.size());
  CHECK(ours == expected);
  // Header length prefix: 256, and 8 + 256 is a multiple of 8 (two padding spaces).
  CHECK(ours.substr(0, 8) == std::string("\x00\x01\x00\x00\x00\x00\x00\x00", 8));
  CHECK(ours.substr(8 + 254, 2) == "  ");

  // And Python's file loads.
  std::string py = dir.file("py.safetensors");
  write_bytes(py, expected);
  auto m = load_safetensors_map(py);
  CHECK(m.at("a").to_vector<int64_t>() == std::vector<int64_t>{7, -1});
  CHECK(m.at("b").shape() == Shape{1, 3});
  CHECK(m.at("b").to_vector<float>() == std::vector<float>{1.5f, -2.0f, 3.25f});
  CHECK(m.at("c").item() == 0.5);
  CHECK(m.at("e").shape() == Shape{0, 2});
}

TEST_CASE("train: safetensors loading rejects every kind of bad file with a clear message") {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  auto expect_bad = [&](const std::string& bytes, std::vector<std::string> parts) {
    write_bytes(path, bytes);
    parts.push_back(path);
    parts.push_back("[load_safetensors]");
    check_error([&] { load_safetensors(path); }, parts);
  };
  const std::string f32x2 = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  // A correct file, for reference.
  write_bytes(path, st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2));
  CHECK(load_safetensors(path)[0].second.to_vector<float>() == std::vector<float>{1.0f, 2.0f});

  check_error([&] { load_safetensors(dir.file("missing.safetensors")); }, {"cannot read", "missing.safetensors"});
  expect_bad("abc", {"too short"});
  expect_bad(std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10), {"bad header length"});
  expect_bad(std::string("\x40\x00\x00\x00\x00\x00\x00\x00{}", 10), {"bad header length", "truncated"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", f32x2), {"malformed JSON"});
  expect_bad(st_file(R"(["x"])", ""), {"does not start with '{'"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                     f32x2),
             {"names 'x' twice"});
  // Nested keys may repeat names of tensors.
  write_bytes(path, st_file(R"({"__metadata__":{"x":"1"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2));
  CHECK(read_safetensors(path).metadata.at("x") == "1");
  expect_bad(st_file(R"({"x":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "unsupported dtype 'BF16'"});
  expect_bad(st_file(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", f32x2), {"tensor 'x'", "missing \"dtype\""});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "not a non-negative integer"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "size mismatch", "needs 12 bytes"});
  // Shapes whose element or byte count overflows int64 (a zero size does not excuse the others).
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "shape [4611686018427387904,4]: the product of its sizes overflows int64"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", ""),
             {"tensor 'x'", "the product of its sizes overflows int64"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "its byte count overflows int64: 2305843009213693952 * 4"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", f32x2),
             {"tensor 'x'", "out of range"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", f32x2), {"tensor 'x'", "end before"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     f32x2 + f32x2),
             {"tensor 'y'", "overlap tensor 'x'"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                     f32x2 + std::string(4, '\0')),
             {"tensor 'y'", "leave bytes [4, 8)"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2 + "junk"),
             {"do not cover the data"});
  expect_bad(st_file(R"({"__metadata__":{"step":5},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2),
             {"__metadata__", "not a string"});

  // A good file cut short.
  save_safetensors(path, {{"w", zeros({4, 4})}});
  std::string good = read_bytes(path);
  expect_bad(good.substr(0, good.size() - 4), {"tensor 'w'", "out of range", "truncated"});
}

TEST_CASE("train: save_safetensors rejects bad names and leaves no partial file") {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  check_error([&] { save_safetensors(path, {{"a", zeros({1})}, {"a", zeros({2})}}); }, {"'a' appears twice", path});
  check_error([&] { save_safetensors(path, {{"__metadata__", zeros({1})}}); }, {"reserved"});
  check_error([&] { save_safetensors(path, {{"", zeros({1})}}); }, {"empty name"});
  check_error([&] { save_safetensors(path, {{"u", Tensor()}}); }, {"'u' is undefined"});
  CHECK(!fs::exists(path));
  CHECK(temp_files_in(dir.path).empty());
}

// ================================================================ atomic files

TEST_CASE("train: write_file_atomic replaces the file, or keeps the old one when the writer throws") {
  TempDir dir;
  std::string path = dir.file("state.bin");
  write_file_atomic(path, std::string_view("first version"));
  CHECK(read_bytes(path) == "first version");
  CHECK(temp_files_in(dir.path).empty());
  write_file_atomic(path, [](std::ostream& out) { out << "second"; });
  CHECK(read_bytes(path) == "second");
  CHECK(temp_files_in(dir.path).empty());

  // The writer fails half-way: the old content survives and the temporary is gone.
  bool wrote_partial = false;
  CHECK_THROWS_AS(write_file_atomic(path,
                                    [&](std::ostream& out) {
                                      out << "half of the third ver";
                                      out.flush();
                                      wrote_partial = !temp_files_in(dir.path).empty();
                                      throw std::runtime_error("interrupted");
                                    }),
                  std::runtime_error);
  CHECK(wrote_partial);  // the partial data really went to a temporary beside the target
  CHECK(read_bytes(path) == "second");
  CHECK(temp_files_in(dir.path).empty());

  check_error([&] { write_file_atomic(dir.file("no/such/dir/x"), std::string_view("x")); }, {"cannot create", "no/such/dir/x"});
}

// ================================================================ metrics

TEST_CASE("train: metrics.jsonl has one parseable JSON object per line") {
  TempDir dir;
  std::string path = dir.file("metrics.jsonl");
  {
    MetricsLog log(path);
    log.log({{"step", 0}, {"train_bpc", 7.95}, {"lr", 1e-4}});
    log.log({{"step", 100}, {"train_bpc", 3.5}, {"val_bpc", 3.61}, {"note", "quote \" and\nnewline"}});
    // Flushed per line: visible before the log is closed.
    CHECK(read_jsonl(path).size() == 2);
    log.log({{"step", 200}, {"train_bpc", std::nan("")}});
    check_error([&] { log.log(nlohmann::json::array({1, 2})); }, {"must be a JSON object"});
  }
  { MetricsLog(path).log({{"step", 300}}); }  // appends
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));  // throws if not JSON
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["step"] == 0);
  CHECK(rows[1]["val_bpc"].get<double>() == 3.61);
  CHECK(rows[1]["note"] == "quote \" and\nnewline");
  CHECK(rows[2]["train_bpc"].is_null());  // NaN has no JSON spelling
  CHECK(rows[3]["step"] == 300);
  CHECK(read_jsonl(path).size() == 4);
  { MetricsLog(path, /*append=*/false).log({{"step", 0}}); }
  CHECK(read_jsonl(path).size() == 1);

  write_bytes(path, "{\"a\": 1}\n{broken\n");
  check_error([&] { read_jsonl(path); }, {"line 2", "malformed JSON"});
  check_error([&] { MetricsLog(dir.file("no/dir/metrics.jsonl")); }, {"cannot open"});
}

namespace {
// Every tag is closed in order (a small well-formedness check: no DTD, no CDATA, no comments).
bool tags_balanced(const std::string& s, std::string& why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos) {
    size_t j = s.find('>', i);
    if (j == std::string::npos) return why = "unterminated tag", false;
    std::string tag = s.substr(i + 1, j - i - 1);
    i = j + 1;
    if (tag.empty()) return why = "empty tag", false;
    if (tag[0] == '/') {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return why = "unexpected </" + name + ">", false;
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
    // Attribute quotes must pair up.
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return why = "odd quotes in <" + tag + ">", false;
  }
  if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
  return true;
}
}  // namespace

TEST_CASE("train: the curves SVG is well formed with two polylines, axes titles and a legend") {
  TempDir dir;
  std::string path = dir.file("curves.svg");
  std::vector<CurvePoint> train, val;
  for (int s = 0; s <= 5000; s += 10) train.push_back({(double)s, 1.2 + 6.8 * std::exp(-s / 400.0) + 0.05 * std::sin(s)});
  for (int s = 500; s <= 5000; s += 500) val.push_back({(double)s, 1.35 + 6.6 * std::exp(-s / 400.0)});
  train[3].value = NAN;  // skipped
  CurvesOptions opt;
  opt.title = "enwik8 <tiny> & co";
  write_curves_svg(path, train, val, opt);
  std::string svg = read_bytes(path);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.ends_with("</svg>\n"));
  size_t polylines = 0;
  for (size_t i = 0; (i = svg.find("<polyline", i)) != std::string::npos; ++i) ++polylines;
  CHECK(polylines == 2);
  CHECK(svg.find(">step</text>") != std::string::npos);
  CHECK(svg.find(">bits per character</text>") != std::string::npos);
  CHECK(svg.find(">train bpc</text>") != std::string::npos);
  CHECK(svg.find(">validation bpc</text>") != std::string::npos);
  CHECK(svg.find("enwik8 &lt;tiny&gt; &amp; co") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find(">2500</text>") != std::string::npos);  // x tick labels
  std::string why;
  CHECK_MESSAGE(tags_balanced(svg, why), why);
  CHECK(temp_files_in(dir.path).empty());

  // Degenerate inputs still give a valid plot.
  write_curves_svg(path, std::vector<CurvePoint>{}, std::vector<CurvePoint>{});
  svg = read_bytes(path);
  CHECK(tags_balanced(svg, why));
  CurvesOptions clipped;
  clipped.y_max = 4.0;
  write_curves_svg(path, std::vector<CurvePoint>{{0, 2.0}}, std::vector<CurvePoint>{{0, 2.0}}, clipped);
  svg = read_bytes(path);
  CHECK(tags_balanced(svg, why));
}
