// Generation: the prompt through the parallel forward (prefill) continues exactly where stepping
// through it would, sampling follows its rule and its seed on every device, and a batch of
// continuations is the same text as each continuation alone.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/cpu_allocator.h"
#include "models/mamba.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/devices.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "train/checkpoint.h"
#include "train/generate.h"

using namespace mg;
using mg::test::TempDir;
using mg::test::tiny_options;
using mg::test::write_text;

namespace {

// A tiny model with every parameter moved off its init, so no path is trivially zero.
std::unique_ptr<MambaLM> perturbed_tiny(uint64_t seed) {
  auto m = std::make_unique<MambaLM>(MambaConfig::preset("tiny"), seed);
  Generator g(seed + 100);
  NoGradGuard ng;
  for (auto& p : m->named_parameters())
    if (p.name.find("A_log") == std::string::npos) p.tensor.add_(randn(p.tensor.shape(), DType::f32, &g), 0.05);
  return m;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<float>(), vb = b.to_vector<float>();
  REQUIRE(va.size() == vb.size());
  double err = 0, ref = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    err = std::max(err, (double)std::abs(va[i] - vb[i]));
    ref = std::max(ref, (double)std::abs(vb[i]));
  }
  return ref > 0 ? err / ref : err;
}

int64_t argmax(const std::vector<float>& v, int64_t n) {
  return std::max_element(v.begin(), v.begin() + n) - v.begin();
}

}  // namespace

TEST_CASE("generate: prefill through the scan leaves the state and logits of stepping through the prompt") {
  auto mp = perturbed_tiny(3);
  MambaLM& m = *mp;
  Generator g(4);
  const int64_t b = 2;
  for (int64_t l : {1, 2, 3, 77}) {  // shorter than the conv (d_conv - 1 = 3 inputs of state) and longer
    CAPTURE(l);
    Tensor prompt = randint(0, 256, {b, l}, &g);
    auto stepped = m.initial_state(b);
    Tensor want;
    for (int64_t t = 0; t < l; ++t) want = m.step(contiguous(narrow(prompt, 1, t, 1).reshape({b})), stepped);
    std::vector<LayerState> pre;
    Tensor got = m.prefill(prompt, pre);
    CHECK(got.shape() == want.shape());
    CHECK(max_rel_diff(got, want) < 1e-5);
    REQUIRE(pre.size() == stepped.size());
    for (size_t i = 0; i < pre.size(); ++i) {
      CHECK(pre[i].conv.shape() == stepped[i].conv.shape());
      CHECK(pre[i].ssm.shape() == stepped[i].ssm.shape());
      CHECK(max_rel_diff(pre[i].conv, stepped[i].conv) < 1e-5);
      CHECK(max_rel_diff(pre[i].ssm, stepped[i].ssm) < 1e-5);
    }
    // And decoding goes on the same way from either state.
    for (int t = 0; t < 20; ++t) {
      Tensor tok = randint(0, 256, {b}, &g);
      CHECK(max_rel_diff(m.step(tok, pre), m.step(tok, stepped)) < 1e-5);
    }
  }
}

TEST_CASE("generate: greedy output is byte-identical to an argmax loop over the step from a zero state") {
  auto mp = perturbed_tiny(5);
  MambaLM& m = *mp;
  const std::string prompt = "The quick brown fox jumps over the lazy dog. ";
  SampleOptions o;
  o.bytes = 200, o.temperature = 0;
  const std::string got = generate(m, prompt, o);
  NoGradGuard ng;
  auto state = m.initial_state(1);
  Tensor logits;
  for (unsigned char c : prompt) logits = m.step(from_vector<int64_t>({c}, {1}), state);
  std::string want;
  for (int i = 0; i < 200; ++i) {
    const int64_t pick = argmax(logits.to_vector<float>(), 256);
    want += (char)pick;
    logits = m.step(from_vector<int64_t>({pick}, {1}), state);
  }
  CHECK(got == want);
}

TEST_CASE("generate: continuation i of a batch is the single continuation with seed + i") {
  auto mp = perturbed_tiny(6);
  MambaLM& m = *mp;
  SampleOptions o;
  o.bytes = 60, o.temperature = 1.0, o.top_k = 0, o.seed = 11, o.num_samples = 4;
  auto batch = generate_samples(m, "abc", o);
  REQUIRE(batch.size() == 4);
  for (int64_t i = 0; i < 4; ++i) {
    SampleOptions one = o;
    one.num_samples = 1, one.seed = o.seed + i;
    CHECK(generate(m, "abc", one) == batch[i]);
  }
  CHECK(batch[0] != batch[1]);  // different seeds, different text
  o.num_samples = 0;
  check_error([&] { generate_samples(m, "abc", o); }, {"[generate] --num-samples must be at least 1, got 0"});
  o.num_samples = 2;
  check_error([&] { generate(m, "abc", o); }, {"[generate] generate() makes one continuation"});
}

TEST_CASE("generate: after the first token, decoding asks the system for no memory") {
  auto mp = perturbed_tiny(7);
  MambaLM& m = *mp;
  NoGradGuard ng;
  auto state = m.initial_state(4);
  Tensor tok = from_vector<int64_t>({1, 2, 3, 4}, {4});
  for (int t = 0; t < 3; ++t) tok = sample_tokens(m.step(tok, state), 256, 1.0, 40, {0.1, 0.5, 0.7, 0.9});
  const size_t before = cpu_system_allocations();
  for (int t = 0; t < 50; ++t) tok = sample_tokens(m.step(tok, state), 256, 1.0, 40, {0.1, 0.5, 0.7, 0.9});
  CHECK(cpu_system_allocations() == before);
}

TEST_CASE("sample: the picks follow softmax(logits / T) over the top k, in the order of the draws") {
  // 9 logits with a tie; for evenly spaced draws u the share of each pick must be its probability
  // (softmax over the kept entries), to within one draw.
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 0.0f, 1.0f, -3.0f, 0.25f, 9.0f};
  const int64_t vocab = 8;  // the last column is padding: never picked
  Tensor logits = from_vector<float>(l, {1, 9});
  for (double T : {0.5, 1.0, 2.0})
    for (int64_t k : {0, 1, 3, 5})
      for (double top_p : {1.0, 0.9, 0.5, 0.05}) {
        CAPTURE(T);
        CAPTURE(k);
        CAPTURE(top_p);
        std::vector<int> idx = {0, 1, 2, 3, 4, 5, 6, 7};
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
        int keep = k == 0 ? 8 : (int)k;
        // The nucleus (Hugging Face's top_p): of the top k by probability, the likeliest ones until the ones
        // before reach top_p of their probability.
        double z = 0;
        for (int j = 0; j < keep; ++j) z += std::exp(l[idx[j]] / T);
        double before = 0;
        for (int j = 0; j < keep; ++j) {
          if (j > 0 && before >= top_p) {
            keep = j;
            break;
          }
          before += std::exp(l[idx[j]] / T) / z;
        }
        std::vector<double> prob(8, 0.0);
        z = 0;
        for (int j = 0; j < keep; ++j) z += std::exp(l[idx[j]] / T);
        for (int j = 0; j < keep; ++j) prob[idx[j]] = std::exp(l[idx[j]] / T) / z;
        const int N = 2000;
        std::vector<int> count(9, 0);
        std::vector<int> rank(9, 99);
        for (int j = 0; j < 8; ++j) rank[idx[j]] = j;
        int last_rank = -1;
        bool ordered = true;
        for (int i = 0; i < N; ++i) {
          const int64_t pick = sample_tokens(logits, vocab, T, k, {(i + 0.5) / N}, top_p).to_vector<int64_t>()[0];
          REQUIRE(pick >= 0);
          REQUIRE(pick < vocab);
          ++count[pick];
          ordered &= rank[pick] >= last_rank;  // ascending draws walk the kept entries likeliest first
          last_rank = rank[pick];
        }
        CHECK(ordered);
        for (int v = 0; v < 9; ++v) CHECK(std::abs(count[v] / double(N) - (v < 8 ? prob[v] : 0.0)) <= 1.0 / N + 1e-12);
      }
  // Greedy: the first of the largest; NaN gives -1.
  CHECK(sample_tokens(logits, 8, 0.0, 0).to_vector<int64_t>()[0] == 1);
  CHECK(sample_tokens(logits, 9, 0.0, 0).to_vector<int64_t>()[0] == 8);
  Tensor bad = from_vector<float>({1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f, 0.5f, 0.1f, 0.2f}, {2, 3});
  CHECK(sample_tokens(bad, 3, 1.0, 0, {0.5, 0.1}).to_vector<int64_t>() == std::vector<int64_t>{-1, 0});
  check_error([&] { sample_tokens(logits, 10, 1.0, 0, {0.5}); },
              {"[sample] vocab must be from 1 to the logits' 9 columns, got 10"});
  check_error([&] { sample_tokens(logits, 8, 1.0, 0, {}); },
              {"[sample] needs one uniform draw per row: 1 rows, 0 draws"});
  check_error([&] { sample_tokens(logits, 8, 1.0, 0, {1.0}); }, {"[sample] uniform draws must be in [0, 1), got 1"});
  check_error([&] { sample_tokens(logits, 8, -1.0, 0, {0.5}); }, {"[sample] temperature must be >= 0 and finite"});
  for (double bad_p : {0.0, -0.5, 1.5, std::nan("")})
    check_error([&] { sample_tokens(logits, 8, 1.0, 0, {0.5}, bad_p); }, {"[sample] top_p must be in (0, 1]"});
  // Probabilities 0.4, 0.3, 0.2, 0.1 and top_p 0.5: the first two are kept (0.4 before the second is less
  // than 0.5), weighed 4/7 and 3/7.
  Tensor four = from_vector<double>({std::log(0.2), std::log(0.4), std::log(0.1), std::log(0.3)}, {1, 4});
  auto pick = [&](double u) { return sample_tokens(four, 4, 1.0, 0, {u}, 0.5).to_vector<int64_t>()[0]; };
  CHECK(pick(0.0) == 1);
  CHECK(pick(4.0 / 7 - 1e-9) == 1);
  CHECK(pick(4.0 / 7 + 1e-9) == 3);
  CHECK(pick(0.999999) == 3);
}

namespace {
// Infinite logits: a +inf is picked (the first kept one) whatever the draw; a row of -inf only gives -1
// when sampling (nothing to draw from, as a NaN row) and 0 when greedy (the first of the largest).
void check_sample_infinities(Device dev) {
  const double inf = INFINITY;
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    Tensor l = to_dtype(from_vector<double>({0, inf, 5, inf,          //
                                             -inf, -inf, -inf, -inf,  //
                                             -inf, 2, -inf, -1,       //
                                             inf, -inf, 3, 4},        //
                                            {4, 4}, dev),
                        t);
    for (double u : {0.0, 0.5, 0.999})
      for (int64_t k : {0, 2, 3})
        for (double top_p : {1.0, 0.5}) {
          CAPTURE(u);
          CAPTURE(k);
          CAPTURE(top_p);
          // Row 2: 2 and -1 are finite, the -inf weigh nothing: 2 unless the draw falls in -1's share
          // (e^-3 / (1 + e^-3) of it, about 0.047, only without the nucleus cut).
          const int64_t row2 = u > 1 / (1 + std::exp(-3.0)) && top_p == 1.0 && k != 1 ? 3 : 1;
          CHECK(sample_tokens(l, 4, 1.0, k, {u, u, u, u}, top_p).to(kCPU).to_vector<int64_t>() ==
                std::vector<int64_t>{1, -1, row2, 0});
        }
    CHECK(sample_tokens(l, 4, 0.0, 0).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 0});
    // A +inf beyond vocab is padding: never picked.
    CHECK(sample_tokens(l, 1, 1.0, 0, {0.5, 0.5, 0.5, 0.5}).to(kCPU).to_vector<int64_t>() ==
          std::vector<int64_t>{0, -1, -1, 0});
  }
}
}  // namespace

TEST_CASE("sample: a +inf logit is picked, a row of -inf gives -1 (0 when greedy)") { check_sample_infinities(kCPU); }

TEST_CASE("cuda sample: infinite logits give the CPU's picks (+inf picked, -1 for a row of -inf)") {
  MG_REQUIRE_CUDA();
  check_sample_infinities(kCUDA);
}

TEST_CASE("cuda sample: the device picks the same tokens as the CPU from the same draws") {
  MG_REQUIRE_CUDA();
  Generator g(8);
  for (DType dt : {DType::f32, DType::f64}) {
    // distinct values, and small integers (many ties, at the top too)
    for (Tensor logits : {randn({5, 264}, dt, &g, 0.0, 3.0), to_dtype(randint(0, 5, {5, 264}, &g), dt)}) {
      const std::vector<double> u = {0.0, 0.3, 0.5, 0.77, 0.999};
      Tensor dev = logits.to(kCUDA);
      for (double T : {0.0, 0.7, 1.0, 1.5})
        for (int64_t k : {0, 1, 40, 256})
          for (double top_p : {1.0, 0.8, 0.3}) {
            CAPTURE(T);
            CAPTURE(k);
            CAPTURE(top_p);
            auto want = sample_tokens(logits, 256, T, k, u, top_p).to_vector<int64_t>();
            Tensor got = sample_tokens(dev, 256, T, k, u, top_p);
            CHECK(got.device() == kCUDA);
            CHECK(got.to_vector<int64_t>() == want);
          }
    }
    Tensor tied = from_vector<float>({1, 3, 3, 0, 3, 2}, {2, 3}).to(kCUDA);
    CHECK(sample_tokens(tied, 3, 0.0, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 1});
  }
}

TEST_CASE("cuda generate: a batch of continuations on the device is the text of the CPU") {
  MG_REQUIRE_CUDA();
  auto mp = perturbed_tiny(9);
  MambaLM& m = *mp;
  SampleOptions o;
  o.bytes = 40, o.temperature = 0.9, o.top_k = 20, o.seed = 2, o.num_samples = 3;
  auto cpu = generate_samples(m, "hello", o);
  m.to(kCUDA);
  auto gpu = generate_samples(m, "hello", o);
  // The two devices round differently; a continuation may part ways where two bytes are nearly tied.
  // Over the first bytes they must agree.
  for (int i = 0; i < 3; ++i) CHECK(gpu[i].substr(0, 8) == cpu[i].substr(0, 8));
}

TEST_CASE("generate CLI: --num-samples prints each continuation, --jsonl one object per line") {
  TempDir d("gen_cli");
  TrainOptions o = tiny_options(write_text(d, 30000), d / "run");
  o.steps = 2;
  train(o, false);
  SampleOptions s;
  s.bytes = 30, s.temperature = 1.0, s.seed = 5, s.num_samples = 3;
  const auto want = generate_samples(*load_model(d / "run"), "the ", s);
  auto r = test::run_cli({"generate", "--run", d / "run", "--prompt", "the ", "--bytes", "30", "--temperature", "1",
                          "--seed", "5", "--num-samples", "3", "--jsonl"});
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string line;
  int64_t i = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(j["sample"] == i);
    CHECK(j["seed"] == 5 + i);
    CHECK(j["prompt"] == "the ");
    // bytes that are not UTF-8 become U+FFFD in JSON: compare up to the first byte above ASCII
    const std::string text = j["text"];
    const size_t ascii =
        std::find_if(want[i].begin(), want[i].end(), [](char c) { return (unsigned char)c >= 0x80; }) - want[i].begin();
    CHECK(text.substr(0, ascii) == want[i].substr(0, ascii));
    ++i;
  }
  CHECK(i == 3);
  auto plain = test::run_cli({"generate", "--run", d / "run", "--prompt", "the ", "--bytes", "30", "--temperature", "1",
                              "--seed", "5", "--num-samples", "3"});
  REQUIRE(plain.exit_code == 0);
  for (int64_t k = 0; k < 3; ++k)
    CHECK(plain.out.find(mg::format("== sample {} of 3 (seed {}) ==\nthe {}\n", k + 1, 5 + k, want[k])) !=
          std::string::npos);
  auto bad = test::run_cli({"generate", "--run", d / "run", "--num-samples", "0"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--num-samples: must be a positive integer, got '0'") != std::string::npos);
}

TEST_CASE("generate: a step split across threads gives the bits of one thread, for 2 to 16 sequences") {
  const int saved = num_threads();
  set_num_threads(2);
  auto mp = perturbed_tiny(8);
  MambaLM& m = *mp;
  NoGradGuard ng;
  for (int64_t b : {2, 3, 16}) {
    CAPTURE(b);
    Generator g(9 + b);
    Tensor prompt = randint(0, 256, {b, 5}, &g);
    std::vector<std::vector<float>> logits[2], states[2];
    for (int split = 0; split < 2; ++split) {
      m.step_threads().set_mode(split ? SplitChooser::Mode::kSplit : SplitChooser::Mode::kSerial);
      const int64_t before = m.step_threads().split_runs();
      std::vector<LayerState> state;
      Tensor l = m.prefill(prompt, state);
      for (int t = 0; t < 4; ++t) {
        l = m.step(sample_tokens(l, 256, 0.0, 0), state);
        logits[split].push_back(l.to_vector<float>());
      }
      for (auto& s : state)
        states[split].push_back(s.ssm.to_vector<float>()), states[split].push_back(s.conv.to_vector<float>());
      CHECK(m.step_threads().split_runs() - before == (split ? 4 : 0));  // the split did run
    }
    CHECK(logits[0] == logits[1]);
    CHECK(states[0] == states[1]);
  }
  m.step_threads().set_mode(SplitChooser::Mode::kAuto);
  set_num_threads(saved);
}
