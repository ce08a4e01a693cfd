// AdamW and gradient-norm kernels over many tensors at once (the launchers are declared in cuda/optim.h).
//
// Each call turns its list of tensors into a table of chunks (at most kOptimChunk elements of one
// tensor each, pointers already offset to the chunk's first element), copies the table to the device
// and launches one block per chunk: a whole model's update is one launch per dtype, whatever the
// number of parameters. Tables travel through a pinned host buffer with cudaMemcpyAsync on the
// device's one stream, so no call waits for the GPU except grad_sum_squares, which returns a number.
#include <cuda_runtime.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/adamw_element.h"
#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/optim.h"

namespace mg::cuda {

namespace {

// Blocks of kThreads (cuda/launch.cuh), a power of two: the reductions halve it.
static_assert((kThreads & (kThreads - 1)) == 0, "the block reductions halve kThreads");

// AdamW chunk: pointers at the chunk's first element.
struct AdamWEntry {
  void* p;
  const void* g;
  void* m;
  void* v;
  int64_t n;
  double decay;
};

// Gradient chunk for the sum of squares and the scaling.
struct GradEntry {
  void* g;
  int64_t n;
};

// Per-device scratch: a device buffer for the chunk tables and reduction partials (grown on demand,
// never shrunk) and a pinned host buffer the tables are staged in. `staged` is recorded after each
// copy out of the pinned buffer; the next call waits for it before overwriting the buffer.
struct Workspace {
  void* dev = nullptr;
  size_t dev_cap = 0;
  void* host = nullptr;
  size_t host_cap = 0;
  cudaEvent_t staged = nullptr;
  bool pending = false;
};

std::mutex g_mu;
std::vector<Workspace> g_ws;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Grows one buffer of a workspace, device memory or pinned host memory, to at least `need` bytes
// (twice that, so that a slowly growing table does not reallocate every call).
void grow(void*& p, size_t& cap, size_t need, bool host, const char* op) {
  if (cap >= need) return;
  if (p) MG_CUDA_CHECK(host ? cudaFreeHost(p) : cudaFree(p), op);
  p = nullptr;
  cap = 0;
  const size_t bytes = round_up(need * 2, 4096);
  MG_CUDA_CHECK(host ? cudaMallocHost(&p, bytes) : cudaMalloc(&p, bytes), op);
  cap = bytes;
}

// The device's workspace with at least `dev_bytes` of device memory and `host_bytes` of pinned host
// memory. Call with g_mu held.
Workspace& workspace(int device, size_t dev_bytes, size_t host_bytes, const char* op) {
  if (device >= (int)g_ws.size()) g_ws.resize(device + 1);
  Workspace& w = g_ws[device];
  cudaStream_t s = stream(device);
  if (!w.staged) MG_CUDA_CHECK(cudaEventCreateWithFlags(&w.staged, cudaEventDisableTiming), op);
  if (w.dev_cap < dev_bytes) {
    MG_CUDA_CHECK(cudaStreamSynchronize(s), op);  // earlier kernels may still read the old buffer
    grow(w.dev, w.dev_cap, dev_bytes, false, op);
  }
  if (w.pending) {  // the last copy out of the pinned buffer must be done before it is rewritten
    MG_CUDA_CHECK(cudaEventSynchronize(w.staged), op);
    w.pending = false;
  }
  grow(w.host, w.host_cap, host_bytes, true, op);
  return w;
}

// Copies `n` bytes of `src` to w.dev + dst_offset on the stream, through the pinned buffer.
void upload(Workspace& w, size_t dst_offset, const void* src, size_t n, int device, const char* op) {
  if (n == 0) return;
  std::memcpy(w.host, src, n);
  cudaStream_t s = stream(device);
  MG_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(w.dev) + dst_offset, w.host, n, cudaMemcpyHostToDevice, s), op);
  MG_CUDA_CHECK(cudaEventRecord(w.staged, s), op);
  w.pending = true;
}

// The CPU AdamW's per-element update (core/adamw_element.h, shared), in T; the decay is the entry's.
template <class T>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const AdamWEntry* __restrict__ table, T w1, T b2, T w2, T step_size, T bc2_sqrt, T eps) {
  const AdamWEntry e = table[blockIdx.x];
  T* __restrict__ p = static_cast<T*>(e.p);
  const T* __restrict__ g = static_cast<const T*>(e.g);
  T* __restrict__ m = static_cast<T*>(e.m);
  T* __restrict__ v = static_cast<T*>(e.v);
  const AdamWCoefficients<T> c{(T)e.decay, w1, b2, w2, step_size, bc2_sqrt, eps};
  for (int64_t i = threadIdx.x; i < e.n; i += blockDim.x) adamw_element(p[i], g[i], m[i], v[i], c);
}

// The sum over the block of x[i] (Square: x[i]^2) for i < n, in double: each thread adds a fixed strided
// subset in order, then block_sum's fixed tree (cuda/launch.cuh). Valid in every thread.
template <bool Square, class T>
__device__ double block_sum_of(const T* __restrict__ x, int64_t n) {
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const double v = (double)x[i];
    s += Square ? v * v : v;
  }
  return block_sum(s);
}

// partials[blockIdx.x] = sum of x^2 over the block's chunk, in double.
template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_squares_kernel(const GradEntry* __restrict__ table, double* __restrict__ partials) {
  const GradEntry e = table[blockIdx.x];
  const double s = block_sum_of<true>(static_cast<const T*>(e.g), e.n);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// *out = sum of partials[0..n), one block.
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const double* __restrict__ partials, int64_t n, double* __restrict__ out) {
  const double s = block_sum_of<false>(partials, n);
  if (threadIdx.x == 0) *out = s;
}

template <class T>
__global__ void __launch_bounds__(kThreads) scale_kernel(const GradEntry* __restrict__ table, T coef) {
  const GradEntry e = table[blockIdx.x];
  T* __restrict__ g = static_cast<T*>(e.g);
  for (int64_t i = threadIdx.x; i < e.n; i += blockDim.x) g[i] = g[i] * coef;
}

// Chunk tables of the tensors of one dtype, f32 first then f64; `first_f64` is where f64 starts.
template <class Entry, class Tensorish, class MakeEntry>
std::vector<Entry> chunk_table(const std::vector<Tensorish>& ts, size_t& first_f64, MakeEntry make) {
  std::vector<Entry> table;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) first_f64 = table.size();
    std::vector<int64_t> numels;
    std::vector<const Tensorish*> picked;
    for (const auto& t : ts)
      if (t.f64 == (pass == 1)) numels.push_back(t.numel), picked.push_back(&t);
    for (const Chunk& c : make_chunks(numels)) table.push_back(make(*picked[c.index], c.begin, c.count));
  }
  return table;
}

// Chunk table of gradients for grad_sum_squares and scale_grads.
std::vector<GradEntry> grad_table(const std::vector<GradTensor>& gs, size_t& first_f64) {
  return chunk_table<GradEntry>(gs, first_f64, [](const GradTensor& t, int64_t b, int64_t n) {
    const size_t es = t.f64 ? sizeof(double) : sizeof(float);
    return GradEntry{static_cast<char*>(t.data) + b * es, n};
  });
}

// Makes `device` current and copies `table` to the start of the device's workspace, which holds at
// least `dev_bytes`; returns the workspace's device memory. Call with g_mu held until the kernels
// that read the table are queued.
template <class Entry>
char* stage_table(const std::vector<Entry>& table, size_t dev_bytes, int device, const char* op) {
  set_device(device, op);
  const size_t bytes = table.size() * sizeof(Entry);
  Workspace& w = workspace(device, dev_bytes > bytes ? dev_bytes : bytes, bytes, op);
  upload(w, 0, table.data(), bytes, device, op);
  return static_cast<char*>(w.dev);
}

// Calls `launch(T{}, begin, count)` for the float32 entries [0, first_f64) and the float64 entries
// [first_f64, size) of a chunk table (skipping an empty part); `launch` queues one kernel with
// grid_of(count) blocks, checked here.
template <class Launch>
void launch_per_dtype(size_t first_f64, size_t size, const char* op, Launch&& launch) {
  if (first_f64 > 0) {
    launch(float{}, size_t{0}, first_f64);
    MG_CUDA_LAUNCH_CHECK(op);
  }
  if (size > first_f64) {
    launch(double{}, first_f64, size - first_f64);
    MG_CUDA_LAUNCH_CHECK(op);
  }
}

// Stages a chunk table (one block per entry) and calls `launch(T{}, entries, grid, stream)` for its
// float32 part and its float64 part (launch_per_dtype); nothing for an empty table.
template <class Entry, class Launch>
void launch_table(const std::vector<Entry>& table, size_t first_f64, int device, const char* op, Launch&& launch) {
  if (table.empty()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  const Entry* entries = reinterpret_cast<const Entry*>(stage_table(table, 0, device, op));
  cudaStream_t st = stream(device);
  launch_per_dtype(first_f64, table.size(), op, [&](auto zero, size_t begin, size_t count) {
    launch(zero, entries + begin, grid_of(count, op), st);
  });
}

}  // namespace

void adamw_step(const std::vector<AdamWTensor>& ts, const AdamWScalars& s, int device) {
  const char* op = "adamw_step";
  size_t first_f64 = 0;
  std::vector<AdamWEntry> table =
      chunk_table<AdamWEntry>(ts, first_f64, [](const AdamWTensor& t, int64_t b, int64_t n) {
        const size_t es = t.f64 ? sizeof(double) : sizeof(float);
        return AdamWEntry{static_cast<char*>(t.param) + b * es,
                          static_cast<const char*>(t.grad) + b * es,
                          static_cast<char*>(t.exp_avg) + b * es,
                          static_cast<char*>(t.exp_avg_sq) + b * es,
                          n,
                          t.decay};
      });
  launch_table(table, first_f64, device, op, [&](auto zero, const AdamWEntry* part, unsigned grid, cudaStream_t st) {
    using T = decltype(zero);
    adamw_kernel<T><<<grid, kThreads, 0, st>>>(part, (T)(1.0 - s.beta1), (T)s.beta2, (T)(1.0 - s.beta2), (T)s.step_size,
                                               (T)s.bc2_sqrt, (T)s.eps);
  });
}

double grad_sum_squares(const std::vector<GradTensor>& gs, int device, const char* op) {
  size_t first_f64 = 0;
  std::vector<GradEntry> table = grad_table(gs, first_f64);
  if (table.empty()) return 0.0;
  // Device layout: [table | partials (one per chunk) | result]; doubles stay 8-byte aligned.
  const size_t table_bytes = round_up(table.size() * sizeof(GradEntry), 16);
  const size_t partial_offset = table_bytes, result_offset = table_bytes + table.size() * sizeof(double);
  std::lock_guard<std::mutex> lock(g_mu);
  char* base = stage_table(table, result_offset + sizeof(double), device, op);
  const GradEntry* dt = reinterpret_cast<const GradEntry*>(base);
  double* partials = reinterpret_cast<double*>(base + partial_offset);
  double* result = reinterpret_cast<double*>(base + result_offset);
  cudaStream_t st = stream(device);
  launch_per_dtype(first_f64, table.size(), op, [&](auto zero, size_t begin, size_t count) {
    using T = decltype(zero);
    sum_squares_kernel<T><<<grid_of(count, op), kThreads, 0, st>>>(dt + begin, partials + begin);
  });
  sum_partials_kernel<<<1, kThreads, 0, st>>>(partials, (int64_t)table.size(), result);
  MG_CUDA_LAUNCH_CHECK(op);
  double total = 0.0;
  MG_CUDA_CHECK(cudaMemcpyAsync(&total, result, sizeof(double), cudaMemcpyDeviceToHost, st), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(st), op);
  return total;
}

void scale_grads(const std::vector<GradTensor>& gs, double coef, int device, const char* op) {
  size_t first_f64 = 0;
  std::vector<GradEntry> table = grad_table(gs, first_f64);
  launch_table(table, first_f64, device, op, [&](auto zero, const GradEntry* part, unsigned grid, cudaStream_t st) {
    using T = decltype(zero);
    scale_kernel<T><<<grid, kThreads, 0, st>>>(part, (T)coef);
  });
}

}  // namespace mg::cuda
