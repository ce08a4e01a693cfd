// Sampling bytes from a trained model: the prompt through the parallel forward (prefill), then one
// byte at a time with the recurrent step, every continuation of a batch at once.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/mamba.h"

namespace mg {

struct SampleOptions {
  int64_t bytes = 500;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: no cut
  uint64_t seed = 0;
  int64_t num_samples = 1;  // continuations of the prompt, sampled as one batch; continuation i uses seed + i
  double top_p = 1.0;       // nucleus: the smallest set of the top_k holding top_p of the probability (1: no cut)
  bool keep = true;         // return the texts; false: only emit them (a stream, in memory that does not grow)
  // Throws mg::Error naming the option (--bytes, --temperature, --top-k, --top-p, --num-samples, --seed) and its
  // valid range.
  void validate() const;
};

// opts.num_samples continuations of `prompt` (an empty prompt starts from a newline), sampled together
// on the model's device. Continuation i draws from the generator seeded seed + i, and a row's
// arithmetic does not depend on the batch, so it is the same text as the single continuation with that
// seed. emit(i, byte) is called for each byte as it is made; the texts come back where opts.keep (empty
// strings otherwise). Only the picked bytes come back from the device, never the logits (ops/sample.cpp).
std::vector<std::string> generate_samples(const MambaLM& model, const std::string& prompt, const SampleOptions& opts,
                                          const std::function<void(int64_t, char)>& emit = nullptr);

// One continuation (opts.num_samples must be 1); each byte goes to `emit` as it is made.
std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& opts,
                     const std::function<void(char)>& emit = nullptr);

}  // namespace mg
