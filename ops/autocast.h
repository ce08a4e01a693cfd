// Mixed precision, as torch.autocast("cpu" / "cuda", dtype=torch.bfloat16). Inside an AutocastGuard, matmul
// and linear on float32 tensors round their inputs to bfloat16 and sum the products in float32
// (ops/cpu/gemm.h "Mixed precision", cuBLAS bf16 GEMM with float32 compute on CUDA). Nothing else changes:
// tensors, parameters, gradients and optimizer state stay float32 (so checkpoints do), and the selective
// scan (its state and sums), the conv, RMSNorm, softmax and the loss compute in float32, as the official
// Mamba kernels do under autocast. float64 (gradcheck) is never affected.
//
// The mode is per thread, as PyTorch's. A matmul remembers the precision it ran in, and its backward
// (the two matmuls of its vjp) runs in that precision wherever loss.backward() is called, as the backward
// of an autocast matmul in PyTorch computes in bf16.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace mg {

enum class Precision : uint8_t { f32, bf16 };

Precision autocast_precision();  // the calling thread's mode (f32 outside any guard)
void set_autocast_precision(Precision p);

// "fp32" / "bf16" (the names the CLI's --precision takes), and back.
std::string_view precision_name(Precision p);
std::optional<Precision> parse_precision(std::string_view name);

class AutocastGuard {
 public:
  explicit AutocastGuard(Precision p = Precision::bf16) : prev_(autocast_precision()) { set_autocast_precision(p); }
  ~AutocastGuard() { set_autocast_precision(prev_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  Precision prev_;
};

}  // namespace mg
