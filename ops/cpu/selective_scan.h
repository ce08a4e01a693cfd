// CPU kernels of the fused selective scan (ops/selective_scan.cpp holds the op, its checks and vjp).
// Pointers are to contiguous row-major data; the optional inputs and the gradients that are not
// wanted are null.
#pragma once
#include <cstdint>

#include "core/scan_args.h"

namespace mg::cpu {

// Time steps per chunk: the forward saves the state at the end of each chunk, the backward
// recomputes one chunk's states at a time. Saved states cost 1/kScanChunk of all states.
inline constexpr int64_t kScanChunk = 128;
// Channels per block: the kernels keep the n states of kScanBlock consecutive channels in local
// arrays and vectorise over those channels (contiguous in the (b, l, d) layout).
inline constexpr int64_t kScanBlock = 16;
// The backward sums dB and dC (shared by all channels) over at most this many channel groups (and
// at most d / 32), each with its own (b, l, n) partial, added in group order: a partition fixed by
// d alone, so the sums do not depend on the thread count.
inline constexpr int64_t kScanMaxGroups = 16;

inline int64_t scan_num_chunks(int64_t l) { return (l + kScanChunk - 1) / kScanChunk; }

using mg::ScanArgs;  // core/scan_args.h
using mg::ScanGrads;

// out (b, l, d). chunk_states (b, nchunks, d, n): the state after the last step of each chunk, or
// null when no backward will run. last_state (b, d, n) or null. The scan starts from a.h0 (b, d, n),
// or from zeros when it is null.
template <class T>
void selective_scan_forward(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state);

// dout (b, l, d); dlast (b, d, n) or null (taken as zero); chunk_states as the forward wrote them.
// g.dh0 (b, d, n), when wanted, gets the gradient of a.h0: dL/dh[0] * exp(dt[0] A).
template <class T>
void selective_scan_backward(const ScanArgs<T>& a, const T* dout, const T* dlast, const T* chunk_states,
                             const ScanGrads<T>& g);

}  // namespace mg::cpu
