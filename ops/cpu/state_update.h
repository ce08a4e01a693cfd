// CPU kernels of the recurrent-step ops of decoding, selective_state_update and causal_conv1d_update
// (ops/state_update.cpp holds the ops, their checks and vjps; the arguments are in core/scan_args.h).
// Both write the new state and y; the new state may be the old state's memory (the in-place forms).
// Every row's results depend on that row's inputs alone, never on b or the thread count.
#pragma once
#include <cstdint>

#include "core/scan_args.h"

namespace mg::cpu {

// y (b, d) contiguous; new_state (b, d, n) contiguous (may equal a.state).
template <class T>
void selective_state_update(const StateUpdateArgs<T>& a, T* y, T* new_state);

// y (b, d) contiguous; new_state (b, d, k - 1) contiguous (may equal a.state).
template <class T>
void causal_conv1d_update(const ConvUpdateArgs<T>& a, T* y, T* new_state);

}  // namespace mg::cpu
