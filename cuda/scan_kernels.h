// Host-side launchers of the CUDA selective_scan and causal_conv1d kernels (cuda/selective_scan.cu,
// cuda/causal_conv1d.cu) and the device-copy bandwidth probe of the benchmarks (cuda/bandwidth.cu).
// The op files (ops/selective_scan.cpp, ops/causal_conv1d.cpp) own the checks, the allocation of every
// output and scratch buffer (as device tensors, so that the allocator's counters see them) and the
// autograd wiring; these functions take raw device pointers to contiguous row-major data and enqueue
// kernels on cuda::stream(device). C++17 and free of core/tensor.h, so that .cu files can include it.
// Without CUDA in the build cuda/no_cuda.cpp defines every launcher to throw "[op] this build has no
// CUDA support".
//
// Kernel design (docs/cuda-scan.md): a block owns one batch row and 32 consecutive channels (one per
// lane, so every load of u, delta, z, dout is one coalesced 128-byte row); its kScanWarps warps split
// each chunk of kScanChunkCuda time steps, kScanItems consecutive steps per thread, and combine their
// pieces with a block scan of the pairs (a, b) -> h = a h_prev + b. The forward writes y and, when a
// backward will run, the state at the end of every chunk; the backward recomputes a chunk's states
// from the state before it and runs the reverse scan. Every reduction is written as per-block
// partials summed in a fixed order: gradients are bit-identical run to run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "cuda/runtime.h"
#include "core/scan_args.h"

namespace mg::cuda {

inline constexpr int kScanItems = 8;                                // consecutive time steps per thread
inline constexpr int kScanWarps = 8;                                // warps per block, splitting a chunk
inline constexpr int kScanLanes = 32;                               // channels per block
inline constexpr int64_t kScanChunkCuda = kScanItems * kScanWarps;  // time steps per chunk (64)

inline int64_t scan_num_chunks_cuda(int64_t l) { return (l + kScanChunkCuda - 1) / kScanChunkCuda; }
// Channel groups of 32: each writes its own (b, n, l) partial of dB and dC.
inline int64_t scan_num_groups_cuda(int64_t d) { return (d + kScanLanes - 1) / kScanLanes; }

using mg::ConvUpdateArgs;
using mg::ScanArgs;  // core/scan_args.h
using mg::ScanGrads;
using mg::StateUpdateArgs;

// Device scratch of the backward, allocated by the caller (null where the matching gradient is not
// wanted): part_dB, part_dC (G, b, n, l) with G = scan_num_groups_cuda(d); part_dA (b, d, n),
// part_dD and part_dbias (b, d) in float64.
template <class T>
struct ScanScratch {
  T *part_dB = nullptr, *part_dC = nullptr;
  double *part_dA = nullptr, *part_dD = nullptr, *part_dbias = nullptr;
};

// out (b, l, d). chunk_states (b, nchunks, n, d) with nchunks = scan_num_chunks_cuda(l): the state
// after the last step of each chunk, or null when no backward will run. last_state (b, d, n) or null.
// The scan starts from a.h0 (b, d, n), or from zeros when it is null.
template <class T>
void selective_scan_forward(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state, int device);

// dout (b, l, d); dlast (b, d, n) or null (zero); chunk_states as the forward wrote them. g.dh0
// (b, d, n), when wanted, gets the gradient of a.h0.
// Both throw when n is too large for the shared memory of one block (on an H100 about n = 190 in float32
// and n = 100 in float64).
template <class T>
void selective_scan_backward(const ScanArgs<T>& a, const T* dout, const T* dlast, const T* chunk_states,
                             const ScanGrads<T>& g, const ScanScratch<T>& s, int device);

// causal_conv1d: x (b, l, d), w (d, k), bias (d) or null -> out (b, l, d), then silu when apply_silu.
// init (b, d, k-1) or null: the inputs before the sequence, oldest first (null: zeros; null for k = 1).
template <class T>
void causal_conv1d_forward(const T* x, const T* w, const T* bias, const T* init, int64_t b, int64_t l, int64_t d,
                           int64_t k, bool apply_silu, T* out, int device);

// Rows of (b*l) each block of the dweight/dbias reduction sums; the partials buffer the backward
// needs is causal_conv1d_partials(b, l, d, k) doubles.
int64_t causal_conv1d_partials(int64_t b, int64_t l, int64_t d, int64_t k);

// dout (b, l, d). dpre: scratch (b, l, d) for the gradient through silu (only read when apply_silu;
// may be null otherwise). dx, dw, dbias, dinit (b, d, k-1): null where not wanted. partials:
// causal_conv1d_partials(...) doubles, needed when dw or dbias is wanted.
template <class T>
void causal_conv1d_backward(const T* x, const T* w, const T* bias, const T* init, const T* dout, int64_t b, int64_t l,
                            int64_t d, int64_t k, bool apply_silu, T* dpre, T* dx, T* dw, T* dbias, T* dinit,
                            double* partials, int device);

// The recurrent-step kernels (cuda/state_update.cu), one launch each: y (b, d) and new_state
// contiguous; new_state may be a.state's memory (the in-place forms). Arguments: core/scan_args.h.
template <class T>
void selective_state_update(const StateUpdateArgs<T>& a, T* y, T* new_state, int device);
template <class T>
void causal_conv1d_update(const ConvUpdateArgs<T>& a, T* y, T* new_state, int device);

// Median seconds of one device-to-device cudaMemcpyAsync of nbytes (src and dst are device buffers of
// at least nbytes) on cuda::stream(device), over `reps` copies after one warm-up.
double time_device_copy(void* dst, const void* src, size_t nbytes, int reps, int device);

// Seconds between CUDA events recorded on cuda::stream(device) before and after `enqueue` (which
// must put its work on that stream); synchronises the stream.
double time_on_stream(int device, const std::function<void()>& enqueue);

}  // namespace mg::cuda
