// The recurrent-step kernels on the CPU (math: ops/scan.h).
//
// selective_state_update works on blocks of W = 16 channels of one batch row. The n states of a
// channel are contiguous in the (b, d, n) state, so each channel's states are vectors over the state
// index k (16 lanes, the last one of n % 16 partial); dt, x, z, D, dt_bias and y are vectors over the
// block's channels. y's sums over k are the lanes of one vector per channel, folded for all 16
// channels at once by sum_rows in a fixed order. A channel's results depend on its own row only.
// The decay is 2^(dt * (A log2 e)) like the scan's kernel (ops/cpu/selective_scan.cpp).
//
// Threads: one step is about b*d*n state elements at ~1 ns each, and waking an OpenMP team costs
// tens of microseconds, so the work is split only above about 1M state elements (the cost given to
// parallel_for is a task's elements / 32 against its grain of 32768). Decoding (b*d*n ~ 16k..1M per
// layer) stays serial.
#include "ops/cpu/state_update.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "ops/cpu/vec.h"

namespace mg::cpu {

namespace {

constexpr int64_t W = kVecLanes;

template <class T>
void state_update_rows(const StateUpdateArgs<T>& a, T* y, T* hout, int64_t lo, int64_t hi) {
  const int64_t d = a.d, n = a.n, nblocks = (d + W - 1) / W;
  const T log2e = T(1.442695040888963407359924681001892137);
  Vec<T> rows[W];
  for (int64_t task = lo; task < hi; ++task) {
    const int64_t i = task / nblocks, c0 = (task % nblocks) * W, nc = std::min(W, d - c0);
    Vec<T> dt = load_first(a.dt + i * a.dt_rs + c0, nc);
    if (a.dt_bias) dt += load_first(a.dt_bias + c0, nc);
    if (a.softplus) dt = vsoftplus(dt);
    const Vec<T> x = load_first(a.x + i * a.x_rs + c0, nc), dtx = dt * x;
    const T *Bi = a.B + i * a.B_rs, *Ci = a.C + i * a.C_rs;
    for (int64_t j = 0; j < W; ++j) rows[j] = Vec<T>{};
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      const T* h = a.state + (i * d + c) * n;
      T* ho = hout + (i * d + c) * n;
      const T* Ac = a.A + c * a.A_rs;
      Vec<T> acc{};
      for (int64_t k0 = 0; k0 < n; k0 += W) {
        const int64_t m = std::min(W, n - k0);
        const Vec<T> A2 = load_first(Ac + k0, m) * log2e;
        const Vec<T> hk = vexp2(dt[j] * A2) * load_first(h + k0, m) + dtx[j] * load_first(Bi + k0, m);
        store_first(ho + k0, hk, m);
        acc += hk * load_first(Ci + k0, m);  // lanes past m are 0 * 0
      }
      rows[j] = acc;
    }
    Vec<T> out = sum_rows<T>(rows);
    if (a.D) out += load_first(a.D + c0, nc) * x;
    if (a.z) {
      const Vec<T> z = load_first(a.z + i * a.z_rs + c0, nc);
      out = out * z * vsigmoid(z);
    }
    store_first(y + i * d + c0, out, nc);
  }
}

template <class T>
void conv_update_rows(const ConvUpdateArgs<T>& a, T* y, T* sout, int64_t lo, int64_t hi) {
  const int64_t d = a.d, k = a.k, km = k - 1, nblocks = (d + W - 1) / W;
  for (int64_t task = lo; task < hi; ++task) {
    const int64_t i = task / nblocks, c0 = (task % nblocks) * W, nc = std::min(W, d - c0);
    const T* xi = a.x + i * a.x_rs;
    Vec<T> pre = a.bias ? load_first(a.bias + c0, nc) : Vec<T>{};
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      const T* s = a.state + (i * d + c) * km;
      T* so = sout + (i * d + c) * km;
      const T* w = a.weight + c * k;
      const T xv = xi[c];
      T acc = pre[j];
      for (int64_t q = 0; q < km; ++q) acc += w[q] * s[q];  // the window, oldest first
      acc += w[km] * xv;
      pre[j] = acc;
      for (int64_t q = 0; q + 1 < km; ++q) so[q] = s[q + 1];  // ascending: reads q + 1 before it is written
      if (km > 0) so[km - 1] = xv;
    }
    if (a.silu) pre = pre * vsigmoid(pre);
    store_first(y + i * d + c0, pre, nc);
  }
}

}  // namespace

template <class T>
void selective_state_update(const StateUpdateArgs<T>& a, T* y, T* new_state) {
  const int64_t tasks = a.b * ((a.d + W - 1) / W);
  parallel_for(tasks, std::max<int64_t>(1, W * a.n / 32),
               [&](int64_t lo, int64_t hi) { state_update_rows(a, y, new_state, lo, hi); });
}

template <class T>
void causal_conv1d_update(const ConvUpdateArgs<T>& a, T* y, T* new_state) {
  const int64_t tasks = a.b * ((a.d + W - 1) / W);
  parallel_for(tasks, std::max<int64_t>(1, W * a.k / 32),
               [&](int64_t lo, int64_t hi) { conv_update_rows(a, y, new_state, lo, hi); });
}

template void selective_state_update<float>(const StateUpdateArgs<float>&, float*, float*);
template void selective_state_update<double>(const StateUpdateArgs<double>&, double*, double*);
template void causal_conv1d_update<float>(const ConvUpdateArgs<float>&, float*, float*);
template void causal_conv1d_update<double>(const ConvUpdateArgs<double>&, double*, double*);

}  // namespace mg::cpu
