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

inline TrainOptions tiny_options(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.data = data;
  o.out = out;
  o.preset = "tiny";
  o.config = MambaConfig::preset("tiny");
  o.config.d_model = 32;
  o.config.n_layer = 1;
  o.steps = 8;
  o.batch = 4;
  o.seq = 32;
  o.warmup = 2;
  o.eval_every = 4;
  o.eval_bytes = 2048;
  o.test_bytes = 2048;
  o.progress = false;
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
