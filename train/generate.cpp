#include "train/generate.h"

#include "core/memory_limit.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "core/error.h"

namespace mg {

void SampleOptions::validate() const {
  MG_CHECK(bytes >= 0, "[generate] --bytes must be >= 0, got {}", bytes);
  MG_CHECK(std::isfinite(temperature) && temperature >= 0,
           "[generate] --temperature must be >= 0 and finite (0: greedy), got {}", temperature);
  MG_CHECK(top_k >= 0, "[generate] --top-k must be >= 0 (0: no cut), got {}", top_k);
  MG_CHECK(top_p > 0 && top_p <= 1, "[generate] --top-p must be in (0, 1] (1: no cut), got {}", top_p);
  MG_CHECK(num_samples >= 1, "[generate] --num-samples must be at least 1, got {}", num_samples);
  MG_CHECK(uint64_t(num_samples - 1) <= ~uint64_t(0) - seed,
           "[generate] --seed {} with --num-samples {}: continuation i uses seed + i, which passes 2^64 - 1; use a "
           "--seed of at most {}",
           seed, num_samples, ~uint64_t(0) - uint64_t(num_samples - 1));
}

std::vector<std::string> generate_samples(const MambaLM& model, const std::string& prompt, const SampleOptions& o,
                                          const std::function<void(int64_t, char)>& emit) {
  o.validate();
  NoGradGuard ng;
  const Device device = model.device();
  const int64_t n = o.num_samples, vocab = model.config().vocab_size;
  const std::string context = prompt.empty() ? std::string("\n") : prompt;
  const MambaConfig& c = model.config();
  // In double: --bytes near 2^63 plus the prompt's length must not wrap. The texts count only where kept.
  check_fits_in_memory(
      (double)n * ((o.keep ? (double)o.bytes : 0.0) + (double)context.size()) +
          c.forward_bytes((double)n * (double)context.size()) +
          4.0 * (double)n * (double)c.n_layer * (double)c.d_inner() * (double)(c.d_state + c.d_conv),
      "generate",
      o.keep ? mg::format("--num-samples {} x (--bytes {} + a prompt of {} bytes), with their states", n, o.bytes,
                          context.size())
             : mg::format("--num-samples {} x a prompt of {} bytes, with their states", n, context.size()),
      o.keep ? "; use a smaller --num-samples or --bytes" : "; use a shorter prompt");
  std::vector<int64_t> ids;
  for (unsigned char c : context) {
    MG_CHECK(c < vocab, "[generate] the prompt's byte {} (at offset {}) is outside the model's vocabulary of {}",
             (int)c, ids.size(), vocab);
    ids.push_back(c);
  }
  std::vector<LayerState> state;
  Tensor logits = model.prefill(from_vector<int64_t>(ids, {1, (int64_t)ids.size()}, device), state);
  if (n > 1) {  // every continuation starts from the prompt's state
    for (auto& s : state) {
      s.conv = contiguous(expand(s.conv, {n, s.conv.size(1), s.conv.size(2)}));
      s.ssm = contiguous(expand(s.ssm, {n, s.ssm.size(1), s.ssm.size(2)}));
    }
    logits = contiguous(expand(logits, {n, logits.size(1)}));
  }
  std::vector<Generator> gens;
  for (int64_t i = 0; i < n; ++i) gens.emplace_back(o.seed + (uint64_t)i);
  std::vector<std::string> out(n);
  std::vector<double> u(o.temperature > 0 ? n : 0);
  for (int64_t t = 0; t < o.bytes; ++t) {
    for (size_t i = 0; i < u.size(); ++i) u[i] = gens[i].next_uniform();
    Tensor picks = sample_tokens(logits, vocab, o.temperature, o.top_k, u, o.top_p);  // (n) on the device
    Tensor host = device.is_cpu() ? picks : to_device(picks, kCPU);
    const int64_t* p = host.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      MG_CHECK(p[i] >= 0,
               "[generate] the model's logits hold NaN or are all -inf (continuation {}, byte {}): the weights are "
               "broken",
               i, t);
      if (o.keep) out[i] += (char)p[i];
      if (emit) emit(i, (char)p[i]);
    }
    if (t + 1 < o.bytes) logits = model.step(picks, state);
  }
  return out;
}

std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& o,
                     const std::function<void(char)>& emit) {
  MG_CHECK(o.num_samples == 1, "[generate] generate() makes one continuation; use generate_samples for {}",
           o.num_samples);
  return generate_samples(model, prompt, o,
                          emit ? [&](int64_t, char c) { emit(c); } : std::function<void(int64_t, char)>())[0];
}

}  // namespace mg
