// Benchmarks that print figures (never timed tests). `mambagrad bench NAME` runs them.
#pragma once
#include <cstdint>

namespace mg::bench {

struct ScanBenchOptions {
  int reps = 3;            // timed repetitions per measurement (the median is reported)
  int64_t ref_steps = 0;   // time the composed reference on at most this many steps and scale; 0: min(l, 256)
  bool quick = false;      // small shapes, for a smoke test
};

// selective_scan fused vs composed reference: forward and forward+backward times, their ratio,
// bytes moved per second, and the memory the backward needs. Returns 0.
int run_scan_bench(const ScanBenchOptions& o);

}  // namespace mg::bench
