// A counter-based generator: value i of a draw is a hash of (seed, position + i), so the numbers do
// not depend on how many threads fill a tensor, and the state is two integers (easy to checkpoint).
#pragma once
#include <cstdint>

namespace mg {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  void manual_seed(uint64_t seed) { seed_ = seed, offset_ = 0; }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  // 64 random bits for counter c (stateless).
  uint64_t bits(uint64_t c) const {
    uint64_t z = seed_ * 0x9E3779B97F4A7C15ull + c * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform(uint64_t c) const { return (double)(bits(c) >> 11) * 0x1.0p-53; }
  // One draw of the generator used outside tensors (e.g. sampling a window start).
  uint64_t next_u64() { return bits(advance(1)); }
  double next_uniform() { return uniform(advance(1)); }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide default generator (seeded 0 until manual_seed).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace mg
