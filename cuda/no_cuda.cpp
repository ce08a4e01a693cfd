// Stand-in for the CUDA backend in builds without CUDA, the one place that handles "no CUDA in this
// build": every function of cuda/runtime.h and every launcher of cuda/kernels.h, cuda/scan_kernels.h and
// cuda/optim.h is defined here to throw throw_no_cuda's error (or to report nothing), so the ops link.
// No device backend is installed (core/device_backend.h), so a CUDA tensor cannot exist in such a build
// and require_device refuses every CUDA device; none of the launchers is reached through an op.
#include "core/device_backend.h"
#include "core/error.h"
#include "core/unary_ops.h"
#include "cuda/kernels.h"
#include "cuda/nccl.h"
#include "cuda/optim.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"

namespace mg::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) { throw_no_cuda(op); }  // core/device_backend.h: the one message
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
void* device_malloc(size_t, int, const char* op) { no_cuda(op); }
void device_free(void*, int) noexcept {}
void copy_host_to_device(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void copy_device_to_host(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void copy_device_to_device(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void copy_between_devices(void*, int, const void*, int, size_t, const char* op) { no_cuda(op); }
void synchronize(int) {}
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory(int) {}
void empty_cache(int) {}
TimingEvent record_timing_event(int) { no_cuda("profiler"); }
float elapsed_ms(TimingEvent, TimingEvent) { no_cuda("profiler"); }
void release_timing_event(TimingEvent) noexcept {}
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }

// ---- NCCL (cuda/nccl.h) ----
bool built_with_nccl() { return false; }
NcclId nccl_unique_id() { no_cuda("nccl"); }
struct Communicator::Impl {};
Communicator::Communicator(const NcclId&, int size, int rank, int device) : size_(size), rank_(rank), device_(device) {
  no_cuda("nccl");
}
Communicator::~Communicator() = default;
void Communicator::all_reduce_sum(float*, int64_t) { no_cuda("nccl"); }
void Communicator::join() { no_cuda("nccl"); }
void Communicator::synchronize() { no_cuda("nccl"); }

// ---- kernel launchers (cuda/kernels.h) ----
void binary(BinaryOp, DType, void*, const void*, const void*, const StridedIter<3>&, int) { no_cuda("binary"); }
template <class F>
void unary(DType, void*, const void*, double, const StridedIter<2>&, int) {
  no_cuda(F::name);
}
template <class F>
void unary_backward(DType, void*, const void*, const void*, const void*, double, const StridedIter<4>&, int) {
  no_cuda(F::name);
}
MG_CUDA_INSTANTIATE_UNARY_LAUNCHERS
void add_scaled(DType, void*, const void*, double, const StridedIter<2>&, int) { no_cuda("add_"); }
void scale(DType, void*, double, const StridedIter<1>&, int) { no_cuda("mul_"); }
void fill(DType, void*, double, const StridedIter<1>&, int) { no_cuda("fill_"); }
void copy(DType, void*, DType, const void*, const StridedIter<2>&, int) { no_cuda("copy"); }
void arange(DType, void*, int64_t, int64_t, int64_t, int) { no_cuda("arange"); }
void sum_rows(DType, const void*, void*, int64_t, int64_t, double, int) { no_cuda("sum"); }
void max_dim(DType, const void*, void*, int64_t*, int64_t, int64_t, int64_t, int) { no_cuda("max"); }
void max_backward(DType, const void*, const int64_t*, void*, int64_t, int64_t, int64_t, int) { no_cuda("max"); }
void sample_rows(DType, const void*, int64_t, int64_t, int64_t, double, int64_t, double, const double*, int64_t*, int) {
  no_cuda("sample");
}
void embedding_forward(DType, const void*, const int64_t*, void*, int64_t, int64_t, int) { no_cuda("embedding"); }
void embedding_backward(DType, const void*, const int64_t*, int64_t, int64_t, void*, int64_t, int) {
  no_cuda("embedding");
}
void log_softmax_rows(DType, const void*, void*, int64_t, int64_t, int) { no_cuda("log_softmax"); }
void cross_entropy_forward(DType, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t, void*, void*, int) {
  no_cuda("cross_entropy");
}
void cross_entropy_backward(DType, const void*, const void*, const int64_t*, const void*, int64_t, int64_t, int64_t,
                            int64_t, void*, int) {
  no_cuda("cross_entropy");
}
void rms_norm_forward(DType, const void*, const void*, void*, void*, int64_t, int64_t, double, int) {
  no_cuda("rms_norm");
}
void rms_norm_backward(DType, const void*, const void*, const void*, const void*, void*, void*, int64_t, int64_t, int) {
  no_cuda("rms_norm");
}
void gemm(DType, bool, bool, int64_t, int64_t, int64_t, const void*, int64_t, int64_t, const void*, int64_t, int64_t,
          double, void*, int64_t, int64_t, int64_t, int, bool) {
  no_cuda("matmul");
}

// ---- the scan kernels and the benchmarks' probes (cuda/scan_kernels.h) ----
template <class T>
void selective_scan_forward(const ScanArgs<T>&, T*, T*, T*, int) {
  no_cuda("selective_scan");
}
template <class T>
void selective_scan_backward(const ScanArgs<T>&, const T*, const T*, const T*, const ScanGrads<T>&,
                             const ScanScratch<T>&, int) {
  no_cuda("selective_scan");
}
template <class T>
void causal_conv1d_forward(const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, bool, T*, int) {
  no_cuda("causal_conv1d");
}
template <class T>
void causal_conv1d_backward(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, bool,
                            T*, T*, T*, T*, T*, double*, int) {
  no_cuda("causal_conv1d");
}
template <class T>
void selective_state_update(const StateUpdateArgs<T>&, T*, T*, int) {
  no_cuda("selective_state_update");
}
template <class T>
void causal_conv1d_update(const ConvUpdateArgs<T>&, T*, T*, int) {
  no_cuda("causal_conv1d_update");
}
#define MG_NO_CUDA_SCAN(T)                                                                                             \
  template void selective_scan_forward<T>(const ScanArgs<T>&, T*, T*, T*, int);                                        \
  template void selective_scan_backward<T>(const ScanArgs<T>&, const T*, const T*, const T*, const ScanGrads<T>&,      \
                                           const ScanScratch<T>&, int);                                                \
  template void causal_conv1d_forward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,   \
                                         bool, T*, int);                                                               \
  template void causal_conv1d_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                          int64_t, bool, T*, T*, T*, T*, T*, double*, int);                            \
  template void selective_state_update<T>(const StateUpdateArgs<T>&, T*, T*, int);                                     \
  template void causal_conv1d_update<T>(const ConvUpdateArgs<T>&, T*, T*, int);
MG_NO_CUDA_SCAN(float)
MG_NO_CUDA_SCAN(double)
#undef MG_NO_CUDA_SCAN
int64_t causal_conv1d_partials(int64_t, int64_t, int64_t, int64_t) { return 0; }
double time_device_copy(void*, const void*, size_t, int, int) { no_cuda("bench scan --device cuda"); }
double time_on_stream(int, const std::function<void()>&) { no_cuda("bench scan --device cuda"); }

// ---- the optimizer kernels (cuda/optim.h) ----
void adamw_step(const std::vector<AdamWTensor>&, const AdamWScalars&, int) { no_cuda("adamw_step"); }
double grad_sum_squares(const std::vector<GradTensor>&, int, const char* op) { no_cuda(op); }
void scale_grads(const std::vector<GradTensor>&, double, int, const char* op) { no_cuda(op); }

}  // namespace mg::cuda
