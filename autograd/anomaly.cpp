#include "autograd/anomaly.h"

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

#include "autograd/anomaly_check.h"
#include "autograd/grad_mode.h"
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
}  // namespace

bool AnomalyMode::is_enabled() { return g_anomaly.load(std::memory_order_relaxed); }
void AnomalyMode::set_enabled(bool on) { g_anomaly.store(on, std::memory_order_relaxed); }

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

std::string_view op_input_name(OpKind kind, size_t i) {
  auto pick = [i](std::initializer_list<std::string_view> names) -> std::string_view {
    return i < names.size() ? names.begin()[i] : std::string_view();
  };
  if (kind.id() < 0) return {};
  switch (static_cast<OpId>(kind.id())) {
    case OpId::selective_scan:
      return pick({"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"});
    case OpId::selective_state_update:
      return pick({"state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias"});
    case OpId::causal_conv1d:
      return pick({"x", "weight", "bias", "initial_state"});
    case OpId::causal_conv1d_update:
      return pick({"state", "x", "weight", "bias"});
    case OpId::linear:
      return pick({"input", "weight", "bias"});
    case OpId::matmul:
      return pick({"a", "b"});
    case OpId::rms_norm:
      return pick({"input", "weight"});
    case OpId::embedding:
      return pick({"weight", "ids"});
    case OpId::cross_entropy:
      return pick({"logits", "targets"});
    case OpId::add:
    case OpId::sub:
    case OpId::mul:
    case OpId::div:
      return pick({"a", "b"});
    default:
      return {};
  }
}

const char* first_non_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return nullptr;
  NoGradGuard ng;
  const Tensor c = contiguous(to_device(t.detach(), kCPU));
  return c.dtype() == DType::f64 ? scan(c.data<double>(), c.numel()) : scan(c.data<float>(), c.numel());
}

}  // namespace mg
