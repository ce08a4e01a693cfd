#include "introspect/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>

#include "autograd/node.h"
#include "core/error.h"
#include "core/storage.h"
#include "cuda/runtime.h"

namespace mg {

namespace {

// The session's events: a mutex per event is fine, the profiler is for looking, not for speed.
struct Session {
  std::mutex mu;
  bool recording = false;
  std::atomic<bool> paused{false};  // read by the ops' threads without the lock
  std::chrono::steady_clock::time_point t0;
  std::vector<ProfileEvent> events;
  uint32_t next_tid = 1;
  // CUDA ops whose device events are not read yet (events[index]), and per device the anchor: an event
  // recorded on an idle device at host time anchor_ns, from which device times are placed on the host clock.
  struct Pending {
    size_t index;
    cuda::TimingEvent start, end;
  };
  std::vector<Pending> pending;
  struct Anchor {
    cuda::TimingEvent event = nullptr;
    int64_t host_ns = 0;
  };
  std::map<int, Anchor> anchors;
};
Session g_session;

// An op or a vjp open on this thread.
struct Frame {
  std::string_view name;
  bool vjp = false;
  bool timed = false;    // false while the session is paused
  int cuda_device = -1;  // >= 0: an input is on this CUDA device (timed there with events)
  cuda::TimingEvent cuda_start = nullptr;
  std::string shapes;
  int64_t t0 = 0;
  uint64_t bytes0 = 0;
};
thread_local std::vector<Frame> t_frames;
thread_local std::vector<size_t> t_backward_marks;  // t_frames' size at each open backward_begin
thread_local int t_depth = 0;                       // timed frames open on this thread
thread_local uint32_t t_tid = 0;
thread_local uint64_t t_session = 0;      // which session pushed this thread's frames
thread_local uint64_t t_tid_session = 0;  // which session numbered this thread
uint64_t g_session_serial = 0;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - g_session.t0).count();
}

// Reads the pending CUDA ops' device times (waiting for them) and frees their events; with `release`, the
// anchors too. A device fault leaves those events without a device time (the next sync reports it).
void resolve_pending_locked(bool release) {
  for (const Session::Pending& p : g_session.pending) {
    ProfileEvent& e = g_session.events[p.index];
    try {
      const Session::Anchor& a = g_session.anchors.at(e.device);
      e.device_dur_ns = static_cast<int64_t>(cuda::elapsed_ms(p.start, p.end) * 1e6);
      e.device_ts_ns = a.host_ns + static_cast<int64_t>(cuda::elapsed_ms(a.event, p.start) * 1e6);
    } catch (...) {
      e.device_dur_ns = e.device_ts_ns = 0;
    }
    cuda::release_timing_event(p.start);
    cuda::release_timing_event(p.end);
  }
  g_session.pending.clear();
  if (!release) return;
  for (auto& [device, a] : g_session.anchors) cuda::release_timing_event(a.event);
  g_session.anchors.clear();
}

void append_shape(std::string& s, const Tensor& t) {
  if (!s.empty()) s += ' ';
  s += t.defined() ? mg::format("{}", t.shape()) : std::string("-");
}

// Records a cuda event on the frame's device; the first of the session on a device also anchors its clock.
// A device fault here leaves the op untimed on the device; the op's own checks report it.
void start_on_device(Frame& f) {
  try {
    std::lock_guard lock(g_session.mu);
    Session::Anchor& a = g_session.anchors[f.cuda_device];
    if (!a.event) {
      cuda::synchronize(f.cuda_device);
      a.event = cuda::record_timing_event(f.cuda_device);
      a.host_ns = now_ns();
    }
    f.cuda_start = cuda::record_timing_event(f.cuda_device);
  } catch (...) {}
}

// Opens a frame on this thread: `inputs` are an op's inputs, or a vjp's output gradients.
// Forgets the frames a stopped session left open on this thread.
void sync_thread() {
  if (t_session != g_session_serial) t_frames.clear(), t_backward_marks.clear(), t_depth = 0;
  t_session = g_session_serial;
}

void push_frame(std::string_view name, bool vjp, const Tensor* const* inputs, size_t n) {
  sync_thread();
  Frame& f = t_frames.emplace_back();
  f.name = name, f.vjp = vjp;
  if (g_session.paused) return;
  f.timed = true;
  for (size_t i = 0; i < n; ++i) {
    append_shape(f.shapes, *inputs[i]);
    if (f.cuda_device < 0 && inputs[i]->defined() && inputs[i]->device().is_cuda())
      f.cuda_device = inputs[i]->device().index;
  }
  // CUDA ops are queued, not run: an event before and one after the op on the device's stream time its work there.
  if (f.cuda_device >= 0) start_on_device(f);
  ++t_depth;
  f.bytes0 = storage_bytes_allocated_by_this_thread();
  f.t0 = now_ns();
}

// Closes this thread's innermost frame (if this session opened it) and keeps its event.
void pop_frame() {
  if (t_session != g_session_serial || t_frames.empty()) return;
  Frame f = std::move(t_frames.back());
  t_frames.pop_back();
  if (!f.timed) return;
  --t_depth;
  cuda::TimingEvent cuda_end = nullptr;
  if (f.cuda_start) {
    try {
      cuda_end = cuda::record_timing_event(f.cuda_device);
    } catch (...) {}
  }
  ProfileEvent e;
  e.name = std::string(f.name);
  e.backward = f.vjp || !t_backward_marks.empty();
  e.depth = t_depth;
  e.ts_ns = f.t0;
  e.dur_ns = now_ns() - f.t0;
  e.bytes = storage_bytes_allocated_by_this_thread() - f.bytes0;
  e.shapes = std::move(f.shapes);
  std::lock_guard lock(g_session.mu);
  // Stopped while the op ran, or its device end event could not be recorded: nothing to keep.
  if (!g_session.recording || g_session.paused || (f.cuda_start && !cuda_end)) {
    cuda::release_timing_event(f.cuda_start);
    cuda::release_timing_event(cuda_end);
    return;
  }
  if (t_tid_session != g_session_serial) t_tid = g_session.next_tid++, t_tid_session = g_session_serial;
  e.tid = t_tid;
  if (f.cuda_start) {
    e.device = f.cuda_device;
    g_session.pending.push_back({g_session.events.size(), f.cuda_start, cuda_end});
  }
  g_session.events.push_back(std::move(e));
}

class ProfilerObserver final : public EngineObserver {
 public:
  void op_begin(OpKind op, const Tensor* const* inputs, size_t n) override { push_frame(op.name(), false, inputs, n); }
  void op_end(OpKind) override { pop_frame(); }
  void vjp_begin(const Node& node, const std::vector<Tensor>& grads) override {
    std::vector<const Tensor*> ps;
    for (const Tensor& g : grads) ps.push_back(&g);
    push_frame(node.name(), true, ps.data(), ps.size());
  }
  void vjp_end(const Node&, const std::vector<Tensor>&) override { pop_frame(); }
  void backward_begin(const std::vector<Tensor>&, const std::vector<Tensor>&) override {
    sync_thread();
    t_backward_marks.push_back(t_frames.size());
  }
  // A vjp that threw left its frame open: it is dropped.
  void backward_end() override {
    if (t_backward_marks.empty()) return;
    while (t_frames.size() > t_backward_marks.back()) {
      if (t_frames.back().timed) --t_depth;
      cuda::release_timing_event(t_frames.back().cuda_start);
      t_frames.pop_back();
    }
    t_backward_marks.pop_back();
  }
};
ProfilerObserver g_profiler_observer;

}  // namespace

// ---- the session ----

Profiler::Profiler() {
  std::lock_guard lock(g_session.mu);
  MG_CHECK(!g_session.recording, "[profiler] a profiler is already recording; one records at a time");
  g_session.recording = true;
  g_session.paused = false;
  resolve_pending_locked(true);  // none are left (the last session's stop read them), but never index a cleared list
  g_session.events.clear();
  g_session.next_tid = 1;
  ++g_session_serial;
  g_session.t0 = std::chrono::steady_clock::now();
  recording_ = true;
  add_engine_observer(&g_profiler_observer);
}

Profiler::~Profiler() { stop(); }

void Profiler::stop() {
  if (!recording_) return;
  remove_engine_observer(&g_profiler_observer);
  std::lock_guard lock(g_session.mu);
  g_session.recording = false;
  recording_ = false;
  resolve_pending_locked(true);
}

void Profiler::pause() {
  if (!recording_) return;
  std::lock_guard lock(g_session.mu);
  g_session.paused = true;
}

void Profiler::resume() {
  if (!recording_) return;
  std::lock_guard lock(g_session.mu);
  g_session.paused = false;
}

Profiler::StepScope::StepScope(Profiler& p, int64_t index) : p_(p), index_(index), t0_(now_ns()) {}
Profiler::StepScope::~StepScope() {
  std::lock_guard lock(g_session.mu);
  if (!g_session.paused && p_.recording_) p_.steps_.push_back({index_, t0_, now_ns() - t0_});
}

std::vector<ProfileEvent> Profiler::events() const {
  std::vector<ProfileEvent> out;
  {
    std::lock_guard lock(g_session.mu);
    resolve_pending_locked(false);
    out = g_session.events;
  }
  std::stable_sort(out.begin(), out.end(), [](const ProfileEvent& a, const ProfileEvent& b) {
    return a.tid != b.tid ? a.tid < b.tid : a.ts_ns < b.ts_ns;
  });
  return out;
}

std::vector<ProfileRow> Profiler::table() const {
  std::map<std::string, ProfileRow> rows;
  for (const ProfileEvent& e : events()) {
    if (e.depth != 0) continue;  // its time is already in the op that called it
    ProfileRow& r = rows[e.name];
    r.op = e.name;
    (e.backward ? r.backward_calls : r.calls) += 1;
    (e.backward ? r.backward_ms : r.forward_ms) += (e.device >= 0 ? e.device_dur_ns : e.dur_ns) * 1e-6;
    r.bytes += e.bytes;
  }
  std::vector<ProfileRow> out;
  for (auto& [name, r] : rows) out.push_back(r);
  std::stable_sort(out.begin(), out.end(), [](const ProfileRow& a, const ProfileRow& b) {
    return a.forward_ms + a.backward_ms > b.forward_ms + b.backward_ms;
  });
  return out;
}

std::string Profiler::table_text() const {
  const std::vector<ProfileRow> rows = table();
  double step_ms = 0, fwd = 0, bwd = 0;
  uint64_t bytes = 0;
  for (const ProfileStep& s : steps_) step_ms += s.dur_ns * 1e-6;
  for (const ProfileRow& r : rows) fwd += r.forward_ms, bwd += r.backward_ms, bytes += r.bytes;
  const double denom = step_ms > 0 ? step_ms : fwd + bwd;
  auto share = [&](double ms) { return denom > 0 ? mg::format("{:5.1f}%", 100.0 * ms / denom) : std::string("    -"); };
  std::string s = mg::format("{:<24} {:>7} {:>7} {:>11} {:>11} {:>7} {:>10}\n", "op", "calls", "bwd", "forward ms",
                             "backward ms", "share", "MiB alloc");
  for (const ProfileRow& r : rows)
    s += mg::format("{:<24} {:>7} {:>7} {:>11.2f} {:>11.2f} {:>7} {:>10.1f}\n", r.op, r.calls, r.backward_calls,
                    r.forward_ms, r.backward_ms, share(r.forward_ms + r.backward_ms), r.bytes / 1048576.0);
  if (step_ms > 0) {
    s += mg::format("{:<24} {:>7} {:>7} {:>11} {:>11} {:>7} {:>10}\n", "(outside ops)", "", "", "", "",
                    share(step_ms - fwd - bwd), "");
    s +=
        mg::format("{:<24} {:>7} {:>7} {:>11.2f} {:>11.2f} {:>7} {:>10.1f}   ({} step{}, {:.2f} ms)\n", "total", "", "",
                   fwd, bwd, share(step_ms), bytes / 1048576.0, steps_.size(), steps_.size() == 1 ? "" : "s", step_ms);
  }
  return s;
}

std::string Profiler::chrome_trace() const {
  std::string s = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  auto sep = [&] {
    if (!first) s += ",\n";
    first = false;
  };
  for (const ProfileStep& st : steps_) {
    sep();
    s += mg::format(R"({{"name": "step {}", "cat": "step", "ph": "X", "ts": {:.3f}, "dur": {:.3f}, "pid": 1, )"
                    R"("tid": 0}})",
                    st.index, st.ts_ns * 1e-3, st.dur_ns * 1e-3);
  }
  const std::vector<ProfileEvent> evs = events();
  bool on_device = false;
  for (const ProfileEvent& e : evs) {
    sep();
    s += mg::format(R"({{"name": "{}", "cat": "{}", "ph": "X", "ts": {:.3f}, "dur": {:.3f}, "pid": 1, "tid": {}, )"
                    R"("args": {{"shapes": "{}", "bytes": {}, "depth": {}}}}})",
                    e.name, e.backward ? "backward" : "forward", e.ts_ns * 1e-3, e.dur_ns * 1e-3, e.tid, e.shapes,
                    e.bytes, e.depth);
    if (e.device < 0) continue;
    on_device = true;
    sep();
    s += mg::format(R"({{"name": "{}", "cat": "cuda", "ph": "X", "ts": {:.3f}, "dur": {:.3f}, "pid": 2, "tid": {}, )"
                    R"("args": {{"shapes": "{}", "backward": {}, "depth": {}}}}})",
                    e.name, e.device_ts_ns * 1e-3, e.device_dur_ns * 1e-3, e.device, e.shapes, e.backward, e.depth);
  }
  if (on_device) {  // names the two tracks
    sep();
    s += R"({"name": "process_name", "cat": "__metadata", "ph": "M", "pid": 1, "args": {"name": "host"}},)"
         "\n"
         R"({"name": "process_name", "cat": "__metadata", "ph": "M", "pid": 2, "args": {"name": "cuda"}})";
  }
  s += "\n]}\n";
  return s;
}

}  // namespace mg
