#include "core/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace mg {

namespace {
int initial_threads() {
  if (const char* s = std::getenv("MG_NUM_THREADS")) {
    // The whole text, digits only, within --threads' range ("1.5", "1e3" or "2abc" are not taken as 1, 1, 2).
    int n = 0;
    bool digits = *s != 0;
    for (const char* c = s; *c && digits; ++c) {
      digits = *c >= '0' && *c <= '9';
      if (digits && n <= kMaxThreads) n = n * 10 + (*c - '0');
    }
    MG_CHECK(digits && n >= 1 && n <= kMaxThreads, "[threads] MG_NUM_THREADS='{}' is not an integer from 1 to {}", s,
             kMaxThreads);
    return n;
  }
  return omp_get_max_threads();
}
int& thread_count() {
  static int n = initial_threads();
  return n;
}
}  // namespace

int num_threads() { return thread_count(); }

int64_t parallel_pieces(int64_t n, int64_t cost_per_item, int nt, int64_t min_items) {
  // n * cost_per_item can pass 2^63 (callers that always want every thread say 2^40 per item).
  const int64_t by_work =
      cost_per_item > 0 && n > INT64_MAX / cost_per_item ? INT64_MAX : n * cost_per_item / kParallelGrain;
  int64_t pieces = std::min<int64_t>(kPiecesPerThread * nt, by_work);
  if (min_items > 1 && n / min_items < pieces) pieces = n / min_items / nt * nt;
  return std::min<int64_t>(n, std::max<int64_t>(nt, pieces));
}

void set_num_threads(int n) {
  MG_CHECK(n >= 1, "[threads] thread count must be at least 1, got {}", n);
  thread_count() = n;
  omp_set_num_threads(n);
}

void SplitChooser::set_mode(Mode m) {
  std::lock_guard<std::mutex> lock(mu_);
  mode_ = m;
}

SplitChooser::Mode SplitChooser::mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

bool SplitChooser::next() {
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ != Mode::kAuto) return mode_ == Mode::kSplit;
  if (probe_ < kProbe) return probe_ % 2 == 1;  // one thread, split, one thread, ...
  return choice_;
}

int64_t SplitChooser::split_runs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return split_runs_;
}

void SplitChooser::record(bool split, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  split_runs_ += split;
  if (mode_ != Mode::kAuto) return;
  if (probe_ < kProbe) {
    if (split != (probe_ % 2 == 1)) return;  // not the run next() asked for (another caller's)
    // (Through a pointer: GCC 12 with -O1 and the sanitizers copies the arrays of `split ? a : b`
    // and assigns to the copy.)
    double* samples = split ? split_s_ : serial_s_;
    if (probe_ >= 2) samples[(probe_ - 2) / 2] = seconds;
    if (split && probe_ >= 3 && seconds > serial_s_[0]) {  // a split probe slower than one thread: lost
      for (int i = (probe_ - 2) / 2 + 1; i < 3; ++i) split_s_[i] = seconds, serial_s_[i] = serial_s_[0];
      probe_ = kProbe;
      decide();
      return;
    }
    if (++probe_ == kProbe) decide();
    return;
  }
  if (split && seconds > 2 * split_med_ && seconds > serial_med_) ++stalls_;
  if (stalls_ >= kStalls) {  // the machine got busy: back to one thread, probing later and later
    serial_len_ = std::min<int64_t>(4 * serial_len_, kMaxRun);
    probe_ = 0, stalls_ = 0;
  } else if (--run_left_ <= 0) {
    if (choice_) serial_len_ = kMinRun;  // a whole split run without stalls: the machine is free
    probe_ = 0;
  }
}

void SplitChooser::decide() {
  auto median3 = [](const double* t) { return std::max(std::min(t[0], t[1]), std::min(std::max(t[0], t[1]), t[2])); };
  serial_med_ = median3(serial_s_), split_med_ = median3(split_s_);
  // Split only if it is faster by 10% in the median and no split probe stalled.
  const double split_max = std::max({split_s_[0], split_s_[1], split_s_[2]});
  const bool c = split_med_ < 0.9 * serial_med_ && split_max < serial_med_;
  if (c) {
    split_len_ = decided_ && choice_ ? std::min<int64_t>(2 * split_len_, kMaxRun) : kMinRun;
    run_left_ = split_len_;
  } else {
    if (decided_ && !choice_) serial_len_ = std::min<int64_t>(4 * serial_len_, kMaxRun);
    run_left_ = serial_len_;
  }
  decided_ = true, choice_ = c;
}

}  // namespace mg
