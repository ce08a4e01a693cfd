// The op profiler (as torch.profiler): while a Profiler is recording, every op's forward and every
// vjp the engine runs is timed (wall clock, per thread) with its input shapes and the bytes of storage
// it allocated (CUDA ops also on the device, with events), and the session gives a Chrome trace (chrome://tracing,
// ui.perfetto.dev) and a table per op. It is an engine observer (autograd/observer.h): the ops' OpScopes
// and the engine's vjps tell it what to time. Off by default, and then it costs the engine nothing. See
// docs/introspection.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mg {

// One timed interval: an op's forward (top level or nested in another op) or a vjp run by the engine.
struct ProfileEvent {
  std::string name;       // the op ("matmul"), or the node a vjp belongs to ("selective_scan", "AccumulateGrad")
  bool backward = false;  // run inside the backward engine (a vjp, or an op a vjp or the engine called)
  int depth = 0;          // 0: not inside another recorded op on its thread (what the table counts)
  uint32_t tid = 0;       // the thread, numbered from 1 in order of first event
  int64_t ts_ns = 0;      // start, from the session's start
  int64_t dur_ns = 0;
  uint64_t bytes = 0;  // storage bytes allocated on this thread during the event (nested ops included)
  std::string shapes;  // the inputs' shapes ("(2, 16, 128) (128,)"); for a vjp, its output gradients'
  // An op on a CUDA device is queued, not run, while the host is in it: ts_ns/dur_ns are the host's time
  // (the launches), and these are the device's, from CUDA events queued on the device's stream before and
  // after it (aligned to the host clock at the first CUDA op of the session). The table counts these.
  int device = -1;  // >= 0: an input is on this CUDA device
  int64_t device_ts_ns = 0, device_dur_ns = 0;
};

// A step marked by the caller (Profiler::StepScope): the table's "share of the step" divides by these.
struct ProfileStep {
  int64_t index = 0;
  int64_t ts_ns = 0, dur_ns = 0;
};

// One row of the table: the top-level events of one op name. Rows add up: their forward and backward
// times sum to the time inside ops, and the table adds a row "(outside ops)" for the rest of the steps.
struct ProfileRow {
  std::string op;
  int64_t calls = 0;  // top-level forward events
  int64_t backward_calls = 0;
  double forward_ms = 0, backward_ms = 0;
  uint64_t bytes = 0;
};

class Profiler {
 public:
  // Starts recording. One profiler records at a time (throws mg::Error when another is recording).
  Profiler();
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops recording (also done by the destructor); pause()/resume() skip steps in between.
  void stop();
  void pause();
  void resume();
  bool recording() const { return recording_; }

  // Marks a step: { Profiler::StepScope s(prof, i); train_step(...); }
  class StepScope {
   public:
    StepScope(Profiler& p, int64_t index);
    ~StepScope();
    StepScope(const StepScope&) = delete;
    StepScope& operator=(const StepScope&) = delete;

   private:
    Profiler& p_;
    int64_t index_, t0_;
  };

  // Copies of what was recorded so far (events sorted by thread, then start time).
  std::vector<ProfileEvent> events() const;
  const std::vector<ProfileStep>& steps() const { return steps_; }
  // Top-level events per op, largest total time first; a CUDA op counts its device time.
  std::vector<ProfileRow> table() const;
  // The table as text: calls, forward ms, backward ms, share of the steps' time, MiB allocated; with a
  // row for the time outside ops (the optimizer, the engine's bookkeeping) and the total.
  std::string table_text() const;
  // The Chrome trace event format: {"traceEvents": [{"name", "cat", "ph": "X", "ts", "dur" (µs), "pid",
  // "tid", "args": {"shapes", "bytes", "depth"}}, ...]}, steps as events of cat "step"; CUDA ops once more
  // as their device time on a track of their own (pid 2, "cuda", one tid per device).
  std::string chrome_trace() const;

 private:
  bool recording_ = false;
  std::vector<ProfileStep> steps_;
};

}  // namespace mg
