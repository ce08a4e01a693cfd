// Threading. The thread count comes from set_num_threads (the CLI's --threads), else from the
// MG_NUM_THREADS environment variable, else OpenMP's default.
#pragma once
#include <algorithm>
#include <cstdint>
#include <mutex>

namespace mg {

int num_threads();
void set_num_threads(int n);

// Runs f(begin, end) over [0, n) split into contiguous ranges across threads; serial when the work
// (n * cost_per_item) is small. Each index is processed exactly once.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f);

// For work repeated many times with the same shape (a decoding step), whether to run the next one on
// one thread or split across the threads, chosen by timing both. A split pays only while every thread
// runs: on a shared machine, a thread waiting at the join for a descheduled one loses a scheduler slice
// (milliseconds) on a step of about a millisecond. So, in kAuto, the chooser probes: 8 runs alternating
// one thread and split, the first pair a warm-up, then compares the other 3 of each way. It splits
// only if the split's median is at least 10% faster and none of its 3 runs was slower than the
// one-thread median; a split probe slower than the first one-thread probe ends the probe at once.
// A choice holds for a run of steps: a split run lasts 64 steps, doubling (to 4096) while probes
// confirm it, and ends early at the second split step slower than both twice the split median and
// the one-thread median (a process started beside us). A one-thread run lasts 64 steps, 4x longer
// (to 4096) each time the split loses again, and back to 64 once a split run completes. On a busy
// machine the cost is two split steps every 4096 after the first few probes.
// The caller must make both ways give the same results (tests check that the model's step does).
class SplitChooser {
 public:
  enum class Mode { kAuto, kSerial, kSplit };
  void set_mode(Mode m);
  Mode mode() const;
  bool next();                              // split the next run?
  void record(bool split, double seconds);  // how long a run took, as next() said to run it
  int64_t split_runs() const;               // runs recorded as split, in any mode

 private:
  void decide();
  static constexpr int kProbe = 8, kMinRun = 64, kMaxRun = 4096, kStalls = 2;
  mutable std::mutex mu_;
  Mode mode_ = Mode::kAuto;
  int probe_ = 0;             // runs of the current probe done (kProbe: not probing)
  double serial_s_[3] = {}, split_s_[3] = {};
  double serial_med_ = 0, split_med_ = 0;
  bool decided_ = false, choice_ = false;
  int64_t split_len_ = kMinRun, serial_len_ = kMinRun, run_left_ = 0;
  int stalls_ = 0;
  int64_t split_runs_ = 0;
};

}  // namespace mg

#include <omp.h>

namespace mg {

template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 0) return;
  constexpr int64_t kGrain = 32768;  // below this much work a thread costs more than it saves
  int nt = num_threads();
  if (nt <= 1 || n * cost_per_item < kGrain || omp_in_parallel()) {
    f(int64_t(0), n);
    return;
  }
  int64_t chunks = std::min<int64_t>(nt, n);
#pragma omp parallel for num_threads(chunks) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    f(b, e);
  }
}

}  // namespace mg
