// Sampling bytes from a trained model with its recurrent step.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "models/mamba.h"

namespace mg {

struct SampleOptions {
  int64_t bytes = 500;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: no cut
  uint64_t seed = 0;
  // Throws mg::Error naming the option (--bytes, --temperature, --top-k) and its valid range.
  void validate() const;
};

// Feeds `prompt` through the recurrent step, then samples; each byte goes to `emit` as it is made.
// Runs on the model's device; each step's logits are read back to the host to sample.
std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& opts,
                     const std::function<void(char)>& emit = nullptr);

}  // namespace mg
