// The memory report (train --memory-report): while a MemoryTracker is installed, every storage
// allocated is tagged with the op that made it and whether the backward engine made it, and the
// storages ops keep for backward are marked saved: the tracker observes the storages (core's
// StorageObserver) and the engine (autograd/observer.h: the ops' OpScopes, SavedTensor, record()).
// The tracker keeps the live storages of the moment the live total peaked, and report() sorts those
// bytes into parameters, gradients, optimizer state, activations saved for backward and other tensors,
// each by op. Off by default: then a storage pays one relaxed atomic load when made and when freed.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/observer.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace mg {

// What a live storage was at the peak. The first that applies wins, in this order.
enum class MemoryCategory { parameters, gradients, optimizer_state, saved_activations, other };
std::string_view memory_category_name(MemoryCategory c);

struct MemoryReport {
  struct Row {
    MemoryCategory category;
    std::string op;  // the op that allocated the storage; "(outside ops)" for factories, copies, the optimizer
    uint64_t bytes = 0;
    int64_t storages = 0;
  };
  uint64_t peak_bytes = 0;  // live bytes at the peak (storages made while tracking, plus those given to report())
  std::vector<Row> rows;    // by category, then by bytes (largest first)
  uint64_t bytes(MemoryCategory c) const;
  std::string text() const;
};

class MemoryTracker final : public StorageObserver, public EngineObserver {
 public:
  MemoryTracker();  // installs itself; one at a time (throws mg::Error when another is installed)
  ~MemoryTracker() override;
  MemoryTracker(const MemoryTracker&) = delete;
  MemoryTracker& operator=(const MemoryTracker&) = delete;

  // Starts a new peak from what is live now (call at the start of a step).
  void reset_peak();
  // The storages live at the peak since reset_peak(), sorted. Parameters, their gradients and the
  // optimizer state are recognised by identity from the tensors given (they may predate the tracker:
  // those are counted whole, as live throughout). Storages made by the backward engine are gradients.
  MemoryReport report(const std::vector<Tensor>& parameters, const std::vector<Tensor>& optimizer_state) const;

  void allocated(const Storage* s) override;
  void released(const Storage* s) override;

  // The engine's side. An op's captures for its vjp (tensor_saved) come before record() knows whether
  // a node is recorded at all (no input may require grad, or a vjp runs an op under NoGradGuard), so
  // they wait for its node_created; the outermost op or vjp drops what is left when it ends.
  void op_begin(OpKind op, const Tensor* const* inputs, size_t n) override;
  void op_end(OpKind op) override;
  void tensor_saved(const Tensor& t, OpKind op) override;
  void node_created(OpKind op, Node* node, const std::vector<Tensor*>& outputs) override;
  void backward_begin(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) override;
  void backward_end() override;
  void vjp_begin(const Node& node, const std::vector<Tensor>& grads) override;
  void vjp_end(const Node& node, const std::vector<Tensor>& input_grads) override;

 private:
  struct Entry {
    uint64_t bytes = 0;
    std::string op;
    bool in_backward = false;
    bool saved = false;
  };
  mutable std::mutex mu_;
  std::unordered_map<const Storage*, std::shared_ptr<Entry>> live_;
  uint64_t live_bytes_ = 0, peak_bytes_ = 0;
  std::vector<std::pair<const Storage*, std::shared_ptr<Entry>>> at_peak_;
  StorageObserver* prev_ = nullptr;
};

}  // namespace mg
