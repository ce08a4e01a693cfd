#include "introspect/anomaly.h"

#include <atomic>
#include <cmath>
#include <vector>

#if __has_include(<execinfo.h>) && __has_include(<dlfcn.h>) && __has_include(<cxxabi.h>)
#define MG_HAVE_BACKTRACE 1
#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <cstdlib>
#endif

#include "autograd/node.h"
#include "ops/ops.h"

namespace mg {

namespace {
std::atomic<bool> g_anomaly{false};
thread_local std::vector<std::shared_ptr<const std::string>> t_module_paths;

template <class T>
const char* scan(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return std::isnan(p[i]) ? "NaN" : p[i] > 0 ? "inf" : "-inf";
  return nullptr;
}

// The frames of `stack` below the first one inside `fn` (its callers), or all of them when no frame is
// (a platform without symbols).
std::vector<void*> callers_of(std::vector<void*> stack, const void* fn) {
#ifdef MG_HAVE_BACKTRACE
  for (size_t i = 0; i < stack.size() && i < 8; ++i) {
    Dl_info info{};
    if (dladdr(static_cast<char*>(stack[i]) - 1, &info) && info.dli_saddr == fn)
      return std::vector<void*>(stack.begin() + i + 1, stack.end());
  }
#endif
  return stack;
}

// Where an input's gradient came from, for the message: a leaf, or the node (and module path) that made it.
std::string made_by(const Node& input) {
  const AnomalyInfo* a = anomaly_info(input);
  return input.leaf() ? std::string("that input is a leaf (a parameter or an input tensor)")
                      : mg::format("that input was made by {}{}", input.name(), a ? a->where() : "");
}

class AnomalyObserver final : public EngineObserver {
 public:
  // A recorded node remembers where it was made, and its outputs must be finite.
  void node_created(OpKind op, Node* node, const std::vector<Tensor*>& outputs) override {
    if (!node) return;
    // The stack below record() itself: its first frame is the op's entry point, then who called it.
    const void* record_fn = reinterpret_cast<const void*>(&record);
    auto info =
        std::make_unique<AnomalyInfo>(op, ModulePathGuard::current(), callers_of(capture_call_stack(0), record_fn));
    const AnomalyInfo& a = *info;
    node->note = std::move(info);
    for (size_t i = 0; i < outputs.size(); ++i)
      if (const char* bad = first_non_finite(*outputs[i]))
        MG_THROW("[anomaly] forward of {}{} produced {} in its output{} {}{}", op.name(), a.where(), bad,
                 outputs.size() > 1 ? mg::format(" {}", i) : std::string(), outputs[i]->shape(), a.made_at());
  }

  void backward_begin(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) override {
    for (size_t i = 0; i < grads.size(); ++i)
      if (const char* bad = first_non_finite(grads[i]))
        MG_THROW("[anomaly] the gradient given to backward for output {} {} holds {}", i, roots[i].shape(), bad);
  }

  // The first non-finite gradient the vjp returned, named by the node that made it (the op and module
  // path of its forward) and the input (index, name, shape, and what made it).
  void vjp_end(const Node& n, const std::vector<Tensor>& in_grads) override {
    const AnomalyInfo* a = anomaly_info(n);
    for (size_t i = 0; i < in_grads.size() && i < n.next_edges.size(); ++i) {
      const Edge& e = n.next_edges[i];
      const char* bad = e.fn && in_grads[i].defined() ? first_non_finite(in_grads[i]) : nullptr;
      if (!bad) continue;
      const std::string input = a ? a->op.input_name(i) : std::string();
      MG_THROW("[anomaly] backward of {}{} returned {} in the gradient of input {}{} {}; {}{}{}", n.name(),
               a ? a->where() : "", bad, i, input.empty() ? std::string() : mg::format(" ({})", input),
               in_grads[i].shape(), made_by(*e.fn),
               a ? "" : " (the node was recorded before anomaly mode was turned on: no module path)",
               a ? a->made_at() : std::string());
    }
  }
};
AnomalyObserver g_anomaly_observer;
}  // namespace

bool AnomalyMode::is_enabled() { return g_anomaly.load(std::memory_order_relaxed); }
void AnomalyMode::set_enabled(bool on) {
  g_anomaly.store(on, std::memory_order_relaxed);
  on ? add_engine_observer(&g_anomaly_observer) : remove_engine_observer(&g_anomaly_observer);
}

const AnomalyInfo* anomaly_info(const Node& node) { return dynamic_cast<const AnomalyInfo*>(node.note.get()); }

ModulePathGuard::ModulePathGuard(std::string_view name) {
  if (!AnomalyMode::is_enabled()) return;
  std::string path = t_module_paths.empty() ? std::string(name) : *t_module_paths.back() + "." + std::string(name);
  t_module_paths.push_back(std::make_shared<const std::string>(std::move(path)));
  pushed_ = true;
}

ModulePathGuard::ModulePathGuard(std::string_view name, int64_t index)
    : ModulePathGuard(AnomalyMode::is_enabled() ? std::string(name) + "." + std::to_string(index) : std::string()) {}

ModulePathGuard::~ModulePathGuard() {
  if (pushed_) t_module_paths.pop_back();
}

std::shared_ptr<const std::string> ModulePathGuard::current() {
  return t_module_paths.empty() ? nullptr : t_module_paths.back();
}

std::string AnomalyInfo::where() const { return module_path ? " (" + *module_path + ")" : std::string(); }

std::string AnomalyInfo::made_at() const {
  return call_stack.empty() ? std::string()
                            : "\n  " + std::string(op_name(op)) + " was called at: " + format_call_stack(call_stack);
}

[[gnu::noinline]] std::vector<void*> capture_call_stack(int skip) {
#ifdef MG_HAVE_BACKTRACE
  void* frames[48];
  const int n = backtrace(frames, 48);
  const int from = std::min(n, skip + 1);  // + this function's own frame
  return std::vector<void*>(frames + from, frames + n);
#else
  (void)skip;
  return {};
#endif
}

std::string format_call_stack(const std::vector<void*>& stack, int max_frames) {
  std::string s;
#ifdef MG_HAVE_BACKTRACE
  int shown = 0;
  for (void* addr : stack) {
    if (shown == max_frames) {
      s += " <- ...";
      break;
    }
    // A return address points after the call: look up the byte before it, inside the calling function.
    void* pc = static_cast<char*>(addr) - 1;
    Dl_info info{};
    std::string frame;
    if (dladdr(pc, &info) && info.dli_sname) {
      int status = 0;
      char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      frame = status == 0 && demangled ? demangled : info.dli_sname;
      std::free(demangled);
      // Keep the qualified name, drop the parameter list (the first '(' outside template brackets).
      int depth = 0;
      for (size_t i = 0; i < frame.size(); ++i) {
        if (frame[i] == '<') ++depth;
        if (frame[i] == '>') --depth;
        if (frame[i] == '(' && depth == 0 && i > 0) {
          frame.resize(i);
          break;
        }
      }
    } else if (info.dli_fname) {
      const std::string_view file = info.dli_fname;
      const size_t slash = file.rfind('/');
      frame = mg::format("{}+{:#x}", slash == std::string_view::npos ? file : file.substr(slash + 1),
                         static_cast<char*>(pc) - static_cast<char*>(info.dli_fbase));
    } else {
      frame = mg::format("{}", pc);
    }
    if (frame.starts_with("__libc_start") || frame.starts_with("_start")) break;
    if (!s.empty()) s += " <- ";
    s += frame;
    ++shown;
    if (frame == "main") break;
  }
#else
  (void)stack, (void)max_frames;
#endif
  return s.empty() ? std::string("(no call stack on this platform)") : s;
}

const char* first_non_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return nullptr;
  NoGradGuard ng;
  const Tensor c = contiguous(to_device(t.detach(), kCPU));
  return c.dtype() == DType::f64 ? scan(c.data<double>(), c.numel()) : scan(c.data<float>(), c.numel());
}

}  // namespace mg
