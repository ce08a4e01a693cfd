// A small byte file and the options of a tiny, fast training run, shared by the trainer and run-folder tests.
#pragma once
#include <fstream>
#include <string>
#include <vector>

#include "tests/temp_dir.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace mg::test {

// Text with structure, so a model can learn something in a few steps (`rich`: ten words in a longer
// cycle, which the tiny model learns within a few hundred steps). Written to d/text.txt.
inline std::string write_text(const TempDir& d, size_t n, bool rich = false) {
  std::string s;
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "<page>", "</page>\n", "[[Paris]] ", "is "};
  for (size_t i = 0; s.size() < n; ++i) s += rich ? words[(i * 7 + i / 3 + i / 11) % 10] : words[(i * 7 + i / 3) % 8];
  s.resize(n);
  std::string p = d / "text.txt";
  std::ofstream(p, std::ios::binary) << s;
  return p;
}

// The sizes of a tiny run; the defaults make a fast one (a d_model 32, one-layer model, 8 steps).
struct TinyRun {
  int64_t steps = 8, batch = 4, seq = 32, warmup = 2, eval_every = 4;
  int64_t eval_bytes = 2048;  // validation and test
  int64_t stop_at = -1;
  bool preset_sizes = false;  // the tiny preset's own d_model and layers
  Device device = kCPU;
};

inline TrainOptions tiny_options(const std::string& data, const std::string& out, const TinyRun& r = {}) {
  TrainOptions o;
  o.data = data;
  o.out = out;
  o.preset = "tiny";
  o.config = MambaConfig::preset("tiny");
  if (!r.preset_sizes) o.config.d_model = 32, o.config.n_layer = 1;
  o.steps = r.steps, o.batch = r.batch, o.seq = r.seq, o.warmup = r.warmup, o.eval_every = r.eval_every;
  o.eval_bytes = o.test_bytes = r.eval_bytes;
  o.stop_at = r.stop_at;
  o.progress = false;
  o.device = r.device;
  return o;
}

// A tiny run of `r` trained in d/run on 30,000 bytes of d/text.txt; returns its options.
inline TrainOptions train_tiny(const TempDir& d, const TinyRun& r = {}) {
  TrainOptions o = tiny_options(write_text(d, 30000), d / "run", r);
  train(o, false);
  return o;
}

// The train_loss of every step logged in a metrics.jsonl, in order.
inline std::vector<double> train_losses(const std::string& metrics) {
  std::vector<double> out;
  for (auto& j : read_jsonl(metrics))
    if (j.contains("train_loss")) out.push_back(j["train_loss"].get<double>());
  return out;
}

}  // namespace mg::test
