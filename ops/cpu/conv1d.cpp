// causal_conv1d on the CPU (conv1d.h), vectorised over kLanes<T> channels at a time (ops/cpu/vec.h).
//
// Both passes walk time in blocks of kBlock rows. Within a block, one lane vector of channels at a time
// walks down the block's rows with everything it carries in registers: the k weights, the bias, the last
// k inputs and, in the backward, the last k dpre and the k + 1 dw / db sums. So each time costs one load
// of each input and one store, where a pass along whole rows loads the k taps and stores the sums again
// for every lane vector. Rows are d apart, which the hardware prefetchers do not follow, so while a block
// is walked the next block's rows are prefetched in memory order (one line of each stream per step). The
// outputs go to a small staging buffer and are copied to their rows after each lane vector's walk: a load
// waits for an earlier store whose address has the same low 12 bits (4K aliasing), and with rows a
// multiple of 4 KiB apart every store to the output's column would match the next loads of the inputs'.
// docs/perf.md (the conv) has the measurements.
//
// Forward: (sequence, block) pairs split across threads; each output is bias + sum_j w[j] x[t-(k-1)+j],
// then silu.
//
// Backward: sequences split across threads, each walked block after block, carrying between blocks the
// last k-1 dpre of each channel (`Carry`) and its dw / db sums. At time t the pre-activation
// is recomputed (and silu's sigmoid taken from the forward's output where it is given: sigmoid_from_silu),
// dpre[t] = dy[t] silu'(pre[t]), and
//   dx[t-(k-1)] = sum_j w[j] dpre[t-j]                        (all its dpre terms are known at t),
//   dw[j] += dpre[t] x[t-(k-1)+j],  db += dpre[t]            (per-sequence sums in T, t ascending),
//   dinit[m] = sum over t <= m of w[m-t] dpre[t]              (the taps reaching the initial state),
// and the last k-1 rows of dx after the last block. x, dy and y are read once and dx written once; dw and
// db go through a (b, k+1, d) buffer summed over the sequences in order in double: independent of the
// threads.
#include "ops/cpu/conv1d.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/vec.h"

namespace mg::cpu {

namespace {

#define MG_INLINE [[gnu::always_inline]] inline
#define MG_INLINE_LAMBDA __attribute__((always_inline))

// The lane vector: one register of the target, or with AVX2 for float four (Parts below). (vec.h's Vec is
// 64 bytes, one AVX-512 register; with AVX2 it is two, and GCC 12 splits its comparisons lane by lane
// inside functions this large.)
#if defined(__AVX512F__)
constexpr int kLaneBytes = 64;
#elif defined(__AVX__)
constexpr int kLaneBytes = 32;
#define MG_CONV_PARTS 1
#else
constexpr int kLaneBytes = 16;
#endif

#if MG_CONV_PARTS
// kParts registers as one float lane vector, every operation written per register: each instruction of
// one output's chain (the taps, the exponential's polynomial, the division) sits beside the same of
// kParts - 1 independent ones, which the out-of-order core overlaps better than one register's chains.
// (A 64-byte GCC vector would do this but for its comparisons, split lane by lane.) Enough operators for
// the kernels and vec.h's vexp_bits. Two: the walks keep about 18 lane vectors live (docs/perf.md, the conv).
constexpr int kParts = 2;
template <class H>
struct Parts;
// Parts{f(0), f(1), ...}, and f(0), f(1), ...: one statement per register, no loop.
template <class F, size_t... I>
MG_INLINE auto per_part(F&& f, std::index_sequence<I...>) {
  return Parts<decltype(f(0))>{{f(I)...}};
}
template <class F, size_t... I>
MG_INLINE void each_part(F&& f, std::index_sequence<I...>) {
  (f(I), ...);
}
#define MG_PARTS(expr) per_part([&](size_t i) MG_INLINE_LAMBDA { return expr; }, std::make_index_sequence<kParts>{})
template <class H>
struct Parts {
  H h[kParts];
  template <class O>
  MG_INLINE explicit operator Parts<O>() const {  // the same bits, as GCC's vector casts
    return MG_PARTS((O)h[i]);
  }
};
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));
using FP = Parts<F8>;
using IP = Parts<I8>;
#define MG_PARTS_OP(op)                                                          \
  template <class H>                                                             \
  MG_INLINE Parts<H> operator op(const Parts<H>& a, const Parts<H>& b) {         \
    return MG_PARTS(a.h[i] op b.h[i]);                                           \
  }                                                                              \
  template <class H, class S, class = std::enable_if_t<std::is_arithmetic_v<S>>> \
  MG_INLINE Parts<H> operator op(const Parts<H>& a, S s) {                       \
    return MG_PARTS(a.h[i] op s);                                                \
  }                                                                              \
  template <class H, class S, class = std::enable_if_t<std::is_arithmetic_v<S>>> \
  MG_INLINE Parts<H> operator op(S s, const Parts<H>& a) {                       \
    return MG_PARTS(s op a.h[i]);                                                \
  }                                                                              \
  template <class H, class B>                                                    \
  MG_INLINE Parts<H>& operator op##=(Parts<H>& a, const B& b) {                  \
    return a = a op b;                                                           \
  }
MG_PARTS_OP(+)
MG_PARTS_OP(-)
MG_PARTS_OP(*)
MG_PARTS_OP(/)
MG_PARTS_OP(&)
MG_PARTS_OP(|)
#undef MG_PARTS_OP
MG_INLINE FP operator-(const FP& a) { return MG_PARTS(-a.h[i]); }
MG_INLINE IP operator~(const IP& a) { return MG_PARTS(~a.h[i]); }
MG_INLINE IP operator<<(const IP& a, int s) { return MG_PARTS(a.h[i] << s); }
MG_INLINE IP operator<(const FP& a, const FP& b) { return MG_PARTS(a.h[i] < b.h[i]); }
MG_INLINE IP operator>(const FP& a, const FP& b) { return b < a; }
// vec.h's select (a blend) and clamp_to (vmaxps / vminps) per register; vec.h's own for the other types.
MG_INLINE FP select(const IP& m, const FP& a, const FP& b) { return MG_PARTS(m.h[i] ? a.h[i] : b.h[i]); }
MG_INLINE FP clamp_to(const FP& x, const FP& lo, const FP& hi) {
  return MG_PARTS(cpu::clamp_to(x.h[i], lo.h[i], hi.h[i]));
}
using cpu::select;
#endif

template <class T>
struct LaneType;
template <>
struct LaneType<float> {
#if MG_CONV_PARTS
  using type = FP;
#else
  typedef float type __attribute__((vector_size(kLaneBytes)));
#endif
};
template <>
struct LaneType<double> {
  typedef double type __attribute__((vector_size(kLaneBytes)));
};
template <class T>
using LV = typename LaneType<T>::type;
template <class T>
constexpr int64_t kLanes = int64_t(sizeof(LV<T>) / sizeof(T));

template <class V>
MG_INLINE V load_as(const void* p) {
#if MG_CONV_PARTS
  if constexpr (std::is_same_v<V, FP>) return MG_PARTS(load_as<F8>(static_cast<const F8*>(p) + i));
#endif
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
MG_INLINE void store_as(void* p, const V& v) {
#if MG_CONV_PARTS
  if constexpr (std::is_same_v<V, FP>)
    return each_part([&](size_t i) MG_INLINE_LAMBDA { store_as(static_cast<F8*>(p) + i, v.h[i]); },
                     std::make_index_sequence<kParts>{});
#endif
  std::memcpy(p, &v, sizeof v);
}
template <class T>
MG_INLINE LV<T> lv_load(const T* p) {
  return load_as<LV<T>>(p);
}
template <class T>
MG_INLINE void lv_store(T* p, LV<T> v) {
  store_as(p, v);
}
template <class T>
LV<T> lv_load_first(const T* p, int64_t m, int64_t stride = 1) {  // m < kLanes values, the rest 0
  T e[kLanes<T>] = {};
  for (int64_t j = 0; j < m; ++j) e[j] = p[j * stride];
  return lv_load(e);
}
template <class T>
void lv_store_first(T* p, LV<T> v, int64_t m) {
  T e[kLanes<T>];
  lv_store(e, v);
  for (int64_t j = 0; j < m; ++j) p[j] = e[j];
}

// exp for the sigmoid: without the zero below -87.3, which changes no sigmoid (1 / (1 + e^-87) is 1).
MG_INLINE LV<float> vexp_lanes(LV<float> x) {
#if defined(__AVX512F__)
  return vexp(x);  // LV<float> is vec.h's Vec<float>
#else
  return vexp_bits<false, LV<float>, false>(x);
#endif
}

// sigmoid: float with vec.h's exp on one register; double with std::exp per lane (gradcheck's exactness).
MG_INLINE LV<float> sigmoid_lanes(LV<float> x) { return 1.0f / (1.0f + vexp_lanes(-x)); }
inline LV<double> sigmoid_lanes(LV<double> x) {
  for (int64_t j = 0; j < kLanes<double>; ++j) x[j] = 1.0 / (1.0 + std::exp(-x[j]));
  return x;
}

// silu's sigmoid at pre from silu's value there, y = pre sigmoid(pre): y / pre, and 1/2 where |pre| < 2^-60
// (there y / pre loses digits, or is 0 / 0, and sigmoid(pre) is 1/2 to the last bit in float and double).
// A division instead of an exponential: the backward's sigmoid without recomputing it.
template <class V>
MG_INLINE V sigmoid_from_silu(V y, V pre) {
  constexpr float tiny = 8.67361737988403547e-19f;  // 2^-60
  const auto small = (pre < V{} + tiny) & (V{} - tiny < pre);
  return select(small, V{} + 0.5f, y / pre);
}

// Channels [c, c + m) of a row: m = kLanes<T> when Full (no branch in the loads), else the last
// lanes of a row. The kernels are generic lambdas called with either.
template <class T, bool Full>
struct Lanes {
  int64_t c, m;
  MG_INLINE LV<T> load(const T* row) const {
    if constexpr (Full) return lv_load(row + c);
    return lv_load_first(row + c, m);
  }
  MG_INLINE void store(T* row, LV<T> v) const {
    if constexpr (Full)
      lv_store(row + c, v);
    else
      lv_store_first(row + c, v, m);
  }
};

template <class T, class F>
MG_INLINE void for_lanes(int64_t d, F&& f) {
  int64_t c = 0;
  for (; c + kLanes<T> <= d; c += kLanes<T>) f(Lanes<T, true>{c, kLanes<T>});
  if (c < d) f(Lanes<T, false>{c, d - c});
}

// The arguments with the weight transposed to (k, d) and the row stride ws of that and of the
// backward's buffers: d rounded up to whole registers plus one cache line, so that rows of these
// buffers (and x's, whose rows are d apart) do not all fall in the same L1 sets when d is a multiple of
// 1024 (4 KiB rows).
template <class T>
struct Conv : Conv1dArgs<T> {
  int64_t ws;
  std::vector<T> wt_buf;
  const T* wt;
  explicit Conv(const Conv1dArgs<T>& a)
      : Conv1dArgs<T>(a),
        ws((a.d + kLanes<T> - 1) / kLanes<T> * kLanes<T> + 64 / int64_t(sizeof(T))),
        wt_buf(size_t(a.k * ws), T(0)),
        wt(wt_buf.data()) {
    for (int64_t c = 0; c < a.d; ++c)
      for (int64_t j = 0; j < a.k; ++j) wt_buf[j * ws + c] = a.w[c * a.k + j];
  }
};

// Times per block: a block's rows of every stream (8 rows of 2-4 KiB) stay in L2 while its lane vectors
// walk them.
constexpr int64_t kBlock = 8;

// K lane vectors: in registers when K is known at compile time (the presets' 4), else `k` of them in
// memory the caller provides (any other kernel width).
template <class T, int K>
struct Window {
  LV<T> v[K];
  explicit Window(LV<T>*) {}
  MG_INLINE LV<T>& operator[](int64_t j) { return v[j]; }
};
template <class T>
struct Window<T, 0> {
  LV<T>* v;
  explicit Window(LV<T>* mem) : v(mem) {}
  LV<T>& operator[](int64_t j) { return v[j]; }
};

// x at time s of sequence i for the lanes: before time 0 the initial state (strided by k - 1 over the
// channels), or zero without one.
template <class T, class L>
LV<T> x_at(const Conv<T>& a, int64_t i, int64_t s, const L& ln) {
  if (s >= 0) return ln.load(a.x + i * a.xs0 + s * a.xs1);
  if (!a.init) return LV<T>{};
  return lv_load_first(a.init + (i * a.d + ln.c) * (a.k - 1) + (s + a.k - 1), ln.m, a.k - 1);
}

// Prefetches line `step` (in memory order) of rows [r0, r0 + n) of a (rows, d) stream with row stride rs:
// called once per step of a block's walk, which has as many steps as the next block has lines.
template <class T>
MG_INLINE void prefetch_line(const T* p, int64_t rs, int64_t r0, int64_t n, int64_t step, int64_t lines_per_row,
                             bool write) {
  if (step >= n * lines_per_row) return;
  const T* q = p + (r0 + step / lines_per_row) * rs + (step % lines_per_row) * kLanes<T>;
  if (write)
    __builtin_prefetch(q, 1, 2);
  else
    __builtin_prefetch(q, 0, 2);
}

// Forward of rows [t0, t1) of sequence i, prefetching rows [t1, t2).
template <class T, int K>
void forward_block(const Conv<T>& a, int64_t i, int64_t t0, int64_t t1, int64_t t2, T* y, T* stage, LV<T>* mem) {
  const int64_t l = a.l, d = a.d, ws = a.ws, k = K ? K : a.k;
  const int64_t lines = (d + kLanes<T> - 1) / kLanes<T>;
  const T* xr = a.x + i * a.xs0;
  T* yr = y + i * l * d;
  int64_t step = 0;
  for_lanes<T>(d, [&](const auto& ln) MG_INLINE_LAMBDA {
    Window<T, K> w(mem), xw(mem + k);  // xw[j]: x at t - (k-1) + j
    const LV<T> bias = a.bias ? ln.load(a.bias) : LV<T>{};
#pragma GCC unroll 16
    for (int64_t j = 0; j < k; ++j) {
      w[j] = ln.load(a.wt + j * ws);
      if (j < k - 1) xw[j] = x_at(a, i, t0 - (k - 1) + j, ln);
    }
    for (int64_t t = t0; t < t1; ++t, ++step) {
      prefetch_line(xr, a.xs1, t1, t2 - t1, step, lines, false);
      prefetch_line(yr, d, t1, t2 - t1, step, lines, true);
      xw[k - 1] = ln.load(xr + t * a.xs1);
      LV<T> pre = bias;
#pragma GCC unroll 16
      for (int64_t j = 0; j < k; ++j) pre += w[j] * xw[j];
      lv_store(stage + (t - t0) * kLanes<T>, a.silu ? pre * sigmoid_lanes(pre) : pre);
#pragma GCC unroll 16
      for (int64_t j = 0; j + 1 < k; ++j) xw[j] = xw[j + 1];
    }
    for (int64_t t = t0; t < t1; ++t) ln.store(yr + t * d, lv_load(stage + (t - t0) * kLanes<T>));
  });
}

// What the backward of one sequence carries from block to block: per channel (rows ws apart) the last
// k - 1 dpre (newest first), and dpre at times 0 .. k-2 (for dinit). (The last k - 1 inputs are x's rows
// before the block, read again as the forward reads them.)
template <class T>
struct Carry {
  T *dp, *dp0;
};

// Backward of rows [t0, t1) of sequence i, prefetching rows [n0, n0 + nn) of sequence ni; part (k + 1, ws):
// the sequence's dw rows and db.
template <class T, int K>
void backward_block(const Conv<T>& a, int64_t i, int64_t t0, int64_t t1, int64_t ni, int64_t n0, int64_t nn,
                    const T* dy, T* dx, T* part, const Carry<T>& carry, bool keep_dp0, T* stage, LV<T>* mem) {
  const int64_t l = a.l, d = a.d, ws = a.ws, k = K ? K : a.k;
  const int64_t lines = (d + kLanes<T> - 1) / kLanes<T>;
  const T* xr = a.x + i * a.xs0;
  const T* g = dy + i * l * d;
  const T* yr = a.y ? a.y + i * l * d : nullptr;
  T* dxr = dx ? dx + i * l * d : nullptr;
  const T* nx = a.x + ni * a.xs0;  // the rows to prefetch
  const T* ng = dy + ni * l * d;
  const T* ny = a.y ? a.y + ni * l * d : nullptr;
  T* ndx = dx ? dx + ni * l * d : nullptr;
  int64_t step = 0;
  for_lanes<T>(d, [&](const auto& ln) MG_INLINE_LAMBDA {
    // xw[j]: x at t - (k-1) + j; dpw[j]: dpre at t - j
    Window<T, K> w(mem), xw(mem + k), dpw(mem + 2 * k);
    Window<T, K ? K + 1 : 0> sum(mem + 3 * k);
    const LV<T> bias = a.bias ? ln.load(a.bias) : LV<T>{};
#pragma GCC unroll 16
    for (int64_t j = 0; j < k; ++j) {
      w[j] = ln.load(a.wt + j * ws);
      if (j < k - 1) xw[j] = x_at(a, i, t0 - (k - 1) + j, ln), dpw[j] = ln.load(carry.dp + j * ws);
    }
#pragma GCC unroll 16
    for (int64_t j = 0; j <= k; ++j) sum[j] = ln.load(part + j * ws);
    for (int64_t t = t0; t < t1; ++t, ++step) {
      prefetch_line(nx, a.xs1, n0, nn, step, lines, false);
      prefetch_line(ng, d, n0, nn, step, lines, false);
      if (ny) prefetch_line(ny, d, n0, nn, step, lines, false);
      if (ndx && n0 >= k - 1) prefetch_line(ndx, d, n0 - (k - 1), nn, step, lines, true);
      xw[k - 1] = ln.load(xr + t * a.xs1);
      LV<T> pre = bias;
#pragma GCC unroll 16
      for (int64_t j = 0; j < k; ++j) pre += w[j] * xw[j];
      LV<T> dp = ln.load(g + t * d);
      if (a.silu) {
        const LV<T> s = yr ? sigmoid_from_silu(ln.load(yr + t * d), pre) : sigmoid_lanes(pre);
        dp = dp * s * (T(1) + pre * (T(1) - s));
      }
      sum[k] += dp;
#pragma GCC unroll 16
      for (int64_t j = 0; j < k; ++j) sum[j] += dp * xw[j];
#pragma GCC unroll 16
      for (int64_t j = k - 1; j > 0; --j) dpw[j] = dpw[j - 1];
      dpw[0] = dp;
      if (keep_dp0 && t < k - 1) ln.store(carry.dp0 + t * ws, dp);
      LV<T> acc = {};
#pragma GCC unroll 16
      for (int64_t j = 0; j < k; ++j) acc += w[j] * dpw[j];
      lv_store(stage + (t - t0) * kLanes<T>, acc);  // dx at t - (k-1), when that is a time
#pragma GCC unroll 16
      for (int64_t j = 0; j + 1 < k; ++j) xw[j] = xw[j + 1];
    }
#pragma GCC unroll 16
    for (int64_t j = 0; j + 1 < k; ++j) ln.store(carry.dp + j * ws, dpw[j]);
#pragma GCC unroll 16
    for (int64_t j = 0; j <= k; ++j) ln.store(part + j * ws, sum[j]);
    if (!dxr) return;
    for (int64_t t = std::max(t0, k - 1); t < t1; ++t)
      ln.store(dxr + (t - (k - 1)) * d, lv_load(stage + (t - t0) * kLanes<T>));
    if (t1 == l)  // dx's last k - 1 rows: row s = l - (k-1) + q takes the dpre at s + (k-1) - j < l (dpw[j - q - 1])
      for (int64_t q = 0; q + 1 < k; ++q) {
        const int64_t s = l - (k - 1) + q;
        if (s < 0) continue;
        LV<T> acc = {};
#pragma GCC unroll 16
        for (int64_t j = q + 1; j < k; ++j) acc += w[j] * dpw[j - q - 1];
        ln.store(dxr + s * d, acc);
      }
  });
}

// One sequence's backward, block after block; the next sequence (`next`, or -1) is prefetched during the
// last block. part (k + 1, ws): its dw rows, then db.
template <class T, int K>
void backward_sequence(const Conv<T>& a, int64_t i, int64_t next, const T* dy, T* dx, T* dinit, T* part, T* carry_mem,
                       T* stage, LV<T>* mem) {
  const int64_t l = a.l, d = a.d, ws = a.ws, k = a.k;
  const Carry<T> carry{carry_mem, carry_mem + (k - 1) * ws};
  std::fill(part, part + (k + 1) * ws, T(0));
  std::fill(carry.dp, carry.dp + 2 * (k - 1) * ws, T(0));
  for (int64_t t0 = 0; t0 < l; t0 += kBlock) {
    const int64_t t1 = std::min(l, t0 + kBlock);
    const bool last = t1 == l;
    const int64_t ni = last ? std::max<int64_t>(next, 0) : i, n0 = last ? 0 : t1;
    const int64_t nn = last ? (next >= 0 ? std::min(l, kBlock) : 0) : std::min(l, t1 + kBlock) - t1;
    backward_block<T, K>(a, i, t0, t1, ni, n0, nn, dy, dx, part, carry, dinit != nullptr, stage, mem);
  }
  if (dinit)  // dinit[i, c, m] = sum over t <= m of w[c, m - t] dpre[t, c], t ascending
    for (int64_t c = 0; c < d; ++c)
      for (int64_t m = 0; m + 1 < k; ++m) {
        T acc = T(0);
        for (int64_t t = 0; t <= m && t < l; ++t) {
          const T term = a.wt[(m - t) * ws + c] * carry.dp0[t * ws + c];
          acc += term;
        }
        dinit[(i * d + c) * (k - 1) + m] = acc;
      }
}

}  // namespace

template <class T>
void conv1d_forward(const Conv1dArgs<T>& args, T* y) {
  const Conv<T> a(args);
  const int64_t blocks = (a.l + kBlock - 1) / kBlock;
  parallel_for(a.b * blocks, kBlock * a.d * (a.k + 8), [&](int64_t lo, int64_t hi) {
    std::vector<T> stage(size_t(kBlock * kLanes<T>));
    std::vector<LV<T>> mem(size_t(2 * a.k));
    for (int64_t q = lo; q < hi; ++q) {
      const int64_t i = q / blocks, t0 = (q % blocks) * kBlock, t1 = std::min(a.l, t0 + kBlock);
      // the next block of this thread's range in the same sequence, if any, is prefetched
      const int64_t t2 = q + 1 < hi && (q + 1) % blocks ? std::min(a.l, t1 + kBlock) : t1;
      (a.k == 4 ? forward_block<T, 4> : forward_block<T, 0>)(a, i, t0, t1, t2, y, stage.data(), mem.data());
    }
  });
}

template <class T>
void conv1d_backward(const Conv1dArgs<T>& args, const T* dy, T* dx, T* dw, T* db, T* dinit) {
  const Conv<T> a(args);
  const int64_t d = a.d, k = a.k, ws = a.ws;
  std::vector<T> parts(size_t(a.b * (k + 1) * ws));
  parallel_for(a.b, a.l * d * (2 * k + 12), [&](int64_t lo, int64_t hi) {
    std::vector<T> carry(size_t(2 * (k - 1) * ws)), stage(size_t(kBlock * kLanes<T>));
    std::vector<LV<T>> mem(size_t(4 * k + 1));
    for (int64_t i = lo; i < hi; ++i)
      (k == 4 ? backward_sequence<T, 4> : backward_sequence<T, 0>)(a, i, i + 1 < hi ? i + 1 : -1, dy, dx, dinit,
                                                                   parts.data() + i * (k + 1) * ws, carry.data(),
                                                                   stage.data(), mem.data());
  });
  if (!dw && !db) return;
  std::vector<double> sum(size_t((k + 1) * ws), 0.0);
  for (int64_t i = 0; i < a.b; ++i)
    for (size_t e = 0; e < sum.size(); ++e) sum[e] += double(parts[i * (k + 1) * ws + e]);
  for (int64_t c = 0; c < d; ++c) {
    if (dw)
      for (int64_t j = 0; j < k; ++j) dw[c * k + j] = T(sum[j * ws + c]);
    if (db) db[c] = T(sum[k * ws + c]);
  }
}

template void conv1d_forward<float>(const Conv1dArgs<float>&, float*);
template void conv1d_forward<double>(const Conv1dArgs<double>&, double*);
template void conv1d_backward<float>(const Conv1dArgs<float>&, const float*, float*, float*, float*, float*);
template void conv1d_backward<double>(const Conv1dArgs<double>&, const double*, double*, double*, double*, double*);

}  // namespace mg::cpu
