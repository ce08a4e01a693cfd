// Threading. The thread count comes from set_num_threads (the CLI's --threads), else from the
// MG_NUM_THREADS environment variable, else OpenMP's default.
#pragma once
#include <algorithm>
#include <cstdint>
#include <mutex>

namespace mg {

// The most threads a user may ask for (--threads, MG_NUM_THREADS).
inline constexpr int kMaxThreads = 4096;

int num_threads();
void set_num_threads(int n);

// Runs f(begin, end) over [0, n) split into contiguous ranges (parallel_pieces) across threads; serial
// when the work (n * cost_per_item) is small. Each index is processed exactly once. min_items: a piece
// holds at least this many items where it can (for work whose every piece pays a fixed cost of its
// own, as the gemm's pieces each pack a whole operand).
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f, int64_t min_items = 1);
// Below this much work (n * cost_per_item) parallel_for runs on the calling thread alone.
inline constexpr int64_t kParallelGrain = 32768;
// How many contiguous pieces parallel_for cuts [0, n) into for nt threads: up to kPiecesPerThread per
// thread while each piece still holds kParallelGrain work, at least nt, at most n. The threads take the
// pieces first come, first served, so a thread that shares its core with another process takes fewer
// of them instead of holding the others at the join (docs/perf.md, "Training beside a busy process").
// Every kernel makes its results independent of the pieces (sums in an order fixed by the sizes).
// With min_items > 1, fewer pieces where each would hold fewer items, a multiple of nt (whole rounds
// of the threads), never fewer than nt.
inline constexpr int64_t kPiecesPerThread = 4;
int64_t parallel_pieces(int64_t n, int64_t cost_per_item, int nt, int64_t min_items = 1);

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
  int probe_ = 0;  // runs of the current probe done (kProbe: not probing)
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
void parallel_for(int64_t n, int64_t cost_per_item, F&& f, int64_t min_items) {
  if (n <= 0) return;
  const int nt = num_threads();
  if (nt <= 1 || n * cost_per_item < kParallelGrain || omp_in_parallel()) {
    f(int64_t(0), n);
    return;
  }
  const int64_t pieces = parallel_pieces(n, cost_per_item, nt, min_items);
#pragma omp parallel for num_threads((int)std::min <int64_t>(nt, pieces)) schedule(dynamic, 1)
  for (int64_t c = 0; c < pieces; ++c) {
    int64_t b = n * c / pieces, e = n * (c + 1) / pieces;
    f(b, e);
  }
}

}  // namespace mg
