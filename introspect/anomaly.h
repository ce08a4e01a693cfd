// Anomaly mode (as torch.autograd.detect_anomaly): while it is on, every recorded node remembers
// the op, the module path and the call stack it was made in, every op output that is recorded is checked for NaN and
// infinity, and so is every gradient a vjp returns; the first non-finite value throws mg::Error naming
// the op, its module path, the input (by index and name: the op list's, core/op_list.h) and its shape.
// It is an engine observer (autograd/observer.h), installed while the mode is on; off, the engine pays
// nothing for it. See docs/introspection.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/observer.h"
#include "core/op_kind.h"

namespace mg {

// The switch (global, like PyTorch's: a forward on one thread and a backward on another both see it)
// and an RAII guard that sets it and restores the previous value:
//   { AnomalyMode on; Tensor loss = model.loss(x, y); loss.backward(); }  // throws at the first NaN/inf
class AnomalyMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool on);

  explicit AnomalyMode(bool on = true) : prev_(is_enabled()) { set_enabled(on); }
  ~AnomalyMode() { set_enabled(prev_); }
  AnomalyMode(const AnomalyMode&) = delete;
  AnomalyMode& operator=(const AnomalyMode&) = delete;

 private:
  bool prev_;
};

// The module path of the code now running on this thread ("backbone.layers.2.mixer"), as a stack of
// names that models push around their forwards. A guard pushes only while anomaly mode is on (and
// then costs one string concatenation); otherwise it does nothing. Nested guards join with '.'.
class ModulePathGuard {
 public:
  explicit ModulePathGuard(std::string_view name);
  // "name.index" (a list entry such as "layers.2"), formatted only while anomaly mode is on.
  ModulePathGuard(std::string_view name, int64_t index);
  ~ModulePathGuard();
  ModulePathGuard(const ModulePathGuard&) = delete;
  ModulePathGuard& operator=(const ModulePathGuard&) = delete;

  // The innermost path on this thread, or null when none is pushed.
  static std::shared_ptr<const std::string> current();

 private:
  bool pushed_ = false;
};

// The call stack of the code running now, as return addresses (the frames of the capture itself and
// of the `skip` callers above it left out): what PyTorch's anomaly mode keeps as the forward's traceback.
// Empty where the platform has no backtrace().
std::vector<void*> capture_call_stack(int skip);
// "mg::selective_scan <- mg::MambaMixer::forward <- ... <- main": each frame's function (demangled,
// without its parameters), up to `max_frames` of them, stopping after main. A function the dynamic
// symbol table does not name is shown as file+0xoffset (for addr2line); the executables of this build
// export their symbols (-rdynamic, CMake's ENABLE_EXPORTS) so that theirs are named.
std::string format_call_stack(const std::vector<void*>& stack, int max_frames = 8);

// What a node made under anomaly mode remembers of its forward (its Node::note).
struct AnomalyInfo final : NodeNote {
  AnomalyInfo(OpKind o, std::shared_ptr<const std::string> path, std::vector<void*> stack)
      : op(o), module_path(std::move(path)), call_stack(std::move(stack)) {}
  OpKind op;
  std::shared_ptr<const std::string> module_path;  // null: made outside any ModulePathGuard
  std::vector<void*> call_stack;                   // where the op was called (capture_call_stack)
  std::string where() const;                       // "(backbone.layers.1.mixer)" or "" (no path)
  // "\n  made at: mg::log <- Toy::forward <- ..." (empty when no stack was captured)
  std::string made_at() const;
};

// The node's AnomalyInfo, or null when it was recorded while anomaly mode was off.
const AnomalyInfo* anomaly_info(const Node& node);

// "NaN", "inf" or "-inf" for the first non-finite element of `t` (any device; a copy to the host),
// or null when every element is finite (or `t` is undefined, empty or an integer tensor).
const char* first_non_finite(const Tensor& t);

}  // namespace mg
