// The op profiler (introspect/profiler.h) and the memory report (introspect/memory_report.h): a profiled
// training step's Chrome trace parses and holds the model's ops with durations that fit in the step;
// the table's rows add up to the trace; the memory report counts what a graph saves for backward.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "autograd/observer.h"
#include "introspect/memory_report.h"
#include "introspect/profiler.h"
#include "models/mamba.h"
#include "tests/check.h"
#include "tests/devices.h"
#include "tests/cli.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "train/optim.h"
#include "train/train_step.h"

using namespace mg;

namespace {

MambaConfig two_layers() {
  MambaConfig c = MambaConfig::preset("tiny");
  c.d_model = 32;
  c.n_layer = 2;
  return c;
}

Batch random_batch(int64_t b, int64_t l, uint64_t seed) {
  Generator g(seed);
  Tensor t = randint(0, 256, {b, l + 1}, &g);
  return {contiguous(t.narrow(1, 0, l)), contiguous(t.narrow(1, 1, l))};
}

// Two matmul operands on the CUDA device, random from `seed`; a requires grad, and b when `b_grad`.
std::pair<Tensor, Tensor> cuda_operands(const Shape& sa, const Shape& sb, uint64_t seed, bool b_grad) {
  const Device dev = Device::parse("cuda");
  Generator g(seed);
  Tensor a = to_device(randn(sa, DType::f32, &g), dev).requires_grad_();
  Tensor b = to_device(randn(sb, DType::f32, &g), dev);
  return {a, b_grad ? b.requires_grad_() : b};
}

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST_CASE("profiler: off by default, and ops then record nothing") {
  CHECK_FALSE(observers::any());
  Tensor a = ones({4}), b = ones({4});
  Tensor c = add(a, b);
  Profiler p;
  CHECK(observers::any());
  p.pause();
  Tensor d = mul(a, b);  // paused: not recorded
  p.resume();
  Tensor e = sub(a, b);
  p.stop();
  CHECK_FALSE(observers::any());
  Tensor f = add(a, b);  // stopped
  const auto ev = p.events();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].name == "sub");
  CHECK(ev[0].shapes == "(4,) (4,)");
  CHECK(ev[0].bytes == 16);  // its float32 output
  CHECK_THROWS_WITH_AS(([] { Profiler a2, b2; })(), doctest::Contains("already recording"), Error);
}

TEST_CASE("profiler: a tiny Mamba step's trace holds the scan, the conv and the matmuls, and fits in the step") {
  const MambaConfig cfg = two_layers();
  MambaLM model(cfg, 0);
  AdamW opt(make_param_groups(model, 0.1), 1e-3);
  const Batch batch = random_batch(2, 16, 3);
  train_step(model, opt, batch, 1.0);  // warm-up, not profiled
  Profiler prof;
  {
    Profiler::StepScope step(prof, 1);
    train_step(model, opt, batch, 1.0);
  }
  prof.stop();
  REQUIRE(prof.steps().size() == 1);

  const nlohmann::json trace = nlohmann::json::parse(prof.chrome_trace());  // throws on invalid JSON
  REQUIRE(trace.contains("traceEvents"));
  double step_us = -1, top_us = 0;
  std::map<std::string, int> forward_calls, backward_calls;
  std::map<std::string, double> top_ms;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "M") continue;  // track names (with CUDA ops only)
    REQUIRE(e["ph"] == "X");
    const std::string name = e["name"], cat = e["cat"];
    const double dur = e["dur"];
    if (cat == "step") {
      step_us = dur;
      continue;
    }
    CHECK(e["args"]["shapes"].is_string());
    CHECK(e["args"]["bytes"].is_number_unsigned());
    if (e["args"]["depth"] != 0) continue;
    CHECK(dur >= 0);
    top_us += dur;
    top_ms[name] += dur * 1e-3;
    (cat == "forward" ? forward_calls : backward_calls)[name]++;
  }
  REQUIRE(step_us > 0);
  // One scan, one conv and four projections per layer; the head is a matmul or a linear.
  CHECK(forward_calls["selective_scan"] == cfg.n_layer);
  CHECK(forward_calls["causal_conv1d"] == cfg.n_layer);
  CHECK(forward_calls["linear"] + forward_calls["matmul"] >= 4 * cfg.n_layer);
  CHECK(backward_calls["selective_scan"] == cfg.n_layer);
  CHECK(backward_calls["causal_conv1d"] == cfg.n_layer);
  CHECK(top_ms["selective_scan"] > 0);
  CHECK(top_ms["causal_conv1d"] > 0);
  CHECK(top_us <= step_us);  // top-level events do not overlap and lie inside the step

  // The table's rows are the trace's top-level events, summed per op.
  double rows_ms = 0;
  for (const ProfileRow& r : prof.table()) {
    rows_ms += r.forward_ms + r.backward_ms;
    CHECK(r.calls == forward_calls[r.op]);
    CHECK_REL(r.forward_ms + r.backward_ms, top_ms[r.op], 1e-6);
  }
  CHECK_REL(rows_ms, top_us * 1e-3, 1e-6);
  const std::string text = prof.table_text();
  CHECK(text.find("selective_scan") != std::string::npos);
  CHECK(text.find("(outside ops)") != std::string::npos);
}

TEST_CASE("profiler: train --profile writes the trace and prints the table, and a bad path fails before any file") {
  test::TempDir d("profile");
  const std::string data = test::write_text(d, 20000);
  const std::vector<std::string> base = {
      "train", "--data",  data, "--preset", "tiny", "--d-model",    "32",  "--n-layer",    "1",   "--steps",
      "2",     "--batch", "2",  "--seq",    "16",   "--eval-bytes", "256", "--test-bytes", "256", "--quiet"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  test::CliRun bad = test::run_cli(with({"--out", d / "run1", "--profile", d / "no/such/dir/t.json"}));
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--profile") != std::string::npos);
  CHECK(bad.err.find("does not exist") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d / "run1"));
  test::CliRun dir = test::run_cli(with({"--out", d / "run1", "--profile", d.path.string()}));
  CHECK(dir.exit_code != 0);
  CHECK(dir.err.find("is a folder") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d / "run1"));

  test::CliRun ok = test::run_cli(with({"--out", d / "run2", "--profile", d / "t.json", "--memory-report"}));
  REQUIRE_MESSAGE(ok.exit_code == 0, ok.err);
  const nlohmann::json trace = nlohmann::json::parse(read_file(d / "t.json"));
  int scans = 0;
  for (const auto& e : trace["traceEvents"]) scans += e["name"] == "selective_scan";
  CHECK(scans == 2);  // one layer: its forward and its backward, in the one profiled step (the second)
  CHECK(ok.out.find("selective_scan") != std::string::npos);
  CHECK(ok.out.find("activations saved for backward") != std::string::npos);
  CHECK(ok.out.find("optimizer state") != std::string::npos);
}

TEST_CASE("profiler: bench train --profile profiles the timed steps of one preset") {
  test::TempDir d("bench_profile");
  test::CliRun two = test::run_cli({"bench", "train", "--profile", d / "b.json", "--steps", "1"});
  CHECK(two.exit_code != 0);
  CHECK(two.err.find("one --preset") != std::string::npos);
  test::CliRun ok = test::run_cli({"bench", "train", "--preset", "tiny", "--batch", "2", "--seq", "16", "--steps", "2",
                                   "--warmup", "1", "--profile", d / "b.json"});
  REQUIRE_MESSAGE(ok.exit_code == 0, ok.err);
  const nlohmann::json trace = nlohmann::json::parse(read_file(d / "b.json"));
  int steps = 0;
  for (const auto& e : trace["traceEvents"]) steps += e["cat"] == "step";
  CHECK(steps == 2);
}

TEST_CASE("cuda profiler: ops on the device are timed, forward and backward, with their shapes") {
  MG_REQUIRE_CUDA();
  auto [a, b] = cuda_operands({64, 32}, {32, 16}, 0, false);
  Profiler p;
  Tensor loss = sum(matmul(a, b));
  loss.backward();
  p.stop();
  int forward = 0, backward = 0;
  for (const ProfileEvent& e : p.events()) {
    if (e.name != "matmul" || e.depth != 0) continue;
    (e.backward ? backward : forward)++;
    CHECK(e.dur_ns > 0);
    if (!e.backward) CHECK(e.shapes == "(64, 32) (32, 16)");
    if (!e.backward) CHECK(e.bytes == 64 * 16 * 4);
  }
  CHECK(forward == 1);
  CHECK(backward == 1);
}

TEST_CASE("cuda profiler: device times come from events on the stream, in order, and the table counts them") {
  MG_REQUIRE_CUDA();
  auto [a, b] = cuda_operands({128, 96}, {96, 64}, 1, true);
  Generator g(2);
  Tensor x = randn({8}, DType::f32, &g);  // a CPU op in the same session has no device time
  Profiler p;
  Tensor y = exp(x);
  Tensor loss = sum(mul(matmul(a, b), matmul(a, b)));
  loss.backward();
  (void)y;
  p.stop();
  std::vector<const ProfileEvent*> top;
  const std::vector<ProfileEvent> events = p.events();
  double matmul_fwd_ms = 0;
  int on_device = 0;
  for (const ProfileEvent& e : events) {
    if (e.name == "exp") CHECK(e.device == -1);
    if (e.device < 0) continue;
    ++on_device;
    CHECK(e.device == a.device().index);
    CHECK(e.device_dur_ns > 0);
    CHECK(e.device_ts_ns >= 0);  // after the session's start
    if (e.depth == 0) top.push_back(&e);
    if (e.depth == 0 && e.name == "matmul" && !e.backward) matmul_fwd_ms += e.device_dur_ns * 1e-6;
  }
  CHECK(on_device >= 6);  // two matmuls, mul, sum, and their vjps
  // One stream runs the ops one after another: their device intervals, placed on the host clock, follow
  // each other in the order the host queued them and do not overlap (5 us for rounding the float ms).
  std::sort(top.begin(), top.end(), [](auto* l, auto* r) { return l->ts_ns < r->ts_ns; });
  for (size_t i = 1; i < top.size(); ++i) {
    INFO(top[i - 1]->name, " then ", top[i]->name);
    CHECK(top[i]->device_ts_ns + 5000 >= top[i - 1]->device_ts_ns + top[i - 1]->device_dur_ns);
  }
  bool found = false;
  for (const ProfileRow& r : p.table())
    if (r.op == "matmul") {
      found = true;
      CHECK(r.forward_ms == doctest::Approx(matmul_fwd_ms).epsilon(1e-9));
    }
  CHECK(found);
  const nlohmann::json trace = nlohmann::json::parse(p.chrome_trace());
  int cuda_events = 0;
  for (const auto& e : trace["traceEvents"])
    if (e["cat"] == "cuda") {
      ++cuda_events;
      CHECK(e["pid"] == 2);
    }
  CHECK(cuda_events == on_device);
}

TEST_CASE("memory report: the bytes a graph saves for backward, by the op that made them") {
  MemoryTracker tracker;
  tracker.reset_peak();
  Tensor x = randn({1000}).requires_grad_();  // made while tracking, outside any op's scope
  Tensor y = exp(x);                          // exp saves its input and its output
  Tensor loss = sum(mul(y, y));               // mul saves y (again: one storage); sum saves nothing
  loss.backward();
  const MemoryReport r = tracker.report({}, {});
  CHECK(r.bytes(MemoryCategory::saved_activations) == 2 * 1000 * 4);
  uint64_t exp_saved = 0;
  for (const auto& row : r.rows)
    if (row.category == MemoryCategory::saved_activations && row.op == "exp") exp_saved += row.bytes;
  CHECK(exp_saved == 1000 * 4);
  CHECK(r.bytes(MemoryCategory::gradients) >= 1000 * 4);  // at least x's gradient, made by backward
  CHECK(r.bytes(MemoryCategory::parameters) == 0);
  uint64_t sum = 0;
  for (const auto& row : r.rows) sum += row.bytes;
  CHECK(sum == r.peak_bytes);
}

TEST_CASE("memory report: a tiny Mamba step's parameters and AdamW state are counted whole") {
  const MambaConfig cfg = two_layers();
  MambaLM model(cfg, 0);
  AdamW opt(make_param_groups(model, 0.1), 1e-3);
  const Batch batch = random_batch(2, 16, 3);
  train_step(model, opt, batch, 1.0);  // the optimizer's state exists from here on
  std::vector<Tensor> params, state;
  uint64_t param_bytes = 0;
  for (auto& p : model.named_parameters()) params.push_back(p.tensor), param_bytes += p.tensor.numel() * 4;
  for (auto& [n, t] : opt.state_tensors()) state.push_back(t);
  opt.zero_grad();  // no gradients live before the step: the tensors live now are the parameters, the state, the batch
  reset_cpu_peak_bytes();
  MemoryReport r;
  {
    MemoryTracker tracker;
    tracker.reset_peak();
    train_step(model, opt, batch, 1.0);
    r = tracker.report(params, state);
  }
  // The storage layer's own high-water mark (core/storage.h) agrees: the report misses only the batch.
  const uint64_t batch_bytes = (batch.inputs.numel() + batch.targets.numel()) * 8;
  CHECK(r.peak_bytes + batch_bytes == cpu_peak_bytes());
  CHECK(r.bytes(MemoryCategory::parameters) == param_bytes);
  CHECK(r.bytes(MemoryCategory::optimizer_state) == 2 * param_bytes);  // AdamW's two moments, float32
  CHECK(r.bytes(MemoryCategory::saved_activations) > 0);
  std::map<std::string, uint64_t> saved;
  for (const auto& row : r.rows)
    if (row.category == MemoryCategory::saved_activations) saved[row.op] += row.bytes;
  CHECK(saved["selective_scan"] + saved["linear"] + saved["causal_conv1d"] > 0);
  CHECK(r.text().find("activations saved for backward") != std::string::npos);
}
