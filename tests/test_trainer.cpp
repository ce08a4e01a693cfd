// The trainer end to end on small byte files: bit-exact resume, a non-finite loss stopping with the
// last good checkpoint kept, clear errors for bad data and mismatched checkpoints, evaluation and
// generation.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <csignal>
#include <fstream>
#include <map>
#include <optional>
#include <thread>
#include <tuple>

#include "train/metrics.h"
#include "io/safetensors.h"
#include "autograd/grad_mode.h"
#include "core/parallel.h"
#include "data/dataset.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/temp_dir.h"
#include "train/checkpoint.h"
#include "tests/trainer_fixture.h"
#include "train/trainer.h"

using namespace mg;
using test::TempDir;
using test::tiny_options;
using test::train_losses;
using test::write_text;
namespace fs = std::filesystem;

namespace {

// Resumes the run in d/b, which stopped early, and checks that it ends as the uninterrupted run in d/a
// did (whose test result is `ra`): the same train losses for every step of `steps`, bit for bit, and the
// same test loss. Returns the train losses of d/a.
std::vector<double> check_resumed_like_uninterrupted(const TempDir& d, const EvalResult& ra, size_t steps) {
  TrainOptions resumed = load_run_options(d / "b");
  resumed.progress = false;
  EvalResult rb = train(resumed, true).test;
  auto la = train_losses(d / "a/metrics.jsonl"), lb = train_losses(d / "b/metrics.jsonl");
  REQUIRE(la.size() == steps);
  REQUIRE(lb.size() == steps);
  for (size_t i = 0; i < steps; ++i) {
    INFO("step " << i + 1);
    CHECK(la[i] == lb[i]);  // bit-identical, not approximately equal
  }
  CHECK(ra.loss == rb.loss);
  return la;
}

}  // namespace

TEST_CASE("trainer: resuming continues bit-identically to an uninterrupted run") {
  TempDir d("resume");
  std::string data = write_text(d, 60000);
  TrainOptions a = tiny_options(data, d / "a");
  EvalResult ra = train(a, false).test;
  TrainOptions b = tiny_options(data, d / "b");
  b.stop_at = 3;  // stops between evaluations: the checkpoint is written at the stop
  train(b, false);
  CHECK(train_losses(d / "b/metrics.jsonl").size() == 3);
  const std::vector<double> la = check_resumed_like_uninterrupted(d, ra, 8);
  CHECK(la.back() < la.front());  // and it learned something
  CHECK(fs::exists(d / "b/curves.svg"));
}

TEST_CASE("trainer: a non-finite loss stops training, names the step and keeps the last checkpoint") {
  TempDir d("nan");
  std::string data = write_text(d, 40000);
  TrainOptions o = tiny_options(data, d / "run", {.steps = 40, .warmup = 10, .eval_every = 1});
  o.lr = 100;  // reached by the end of the warm-up: the run diverges a few steps in, after a checkpoint
  std::string msg;
  try {
    train(o, false);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("stopping before anything of that step is saved. The last good checkpoint in") != std::string::npos);
  CHECK(fs::exists(d / "run/model.safetensors"));
  auto f = read_safetensors(d / "run/model.safetensors");
  for (auto& [name, t] : f.tensors)
    for (float v : t.to_vector<float>()) REQUIRE(std::isfinite(v));
}

TEST_CASE("trainer: bad data gets a clear error before anything is written") {
  TempDir d("bad");
  TrainOptions o = tiny_options(d / "missing.zip", d / "run");
  CHECK_THROWS_WITH_AS(train(o, false), doctest::Contains("curl -LO http://mattmahoney.net/dc/enwik8.zip"), Error);
  std::string small = d / "small.txt";
  std::ofstream(small) << "too short";
  o.data = small;
  CHECK_THROWS_WITH_AS(train(o, false), doctest::Contains("needs seq_len + 1 = 33 bytes"), Error);
  CHECK(!fs::exists(d / "run/model.safetensors"));
}

TEST_CASE("trainer: a checkpoint whose shapes do not match its config names the tensor and both shapes") {
  TempDir d("mismatch");
  train_tiny(d, {.steps = 2});
  // The model alone (a folder with no checkpoint to verify it against, as Hugging Face's), whose
  // config.json claims a different d_state. (In a run folder the changed config is refused first:
  // tests/test_run_safety.cpp.)
  fs::create_directories(d / "bare");
  for (const std::string f : {"model.safetensors", "config.json"}) fs::copy_file(d / ("run/" + f), d / ("bare/" + f));
  {
    std::ifstream in(d / "bare/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    auto at = cfg.find("\"state_size\": 16");
    REQUIRE(at != std::string::npos);
    cfg.replace(at, 16, "\"state_size\": 8");
    std::ofstream(d / "bare/config.json") << cfg;
  }
  CHECK_THROWS_WITH_AS(load_model(d / "bare"), doctest::Contains("tensor 'backbone.layers.0.mixer.A_log' in"), Error);
  CHECK_THROWS_WITH_AS(load_model(d / "bare"), doctest::Contains("has shape (64, 16), but the model expects (64, 8)"),
                       Error);
  CHECK_THROWS_WITH_AS(load_model(d / "nowhere"), doctest::Contains("is not a run folder"), Error);
}

TEST_CASE("trainer: greedy generation is reproducible and sampling follows its seed") {
  TempDir d("gen");
  train_tiny(d, {.steps = 4});
  auto model = load_model(d / "run");
  SampleOptions greedy{40, 0.0, 0, 1};
  std::string g1 = generate(*model, "the cat", greedy), g2 = generate(*model, "the cat", greedy);
  CHECK(g1.size() == 40);
  CHECK(g1 == g2);
  SampleOptions s1{40, 1.0, 40, 1}, s2{40, 1.0, 40, 2};
  std::string streamed;
  CHECK(generate(*model, "the", s1, [&](char c) { streamed += c; }) == streamed);
  CHECK(generate(*model, "the", s1) == streamed);
  CHECK(generate(*model, "the", s2) != streamed);
  // --prompt-file: any bytes (a NUL, trailing newlines), the same continuation as the library's from them.
  const std::string prompt("the\0cat\n\n", 9);
  const std::string file = d.file("prompt.bin", prompt);
  auto cli =
      test::run_cli({"generate", "--run", d / "run", "--prompt-file", file, "--bytes", "40", "--temperature", "0"});
  REQUIRE_MESSAGE(cli.exit_code == 0, cli.err);
  CHECK(cli.out == prompt + generate(*model, prompt, greedy) + "\n");
  auto both = test::run_cli({"generate", "--run", d / "run", "--prompt", "x", "--prompt-file", file});
  CHECK(both.exit_code != 0);
  CHECK(both.err.find("--prompt excludes --prompt-file") != std::string::npos);
}

TEST_CASE("trainer: Ctrl-C saves a checkpoint and returns cleanly") {
  TempDir d("sigint");
  std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "run", {.steps = 1000000, .eval_every = 0});
  std::thread interrupter([&] {
    // Wait for the first logged step: by then the trainer's handler is installed.
    for (int i = 0; i < 6000 && read_jsonl(d / "run/metrics.jsonl").empty(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::raise(SIGINT);
  });
  auto before = std::signal(SIGINT, SIG_DFL);
  std::signal(SIGINT, before);
  train(o, false);
  interrupter.join();
  auto steps = read_jsonl(d / "run/metrics.jsonl");
  REQUIRE(!steps.empty());
  CHECK(steps.size() < 1000000);
  TrainOptions saved = load_run_options(d / "run");
  CHECK(saved.steps == 1000000);
  auto st = read_safetensors(d / ("run/checkpoint-" + std::to_string(steps.size()) + "/trainer_state.safetensors"));
  CHECK(std::stoll(st.metadata.at("step")) == (int64_t)steps.size());
  bool restored = std::signal(SIGINT, before) == before;  // the trainer put the previous handler back
  CHECK(restored);
}

TEST_CASE("trainer: eval --stream is the loss of each stream read in one call") {
  MambaLM m(MambaConfig::preset("tiny"), 4);
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 700; ++i) bytes.push_back((uint8_t)("the cat sat on a mat. "[i % 22] + (i % 37 == 0)));
  ByteDataset ds(bytes, "test");
  for (auto [B, L, cap] : {std::tuple<int64_t, int64_t, int64_t>{3, 16, -1}, {4, 50, 500}, {1, 64, 200}}) {
    CAPTURE(B);
    CAPTURE(L);
    CAPTURE(cap);
    const int64_t span = cap < 0 ? (int64_t)bytes.size() : cap, S = (span - 1) / B;
    double total = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < B; ++r) {  // stream r, the leftover bytes with the last
      const int64_t len = r == B - 1 ? span - 1 - r * S : S;
      std::vector<int64_t> in(bytes.begin() + r * S, bytes.begin() + r * S + len),
          tg(bytes.begin() + r * S + 1, bytes.begin() + r * S + len + 1);
      NoGradGuard ng;
      total += m.loss(from_vector<int64_t>(in, {1, len}), from_vector<int64_t>(tg, {1, len})).item() * (double)len;
      count += len;
    }
    EvalResult e = evaluate_stream(m, ds, B, L, cap);
    CHECK(e.targets == span - 1);
    CHECK(count == span - 1);
    CHECK(std::abs(e.loss - total / (double)count) < 2e-6 * std::abs(e.loss));
    // Windows from a zero state see less context: another number (the model is random, so only "another").
    CHECK(std::abs(evaluate(m, ds, B, L, cap).loss - e.loss) > 1e-6);
  }
}

TEST_CASE("trainer: --carry-state trains on streams, wraps them, and resumes bit-identically") {
  TempDir d("carry");
  std::string data = write_text(d, 12000);  // train split 10,800 bytes: 4 streams of 2,699, 84 windows of 32
  TrainOptions a = tiny_options(data, d / "a");
  a.carry_state = true, a.seq = 512, a.steps = 12, a.eval_every = 5;  // 5 windows of 512 a stream: wraps twice
  EvalResult ra = train(a, false).test;
  TrainOptions b = a;
  b.out = d / "b";
  b.stop_at = 7;  // mid-stream (7 % 5 = 2): the carried state must come back from the checkpoint
  train(b, false);
  {  // the checkpoint of step 7 holds the state carried into step 8
    std::optional<CheckpointRef> ck = find_checkpoint(d / "b");
    REQUIRE(ck);
    LoadedCheckpoint c = read_checkpoint(*ck);
    CHECK(c.step == 7);
    REQUIRE(c.carry.size() == 1);
    CHECK(c.carry[0].conv.shape() == Shape{4, 64, 3});
    CHECK(c.carry[0].ssm.shape() == Shape{4, 64, 16});
    const auto h = c.carry[0].ssm.to_vector<float>();
    CHECK(std::any_of(h.begin(), h.end(), [](float v) { return v != 0; }));
  }
  CHECK(load_run_options(d / "b").carry_state);
  check_resumed_like_uninterrupted(d, ra, 12);
  CHECK(ra.targets == 599);  // the test split's 600 bytes: every byte but the first
  for (auto& j : read_jsonl(d / "a/metrics.jsonl"))
    if (j.contains("val_bpc") || j.contains("test_bpc")) CHECK(j["eval_mode"] == "stream");
  // A run that does not carry state cannot be resumed with it, nor the other way round.
  TrainOptions flip = load_run_options(d / "b");
  flip.carry_state = false, flip.steps = 14, flip.progress = false;
  check_error([&] { train(flip, true); }, {"--carry-state false (the run's: true)", "cannot change"});
}

TEST_CASE("trainer: --precision bf16 trains near fp32, is stored, resumes bit-identically and may change") {
  TempDir d("bf16");
  std::string data = write_text(d, 60000);
  TrainOptions a = tiny_options(data, d / "fp32");
  train(a, false);
  TrainOptions b = tiny_options(data, d / "bf16");
  b.precision = Precision::bf16;
  train(b, false);
  CHECK(load_run_options(d / "bf16").precision == Precision::bf16);
  CHECK(load_run_options(d / "fp32").precision == Precision::f32);
  auto la = train_losses(d / "fp32/metrics.jsonl"), lb = train_losses(d / "bf16/metrics.jsonl");
  REQUIRE(la.size() == 8);
  REQUIRE(lb.size() == 8);
  // The first loss (same weights, same batch) differs only by the matmuls' input rounding: bf16 keeps 8
  // bits, so a relative change near 2^-9 per input, far below 1% of the loss, yet not zero.
  CHECK(lb[0] != la[0]);
  CHECK(std::abs(lb[0] - la[0]) < 0.01 * la[0]);
  for (size_t i = 0; i < 8; ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(lb[i] - la[i]) < 0.02 * la[i]);
  }
  // Stopped and resumed in bf16: the same losses bit for bit.
  TrainOptions c = tiny_options(data, d / "bf16-resumed");
  c.precision = Precision::bf16;
  c.stop_at = 3;
  train(c, false);
  TrainOptions resumed = load_run_options(d / "bf16-resumed");
  resumed.progress = false;
  train(resumed, true);
  CHECK(train_losses(d / "bf16-resumed/metrics.jsonl") == lb);
  // The precision may change on resume (it does not define the model); the change is recorded.
  TrainOptions now = load_run_options(d / "bf16");
  now.precision = Precision::f32;
  const auto changes = resume_changes(load_run_options(d / "bf16"), now, d / "bf16");
  REQUIRE(changes.contains("precision"));
  CHECK(changes["precision"][0] == "bf16");
  CHECK(changes["precision"][1] == "fp32");
  // A precision the CLI does not know: an error naming the option and the valid values, and no folder.
  auto bad = test::run_cli({"train", "--data", data, "--precision", "fp16", "--out", d / "never"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--precision") != std::string::npos);
  CHECK(bad.err.find("bf16") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "never"));
}

TEST_CASE("trainer: each step runs on all the threads or on one, chosen by timing, with the bits of one thread") {
  TempDir d("step_threads");
  std::string data = write_text(d, 60000);
  const int before = num_threads();
  std::map<std::string, double> test_loss;
  auto run = [&](int threads, const char* out) {
    set_num_threads(threads);
    TrainOptions o = tiny_options(data, d / out);
    o.config.d_model = 64;  // large enough that the matmuls and the scan split across threads
    o.batch = 8, o.seq = 64, o.steps = 10, o.eval_every = 100;
    test_loss[out] = train(o, false).test.loss;  // evaluation chooses per batch the same way
    CHECK(num_threads() == threads);             // evaluation and the caller get every thread back
    std::vector<int> used;
    for (auto& j : read_jsonl((fs::path(d / out) / "metrics.jsonl").string()))
      if (j.contains("train_loss")) used.push_back(j.at("threads").get<int>());
    return used;
  };
  const std::vector<int> two = run(2, "two"), one = run(1, "one");
  set_num_threads(before);
  REQUIRE(two.size() == 10);
  // The chooser's first steps alternate one thread and two (its probe), so the run mixed them.
  CHECK(std::count(two.begin(), two.end(), 1) >= 2);
  CHECK(std::count(two.begin(), two.end(), 2) >= 2);
  CHECK(std::count(one.begin(), one.end(), 1) == 10);
  const auto l2 = train_losses(d / "two/metrics.jsonl"), l1 = train_losses(d / "one/metrics.jsonl");
  REQUIRE(l2.size() == l1.size());
  for (size_t i = 0; i < l1.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(l2[i] == l1[i]);  // bit-identical
  }
  CHECK(test_loss["two"] == test_loss["one"]);
}
