// The trainer end to end on small byte files: bit-exact resume, a non-finite loss stopping with the
// last good checkpoint kept, clear errors for bad data and mismatched checkpoints, evaluation and
// generation.
#include <doctest/doctest.h>

#include <filesystem>
#include <csignal>
#include <fstream>
#include <thread>

#include "train/metrics.h"
#include "io/safetensors.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "train/trainer.h"

using namespace mg;
using test::TempDir;
using test::tiny_options;
using test::write_text;
using test::train_losses;
namespace fs = std::filesystem;

namespace {


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
  TrainOptions resumed = load_run_options(d / "b");
  resumed.progress = false;
  EvalResult rb = train(resumed, true).test;
  auto la = train_losses(d / "a/metrics.jsonl"), lb = train_losses(d / "b/metrics.jsonl");
  REQUIRE(la.size() == 8);
  REQUIRE(lb.size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    INFO("step " << i + 1);
    CHECK(la[i] == lb[i]);  // bit-identical, not approximately equal
  }
  CHECK(ra.loss == rb.loss);
  CHECK(la.back() < la.front());  // and it learned something
  CHECK(fs::exists(d / "b/curves.svg"));
}

TEST_CASE("trainer: a non-finite loss stops training, names the step and keeps the last checkpoint") {
  TempDir d("nan");
  std::string data = write_text(d, 40000);
  TrainOptions o = tiny_options(data, d / "run");
  o.steps = 40;
  o.eval_every = 1;
  o.lr = 1e30;  // blows the weights up after the first steps
  o.clip = 1e30;
  CHECK_THROWS_WITH_AS(train(o, false), doctest::Contains("at step"), Error);
  o.overwrite = true;  // the folder holds the stopped run now
  try {
    train(o, false);
  } catch (const Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("stopping. The last good checkpoint in") != std::string::npos);
  }
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
  std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "run");
  o.steps = 2;
  train(o, false);
  {  // claim a different d_state in config.json
    std::ifstream in(d / "run/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    auto at = cfg.find("\"state_size\": 16");
    REQUIRE(at != std::string::npos);
    cfg.replace(at, 16, "\"state_size\": 8");
    std::ofstream(d / "run/config.json") << cfg;
  }
  CHECK_THROWS_WITH_AS(load_model(d / "run"),
                       doctest::Contains("tensor 'backbone.layers.0.mixer.A_log' in"), Error);
  CHECK_THROWS_WITH_AS(load_model(d / "run"), doctest::Contains("has shape (64, 16), but the model expects (64, 8)"),
                       Error);
  CHECK_THROWS_WITH_AS(load_model(d / "nowhere"), doctest::Contains("is not a run folder"), Error);
}

TEST_CASE("trainer: greedy generation is reproducible and sampling follows its seed") {
  TempDir d("gen");
  std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "run");
  o.steps = 4;
  train(o, false);
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
}

TEST_CASE("trainer: Ctrl-C saves a checkpoint and returns cleanly") {
  TempDir d("sigint");
  std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "run");
  o.steps = 1000000;
  o.eval_every = 0;
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
