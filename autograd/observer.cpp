#include "autograd/observer.h"

#include "core/error.h"

namespace mg {

std::atomic<size_t> observers::g_count{0};
std::atomic<EngineObserver*> observers::g_slots[observers::kMax];

void add_engine_observer(EngineObserver* o) {
  for (auto& slot : observers::g_slots)
    if (slot.load() == o) return;
  for (auto& slot : observers::g_slots) {
    EngineObserver* none = nullptr;
    if (slot.compare_exchange_strong(none, o)) {
      observers::g_count.fetch_add(1);
      return;
    }
  }
  MG_THROW("[autograd] {} engine observers are installed already, the most there may be", observers::kMax);
}

void remove_engine_observer(EngineObserver* o) {
  for (auto& slot : observers::g_slots) {
    EngineObserver* expected = o;
    if (slot.compare_exchange_strong(expected, nullptr)) observers::g_count.fetch_sub(1);
  }
}

OpScope::OpScope(OpKind op, const std::vector<Tensor>& inputs) : op_(op) {
  if (!observers::any()) [[likely]]
    return;
  std::vector<const Tensor*> ps;
  for (const Tensor& t : inputs) ps.push_back(&t);
  begin(ps.data(), ps.size());
}

void OpScope::begin(const Tensor* const* inputs, size_t n) {
  active_ = true;
  observers::notify([&](EngineObserver& o) { o.op_begin(op_, inputs, n); });
}

}  // namespace mg
