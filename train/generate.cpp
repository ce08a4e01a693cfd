#include "train/generate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"

namespace mg {

void SampleOptions::validate() const {
  MG_CHECK(bytes >= 0, "[generate] --bytes must be >= 0, got {}", bytes);
  MG_CHECK(std::isfinite(temperature) && temperature >= 0,
           "[generate] --temperature must be >= 0 and finite (0: greedy), got {}", temperature);
  MG_CHECK(top_k >= 0, "[generate] --top-k must be >= 0 (0: no cut), got {}", top_k);
}

std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& o,
                     const std::function<void(char)>& emit) {
  o.validate();
  NoGradGuard ng;
  auto state = model.initial_state(1);
  Generator gen(o.seed);
  const int64_t vocab = model.config().vocab_size;
  // An empty prompt starts from a newline, as if at the start of a line.
  std::string context = prompt.empty() ? std::string("\n") : prompt;
  Tensor logits;
  const Device device = model.device();
  for (unsigned char c : context) logits = model.step(from_vector<int64_t>({(int64_t)c}, {1}, device), state);
  std::string out;
  for (int64_t i = 0; i < o.bytes; ++i) {
    std::vector<float> l = logits.to_vector<float>();
    l.resize(vocab);  // padded rows are never sampled
    int64_t pick = 0;
    if (o.temperature == 0) {
      pick = std::max_element(l.begin(), l.end()) - l.begin();
    } else {
      std::vector<int64_t> idx(vocab);
      for (int64_t k = 0; k < vocab; ++k) idx[k] = k;
      int64_t keep = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
      std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
      std::vector<double> p(keep);
      double mx = l[idx[0]], total = 0;
      for (int64_t k = 0; k < keep; ++k) total += p[k] = std::exp((l[idx[k]] - mx) / o.temperature);
      double r = gen.next_uniform() * total;
      pick = idx[keep - 1];
      for (int64_t k = 0; k < keep; ++k) {
        if (r < p[k]) {
          pick = idx[k];
          break;
        }
        r -= p[k];
      }
    }
    char c = (char)pick;
    out += c;
    if (emit) emit(c);
    logits = model.step(from_vector<int64_t>({pick}, {1}, device), state);
  }
  return out;
}

}  // namespace mg
