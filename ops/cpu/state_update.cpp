// The recurrent-step kernels on the CPU (math: ops/scan.h).
//
// selective_state_update works on blocks of W = 16 channels of one batch row. The n states of a
// channel are contiguous in the (b, d, n) state, so each channel's states are vectors over the state
// index k (16 lanes, the last one of n % 16 partial); dt, x, z, D, dt_bias and y are vectors over the
// block's channels. y's sums over k are the lanes of one vector per channel, folded for all 16
// channels at once by sum_rows in a fixed order. A channel's results depend on its own row only.
// The decay is 2^(dt * (A log2 e)) like the scan's kernel (ops/cpu/selective_scan.cpp).
//
// causal_conv1d_update: per channel a window of k taps; on AVX-512 (float, k <= 8) 16 channels at a
// time, the window regrouped by tap with permutes (conv_block_avx512), else one channel at a time.
//
// Threads: one step is about b*d*n state elements at ~1 ns each, and waking an OpenMP team costs
// tens of microseconds, so the work is split only above about 1M state elements (the cost given to
// parallel_for is a task's elements / 32 against its grain of 32768). Decoding (b*d*n ~ 16k..1M per
// layer) stays serial here; MambaLM::step splits a batch's rows across threads instead (one fork per token).
#include "ops/cpu/state_update.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
    if (n == W) {  // d_state 16 (the presets): one vector a channel, no masks, two channels at a time
      alignas(64) T dts[W], dtxs[W];
      storeu(dts, dt);
      storeu(dtxs, dtx);
      const Vec<T> Bv = loadu(Bi), Cv = loadu(Ci);
      auto channel = [&](int64_t j) {
        const int64_t c = c0 + j;
        const Vec<T> A2 = loadu(a.A + c * a.A_rs) * log2e;
        const Vec<T> hk = vexp2(dts[j] * A2) * loadu(a.state + (i * d + c) * n) + dtxs[j] * Bv;
        storeu(hout + (i * d + c) * n, hk);
        rows[j] = hk * Cv;
      };
      int64_t j = 0;
      for (; j + 2 <= nc; j += 2) channel(j), channel(j + 1);
      if (j < nc) channel(j);
    } else {  // any n: vectors of W states, the last one partial
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
    }
    Vec<T> out = sum_rows(rows);
    if (a.D) out += load_first(a.D + c0, nc) * x;
    if (a.z) {
      const Vec<T> z = load_first(a.z + i * a.z_rs + c0, nc);
      out = out * z * vsigmoid(z);
    }
    store_first(y + i * d + c0, out, nc);
  }
}

// One channel's step: the window, oldest first, then x; the state shifted by one with x last.
template <class T>
inline T conv_channel(const T* s, T* so, const T* w, T xv, T acc, int64_t km) {
  for (int64_t q = 0; q < km; ++q) acc += w[q] * s[q];
  acc += w[km] * xv;
  for (int64_t q = 0; q + 1 < km; ++q) so[q] = s[q + 1];  // ascending: reads q + 1 before it is written
  if (km > 0) so[km - 1] = xv;
  return acc;
}

#if defined(__AVX512F__)
// (GCC 12's false 'uninitialized' warnings of the AVX-512 permutes silenced as in gemm.cpp.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// AVX-512, float, a full block of 16 channels with k - 1 = km <= kMaxKm: the block's state (16 km
// contiguous floats) and weights (16 k) are loaded as vectors and regrouped by tap with permutes
// (vpermt2ps), so the window is 16 channels wide: tap q of channel j is element j km + q of the
// block's state, gathered from the km vectors by a chain of two-source permutes (ConvPermutes). The new
// state is the block's state moved one element down with x put at every channel's last slot, two
// permutes per vector. For k = 4: 24 permutes and 4 FMAs per 16 channels, against ~13 cycles a channel
// for the scalar window. The same arithmetic as conv_channel (fma in tap order, from the bias).
constexpr int64_t kMaxKm = 7;

// idx[v] of a regrouping of stride `stride` and offset q from nv vectors: the first permute takes
// vectors 0 and 1 (idx[1]: p < 32, else any), each further one keeps its lanes or takes vector v's.
struct StridePermute {
  alignas(64) int32_t idx[kMaxKm + 1][16];
  int nv = 0;
  StridePermute() = default;
  StridePermute(int64_t stride, int64_t q, int64_t nvec) : nv((int)nvec) {
    for (int l = 0; l < 16; ++l) {
      const int64_t p = l * stride + q;
      idx[0][l] = (int32_t)(p % 16);
      if (nv > 1) idx[1][l] = (int32_t)(p < 32 ? p : 0);
      for (int v = 2; v < nv; ++v) idx[v][l] = (int32_t)(p / 16 == v ? 16 + p % 16 : l);
    }
  }
  __m512 apply(const __m512* V) const {
    if (nv == 1) return _mm512_permutexvar_ps(_mm512_load_si512(idx[0]), V[0]);
    __m512 r = _mm512_permutex2var_ps(V[0], _mm512_load_si512(idx[1]), V[1]);
    for (int v = 2; v < nv; ++v) r = _mm512_permutex2var_ps(r, _mm512_load_si512(idx[v]), V[v]);
    return r;
  }
};

struct ConvPermutes {
  int64_t km = 0;
  StridePermute state_tap[kMaxKm], weight_tap[kMaxKm + 1];
  alignas(64) int32_t shift[kMaxKm][16], put_x[kMaxKm][16];
  explicit ConvPermutes(int64_t km_) : km(km_) {
    for (int64_t q = 0; q < km; ++q) state_tap[q] = StridePermute(km, q, km);
    for (int64_t q = 0; q <= km; ++q) weight_tap[q] = StridePermute(km + 1, q, km + 1);
    for (int64_t v = 0; v < km; ++v)
      for (int l = 0; l < 16; ++l) {
        const int64_t p = 16 * v + l;  // new[p] = old[p + 1] (lane l + 1 of v, or lane 0 of v + 1), or x
        shift[v][l] = (int32_t)(l + 1);
        put_x[v][l] = (int32_t)(p % km == km - 1 ? 16 + p / km : l);
      }
  }
};

inline void conv_block_avx512(const ConvPermutes& P, const float* s, float* so, const __m512* wq, const float* x,
                              __m512 acc, bool silu, float* y) {
  const int64_t km = P.km;
  __m512 S[kMaxKm + 1];
  for (int64_t v = 0; v < km; ++v) S[v] = _mm512_loadu_ps(s + 16 * v);
  const __m512 xv = _mm512_loadu_ps(x);
  for (int64_t q = 0; q < km; ++q) acc = _mm512_fmadd_ps(wq[q], P.state_tap[q].apply(S), acc);
  acc = _mm512_fmadd_ps(wq[km], xv, acc);
  S[km] = _mm512_setzero_ps();
  for (int64_t v = 0; v < km; ++v) {  // all loaded before the first store: so may be s
    const __m512 shifted = _mm512_permutex2var_ps(S[v], _mm512_load_si512(P.shift[v]), S[v + 1]);
    _mm512_storeu_ps(so + 16 * v, _mm512_permutex2var_ps(shifted, _mm512_load_si512(P.put_x[v]), xv));
  }
  Vec<float> out = (Vec<float>)acc;
  if (silu) out = out * vsigmoid(out);
  storeu(y, out);
}
#pragma GCC diagnostic pop
#endif

// Tasks are (block of W channels, row), block-major, so a block's weights are regrouped once for all
// rows that follow it.
template <class T>
void conv_update_rows(const ConvUpdateArgs<T>& a, T* y, T* sout, int64_t lo, int64_t hi) {
  const int64_t d = a.d, k = a.k, km = k - 1, b = a.b;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (km >= 1 && km <= kMaxKm) {
      const ConvPermutes P(km);
      __m512 wq[kMaxKm + 1];
      int64_t loaded = -1;
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t c0 = (task / b) * W, i = task % b;
        if (c0 + W > d) break;  // the last partial block: below
        if (c0 != loaded) {
          __m512 Wv[kMaxKm + 1];
          for (int64_t v = 0; v < k; ++v) Wv[v] = _mm512_loadu_ps(a.weight + c0 * k + 16 * v);
          for (int64_t q = 0; q < k; ++q) wq[q] = P.weight_tap[q].apply(Wv);
          loaded = c0;
        }
        const __m512 acc = a.bias ? _mm512_loadu_ps(a.bias + c0) : _mm512_setzero_ps();
        conv_block_avx512(P, a.state + (i * d + c0) * km, sout + (i * d + c0) * km, wq, a.x + i * a.x_rs + c0, acc,
                          a.silu, y + i * d + c0);
        lo = task + 1;
      }
    }
  }
#endif
  for (int64_t task = lo; task < hi; ++task) {
    const int64_t c0 = (task / b) * W, i = task % b, nc = std::min(W, d - c0);
    const T* xi = a.x + i * a.x_rs;
    Vec<T> pre = a.bias ? load_first(a.bias + c0, nc) : Vec<T>{};
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      pre[j] = conv_channel(a.state + (i * d + c) * km, sout + (i * d + c) * km, a.weight + c * k, xi[c], pre[j], km);
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
