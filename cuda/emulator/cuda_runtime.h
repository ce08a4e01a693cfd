// The CUDA emulator's stand-in for <cuda_runtime.h> (a build with -DMG_CUDA=EMULATE): the runtime API
// calls and kernel built-ins that cuda/*.cu use, implemented on the CPU in cuda/emulator/emulator.cpp.
//
// What it is for: running every CUDA kernel's logic (indexing, shared memory, __syncthreads, warp
// shuffles, launch geometry, the cuBLAS row/column mapping) on a machine without a GPU, so that the
// CUDA tests compare each kernel with the CPU op in CI. What it is not: a model of the GPU's speed or
// memory ordering. Each block runs alone, its threads as fibers that switch only at __syncthreads and
// warp shuffles, so a race that needs true concurrency goes unseen; MG_CUDA_EMU_ORDER=reverse runs the
// blocks and the threads between barriers in reverse order, which exposes a missing barrier or a
// block that reads another block's output. "Device" memory is host memory, registered so that copies
// of the wrong direction, and kernel pointer arguments that are not device memory, are errors.
//
// cuda/emulator/translate.cmake rewrites `kernel<<<grid, block, smem, stream>>>(args)` into
// `::mg_emu::launch(kernel, "kernel", grid, block, smem, stream)(args)` and `extern __shared__ T x[];`
// into a pointer to the block's dynamic shared memory before the .cu file is compiled as C++. It also
// rewrites `__shared__ T x[n];` (in the .cu files and cuda/*.cuh) into `MG_EMU_SHARED(T, x, [n]);`: the
// array's accesses then go through mg_emu::SharedRef, and the shared-memory race check (emulator.cpp)
// fails a launch in which two threads of a block touch the same byte between two barriers, one of them
// writing, as compute-sanitizer's racecheck would on a GPU. Accesses through a plain pointer (the array
// passed to a function taking T*, dynamic shared memory) are not checked.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// One copy per kernel: blocks run one at a time. translate.cmake rewrites the static declarations of
// cuda/ into MG_EMU_SHARED (below); only the tests' own kernels meet this.
#define __shared__ static

// ---- types ----
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;

// ---- runtime API (host) ----
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaFuncSetAttributeRaw(const void* kernel, cudaFuncAttribute attr, int value);
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttributeRaw(reinterpret_cast<const void*>(kernel), attr, value);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaMalloc(void** p, size_t n);
template <class T>
cudaError_t cudaMalloc(T** p, size_t n) {
  return cudaMalloc(reinterpret_cast<void**>(p), n);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t n);
template <class T>
cudaError_t cudaMallocHost(T** p, size_t n) {
  return cudaMallocHost(reinterpret_cast<void**>(p), n);
}
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t n,
                                cudaStream_t s = nullptr);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);
cudaError_t cudaEventDestroy(cudaEvent_t e);

// ---- kernel built-ins ----
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace mg_emu {

// `base`, then the emulator's reason for the last failure when there is one (in a thread-local buffer:
// the libraries return strings the caller does not free).
const char* error_text(const char* base, const std::string& detail);

void block_barrier();         // __syncthreads
void warp_barrier();          // the lanes of the calling thread's warp (shuffles, __syncwarp)
int lane_slot();              // the calling thread's index in the block
uint64_t* exchange();         // one 8-byte slot per thread of the block for the calling thread's next shuffle
void fail(const char* what);  // a kernel-side misuse: recorded, reported by the launch's error
void* dynamic_smem();         // the block's dynamic shared memory (extern __shared__)

bool is_device_pointer(const void* p);

// Guard bytes (cuda/allocator.cu under the emulator): the slack of a cached block, between the bytes a
// tensor asked for and the block's size, is filled with a pattern. After each launch the blocks that its
// pointer arguments point into are checked, and a block is checked again when it is freed; a kernel that
// wrote past the end of its tensor fails with cudaErrorIllegalAddress naming the kernel (or the free).
void guard_block(void* p, size_t requested, size_t capacity);
void unguard_block(void* p);
void check_guard(const void* p, const char* who);

// Runs body once per thread of every block (blocks one at a time), or records a launch error.
void launch_impl(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
                 const std::function<void()>& body);
void launch_error(const char* name, cudaError_t e, const char* why);

template <class... P>
struct Launcher {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t smem;

  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // The arguments are copied at the launch, as CUDA does, and each thread calls the kernel with them.
    std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
    if (!pointers_ok(args, std::index_sequence_for<P...>{})) {
      launch_error(name, cudaErrorIllegalAddress, "a pointer argument is not device memory");
      return;
    }
    launch_impl(reinterpret_cast<const void*>(kernel), name, grid, block, smem, [&] { std::apply(kernel, args); });
    check_guards(args, std::index_sequence_for<P...>{});
  }

 private:
  template <class Tuple, size_t... I>
  static bool pointers_ok(const Tuple& t, std::index_sequence<I...>) {
    return (pointer_ok(std::get<I>(t)) && ...);
  }
  template <class Tuple, size_t... I>
  void check_guards(const Tuple& t, std::index_sequence<I...>) const {
    (check_one(std::get<I>(t)), ...);
  }
  template <class T>
  void check_one(const T& v) const {
    if constexpr (std::is_pointer_v<T>)
      if (v) check_guard(v, name);
  }
  template <class T>
  static bool pointer_ok(const T& v) {
    if constexpr (std::is_pointer_v<T>)
      return v == nullptr || is_device_pointer(v);
    else
      return true;
  }
};

template <class... P>
Launcher<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem = 0,
                      cudaStream_t = nullptr) {
  return Launcher<P...>{kernel, name, grid, block, smem};
}

// The race check's record of one access by the calling thread: n bytes at p, inside the shared array
// `name` that starts at base. A write that leaves the bytes as they were (same_value) is no access:
// every order of the threads gives the same result.
void shared_access(const void* base, const char* name, const void* p, size_t n, bool write, bool same_value);
// A static shared array's declaration, run by each thread: the block's first fills it with 0xff bytes
// (NaN for floats), as a GPU leaves garbage there, so that a read of a byte nobody wrote shows up.
void shared_declare(void* p, size_t n);
uint64_t shared_accesses_checked();  // since the program started

// A reference to one element of a static __shared__ array (or to a __shared__ scalar): reading converts
// it to E, assigning writes it, and each access is recorded.
template <class E>
class SharedRef {
 public:
  SharedRef(E* p, const char* name) : p_(p), base_(p), name_(name) { shared_declare(p, sizeof(E)); }
  SharedRef(E* p, const void* base, const char* name) : p_(p), base_(base), name_(name) {}
  SharedRef(const SharedRef&) = default;

  operator E() const {
    shared_access(base_, name_, p_, sizeof(E), false, false);
    return *p_;
  }
  const SharedRef& operator=(const E& v) const {
    shared_access(base_, name_, p_, sizeof(E), true, std::memcmp(p_, &v, sizeof(E)) == 0);
    *p_ = v;
    return *this;
  }
  const SharedRef& operator=(const SharedRef& o) const { return *this = static_cast<E>(o); }
  const SharedRef& operator+=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) + v); }
  const SharedRef& operator-=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) - v); }
  const SharedRef& operator*=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) * v); }
  const SharedRef& operator/=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) / v); }
  const SharedRef& operator|=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) | v); }
  const SharedRef& operator&=(const E& v) const { return *this = static_cast<E>(static_cast<E>(*this) & v); }

 private:
  E* p_;
  const void* base_;
  const char* name_;
};

// A reference to a static __shared__ array (or to a row of one): indexing narrows it.
template <class U, size_t N>
class SharedRef<U[N]> {
 public:
  SharedRef(U (*p)[N], const char* name) : p_(p), base_(p), name_(name) { shared_declare(p, sizeof(U[N])); }
  SharedRef(U (*p)[N], const void* base, const char* name) : p_(p), base_(base), name_(name) {}

  template <class I>
  SharedRef<U> operator[](I i) const {
    return {&(*p_)[i], base_, name_};
  }
  // The array decays to a plain pointer where one is expected: accesses through it go unchecked.
  operator U*() const { return *p_; }

 private:
  U (*p_)[N];
  const void* base_;
  const char* name_;
};

// `__shared__ T name dims;` in the emulator: static storage (one copy, blocks run one at a time) and a
// checked reference to it under the declared name.
#define MG_EMU_SHARED(T, name, dims)   \
  static T name##_mg_emu_storage dims; \
  const ::mg_emu::SharedRef<T dims> name(&name##_mg_emu_storage, #name)

template <class T>
T shfl(T v, int src_lane, unsigned mask) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  if (mask != 0xffffffffu) fail("warp shuffle with a partial mask (the emulator supports full warps only)");
  const int me = lane_slot();
  uint64_t* x = exchange();
  std::memcpy(&x[me], &v, sizeof(T));
  warp_barrier();
  T r;
  std::memcpy(&r, &x[(me & ~31) + src_lane], sizeof(T));
  return r;
}

}  // namespace mg_emu

inline void __syncthreads() { mg_emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { mg_emu::warp_barrier(); }

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = mg_emu::lane_slot() & 31;
  int src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return mg_emu::shfl(v, src, mask);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = mg_emu::lane_slot() & 31;
  return mg_emu::shfl(v, (lane & ~(width - 1)) + (src_lane & (width - 1)), mask);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = mg_emu::lane_slot() & 31;
  const int seg = lane & ~(width - 1);
  const int src = lane + (int)delta < seg + width ? lane + (int)delta : lane;
  return mg_emu::shfl(v, src, mask);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = mg_emu::lane_slot() & 31;
  const int seg = lane & ~(width - 1);
  const int src = lane - (int)delta >= seg ? lane - (int)delta : lane;
  return mg_emu::shfl(v, src, mask);
}

// ---- bit casts and fast math ----
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) { return (int)__float_as_uint(f); }
inline float __int_as_float(int i) { return __uint_as_float((unsigned)i); }
inline long long __double_as_longlong(double d) {
  long long u;
  std::memcpy(&u, &d, 8);
  return u;
}
inline double __longlong_as_double(long long u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
