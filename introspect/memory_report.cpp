#include "introspect/memory_report.h"

#include <algorithm>
#include <array>
#include <map>
#include <unordered_set>

#include "autograd/node.h"
#include "core/error.h"

namespace mg {

namespace {
std::atomic<MemoryTracker*> g_tracker{nullptr};
// This thread's open ops and vjps (the innermost names what allocates; "" marks where a backward
// began), how many backwards are open on it, and the captures of ops whose record() has not come yet.
thread_local std::vector<std::string_view> t_ops;
thread_local int t_backward = 0;
thread_local std::vector<std::pair<OpKind, std::shared_ptr<Storage>>> t_pending;

void close_scope() {
  if (!t_ops.empty()) t_ops.pop_back();
  if (t_ops.empty() || t_ops.back().empty()) t_pending.clear();  // captures of nodes that were never recorded
}
}  // namespace

std::string_view memory_category_name(MemoryCategory c) {
  static constexpr std::array<std::string_view, 5> kNames = {"parameters", "gradients", "optimizer state",
                                                             "activations saved for backward", "other tensors"};
  return kNames.at(static_cast<size_t>(c));
}

MemoryTracker::MemoryTracker() {
  MemoryTracker* none = nullptr;
  MG_CHECK(g_tracker.compare_exchange_strong(none, this), "[memory] a memory tracker is already installed");
  prev_ = set_storage_observer(this);
  t_ops.clear(), t_pending.clear(), t_backward = 0;
  add_engine_observer(this);
}

MemoryTracker::~MemoryTracker() {
  remove_engine_observer(this);
  set_storage_observer(prev_);
  g_tracker.store(nullptr);
}

void MemoryTracker::allocated(const Storage* s) {
  auto e = std::make_shared<Entry>();
  e->bytes = s->nbytes();
  e->op = t_ops.empty() || t_ops.back().empty() ? std::string("(outside ops)") : std::string(t_ops.back());
  e->in_backward = t_backward > 0;
  std::lock_guard lock(mu_);
  live_[s] = std::move(e);
  live_bytes_ += s->nbytes();
  if (live_bytes_ > peak_bytes_) {
    // A new peak: remember what is live now. The entries are shared, so a storage saved for backward
    // after this moment (an op's output is saved once the op returns) is still seen as saved.
    peak_bytes_ = live_bytes_;
    at_peak_.assign(live_.begin(), live_.end());
  }
}

void MemoryTracker::released(const Storage* s) {
  std::lock_guard lock(mu_);
  auto it = live_.find(s);
  if (it == live_.end()) return;  // made before the tracker
  live_bytes_ -= it->second->bytes;
  live_.erase(it);
}

void MemoryTracker::reset_peak() {
  std::lock_guard lock(mu_);
  peak_bytes_ = live_bytes_;
  at_peak_.assign(live_.begin(), live_.end());
}

void MemoryTracker::op_begin(OpKind op, const Tensor* const*, size_t) { t_ops.push_back(op.name()); }
void MemoryTracker::op_end(OpKind) { close_scope(); }
void MemoryTracker::vjp_begin(const Node& node, const std::vector<Tensor>&) { t_ops.push_back(node.name()); }
void MemoryTracker::vjp_end(const Node&, const std::vector<Tensor>&) { close_scope(); }
void MemoryTracker::backward_begin(const std::vector<Tensor>&, const std::vector<Tensor>&) {
  ++t_backward;
  t_ops.push_back("");  // a vjp that throws leaves its name above this mark
}
void MemoryTracker::backward_end() {
  if (t_backward == 0) return;
  --t_backward;
  while (!t_ops.empty() && !t_ops.back().empty()) t_ops.pop_back();
  close_scope();
}

void MemoryTracker::tensor_saved(const Tensor& t, OpKind op) {
  if (t.defined()) t_pending.push_back({op, t.storage()});
}

void MemoryTracker::node_created(OpKind op, Node* node, const std::vector<Tensor*>&) {
  auto keep = t_pending.begin();
  for (auto it = t_pending.begin(); it != t_pending.end(); ++it) {
    if (!(it->first == op)) {  // an enclosing op's captures, waiting for its own record()
      *keep++ = std::move(*it);
      continue;
    }
    if (!node) continue;
    std::lock_guard lock(mu_);
    auto e = live_.find(it->second.get());
    if (e != live_.end()) e->second->saved = true;
  }
  t_pending.erase(keep, t_pending.end());
}

uint64_t MemoryReport::bytes(MemoryCategory c) const {
  uint64_t n = 0;
  for (const Row& r : rows)
    if (r.category == c) n += r.bytes;
  return n;
}

MemoryReport MemoryTracker::report(const std::vector<Tensor>& parameters,
                                   const std::vector<Tensor>& optimizer_state) const {
  std::unordered_set<const Storage*> params, grads, state;
  for (const Tensor& p : parameters) {
    params.insert(p.storage().get());
    if (p.grad().defined()) grads.insert(p.grad().storage().get());
  }
  for (const Tensor& s : optimizer_state) state.insert(s.storage().get());

  std::map<std::pair<MemoryCategory, std::string>, MemoryReport::Row> rows;
  MemoryReport r;
  std::unordered_set<const Storage*> seen;
  auto add = [&](MemoryCategory c, const std::string& op, uint64_t bytes) {
    MemoryReport::Row& row = rows[{c, op}];
    row.category = c, row.op = op, row.bytes += bytes, row.storages += 1;
    r.peak_bytes += bytes;
  };
  std::lock_guard lock(mu_);
  for (const auto& [s, e] : at_peak_) {
    seen.insert(s);
    const MemoryCategory c = params.count(s)                    ? MemoryCategory::parameters
                             : grads.count(s) || e->in_backward ? MemoryCategory::gradients
                             : state.count(s)                   ? MemoryCategory::optimizer_state
                             : e->saved                         ? MemoryCategory::saved_activations
                                                                : MemoryCategory::other;
    add(c, e->op, e->bytes);
  }
  // Parameters, gradients and optimizer state made before the tracker: live throughout, so at the peak too.
  auto add_old = [&](const std::vector<Tensor>& ts, MemoryCategory c, bool grad) {
    for (const Tensor& t0 : ts) {
      const Tensor& t = grad ? t0.grad() : t0;
      if (!t.defined()) continue;
      const Storage* s = t.storage().get();
      if (seen.count(s) || live_.count(s)) continue;  // made while tracking: counted above when live at the peak
      seen.insert(s);
      add(c, "(made before the step)", s->nbytes());
    }
  };
  add_old(parameters, MemoryCategory::parameters, false);
  add_old(parameters, MemoryCategory::gradients, true);
  add_old(optimizer_state, MemoryCategory::optimizer_state, false);
  for (auto& [k, row] : rows) r.rows.push_back(row);
  std::stable_sort(r.rows.begin(), r.rows.end(), [](const MemoryReport::Row& a, const MemoryReport::Row& b) {
    return a.category != b.category ? a.category < b.category : a.bytes > b.bytes;
  });
  return r;
}

std::string MemoryReport::text() const {
  auto size = [](uint64_t b) {
    return b >= 1048576 ? mg::format("{:.2f} MiB", b / 1048576.0) : mg::format("{:.2f} KiB", b / 1024.0);
  };
  std::string s = mg::format("live tensor memory at the step's peak: {}\n", size(peak_bytes));
  for (int c = 0; c <= (int)MemoryCategory::other; ++c) {
    const auto cat = (MemoryCategory)c;
    const uint64_t total = bytes(cat);
    s += mg::format("  {:<32} {:>14} {:>5.1f}%\n", memory_category_name(cat), size(total),
                    peak_bytes ? 100.0 * total / peak_bytes : 0.0);
    for (const Row& r : rows)
      if (r.category == cat)
        s += mg::format("    {:<30} {:>14}  ({} tensor{})\n", r.op, size(r.bytes), r.storages,
                        r.storages == 1 ? "" : "s");
  }
  return s;
}

}  // namespace mg
