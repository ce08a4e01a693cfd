// Stand-in for the CUDA backend in builds without CUDA: every request is a clear error. The kernel
// launchers of cuda/kernels.h are defined here too, so the ops link; a CUDA tensor cannot exist in
// such a build, so none of them is ever reached through an op.
#include "core/error.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mg::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  MG_THROW("[{}] this build has no CUDA support (configure with -DMG_CUDA=ON on a machine with the CUDA toolkit)", op);
}
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
void unsupported(const char* op) { no_cuda(op); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory(int) {}
void empty_cache(int) {}
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }

// ---- kernel launchers (cuda/kernels.h) ----
void binary(BinaryOp, DType, void*, const void*, const void*, const StridedIter<3>&, int) { no_cuda("binary"); }
void unary(OpId op, DType, void*, const void*, double, const StridedIter<2>&, int) { no_cuda(op_name(op).data()); }
void unary_backward(OpId op, DType, void*, const void*, const void*, const void*, double, const StridedIter<4>&, int) {
  no_cuda(op_name(op).data());
}
void add_scaled(DType, void*, const void*, double, const StridedIter<2>&, int) { no_cuda("add_"); }
void scale(DType, void*, double, const StridedIter<1>&, int) { no_cuda("mul_"); }
void fill(DType, void*, double, const StridedIter<1>&, int) { no_cuda("fill_"); }
void copy(DType, void*, DType, const void*, const StridedIter<2>&, int) { no_cuda("copy"); }
void arange(DType, void*, int64_t, int64_t, int64_t, int) { no_cuda("arange"); }
void sum_rows(DType, const void*, void*, int64_t, int64_t, double, int) { no_cuda("sum"); }
void max_dim(DType, const void*, void*, int64_t*, int64_t, int64_t, int64_t, int) { no_cuda("max"); }
void max_backward(DType, const void*, const int64_t*, void*, int64_t, int64_t, int64_t, int) { no_cuda("max"); }
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
          double, void*, int64_t, int64_t, int64_t, int) {
  no_cuda("matmul");
}

}  // namespace mg::cuda
