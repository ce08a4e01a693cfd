// The benchmarks' clocks: wall time on a steady clock, the process's CPU time, and the median they report.
#pragma once
#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace mg::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
inline double ms_since(Clock::time_point t0) { return 1e3 * seconds_since(t0); }

// CPU time of the whole process (all threads). On a shared machine a descheduled thread adds wall time
// but no CPU time, so with one thread the CPU time is the code's own cost.
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}
inline double process_cpu_ms() { return 1e3 * process_cpu_seconds(); }

// The middle value (the upper one of an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace mg::bench
