// causal_conv1d on the CPU (conv1d.h), vectorised over kLanes<T> channels at a time (ops/cpu/vec.h).
//
// Forward: rows (i, t) split across threads; each output vector is bias + sum_j w[j] x[t-(k-1)+j] in
// registers, then silu, one store: x read once (its k rows are in L1), y written once.
//
// Backward: one pass over each sequence (sequences split across threads). At time t the pre-activation
// is recomputed (and silu's sigmoid taken from the forward's output where it is given: sigmoid_from_silu),
// dpre[t] = dy[t] silu'(pre[t]) kept in a ring of the last k rows, and
//   dx[t-(k-1)] = sum_j w[j] dpre[t-j]                        (all its dpre terms are known at t),
//   dw[j] += dpre[t] x[t-(k-1)+j],  db += dpre[t]            (per-sequence sums in T),
//   dinit[m] += w[m-t] dpre[t] for t <= m < k-1               (the taps reaching the initial state),
// and the last k-1 rows of dx after the loop. x and dy are read once and dx written once; dw and db go
// through a (b, k+1, d) double buffer summed over the sequences in order: independent of the threads.
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
// kParts registers as one float lane vector, every operation written per register. One output's chain
// (the taps, the exponential's polynomial, the division) is about 90 cycles of latency, more than the
// out-of-order core overlaps on one register's chains; here each instruction of one chain sits beside the
// same of kParts - 1 independent ones. (A 64-byte GCC vector would do this for two registers but for its
// comparisons, split lane by lane.) Enough operators for the kernels and vec.h's vexp_bits. Measured on
// Zen 2 (docs/perf.md, the conv): 4 registers beat 2 and 8.
constexpr int kParts = 4;
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

// The k input rows of the output at time t of sequence i: xr[j] is x at time t - (k-1) + j, or null
// before time 0, where the initial state (strided by k - 1 over the channels) or zero stands in.
template <class T>
struct Taps {
  static constexpr int64_t kMax = 16;  // k above this takes the per-tap path (never in the presets)
  const T* xr[kMax];
  const Conv<T>* a;
  int64_t i, t;
  Taps(const Conv<T>& args, int64_t i_, int64_t t_) : a(&args), i(i_), t(t_) {
    for (int64_t j = 0; j < std::min(args.k, kMax); ++j) {
      const int64_t s = t - (args.k - 1) + j;
      xr[j] = s >= 0 ? args.x + i * args.xs0 + s * args.xs1 : nullptr;
    }
  }
  // Whether every tap reads x (no initial state or zero before time 0): the branch-free path.
  bool inside() const { return t >= a->k - 1 && a->k <= kMax; }
  template <class L>
  MG_INLINE LV<T> x_in(int64_t j, const L& ln) const {
    return ln.load(xr[j]);
  }
  template <class L>
  LV<T> x_any(int64_t j, const L& ln) const {
    const int64_t s = t - (a->k - 1) + j;
    if (s >= 0) return ln.load(a->x + i * a->xs0 + s * a->xs1);
    if (!a->init) return LV<T>{};
    return lv_load_first(a->init + (i * a->d + ln.c) * (a->k - 1) + (s + a->k - 1), ln.m, a->k - 1);
  }
  // bias + sum_j w[j] x[t - (k-1) + j] for the lanes; Inside: inside() holds.
  // K: the kernel width when known at compile time (the presets' 4), else 0.
  template <bool Inside, int K, class L>
  MG_INLINE LV<T> pre(const L& ln) const {
    LV<T> acc = a->bias ? ln.load(a->bias) : LV<T>{};
    const int64_t k = K ? K : a->k;
    for (int64_t j = 0; j < k; ++j) {
      if constexpr (Inside)
        acc += ln.load(a->wt + j * a->ws) * x_in(j, ln);
      else
        acc += ln.load(a->wt + j * a->ws) * x_any(j, ln);
    }
    return acc;
  }
};

// One sequence's backward (see the top of the file); part (k + 1, d): its dw rows, then db.
template <class T, int K>
void backward_sequence(const Conv<T>& a, int64_t i, const T* dy, T* dx, T* dinit, T* ring, T* part) {
  const int64_t l = a.l, d = a.d, k = K ? K : a.k, ws = a.ws;
  std::fill(part, part + (k + 1) * ws, T(0));
  if (dinit) std::fill(dinit + i * d * (k - 1), dinit + (i + 1) * d * (k - 1), T(0));
  // dx[s] = sum_j w[j] dpre[s + (k-1) - j] over the terms before l, from the ring: rows[j] is that
  // ring row, or null past l (set by ring_rows once per s, not per lane vector).
  std::vector<const T*> rows(static_cast<size_t>(k));
  auto ring_rows = [&](int64_t s) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t t = s + (k - 1) - j;
      rows[j] = t < l ? ring + (t % k) * ws : nullptr;
    }
  };
  auto dx_row = [&](int64_t s, const auto& ln) MG_INLINE_LAMBDA {
    LV<T> acc = {};
    for (int64_t j = 0; j < k; ++j)
      if (rows[j]) acc += ln.load(a.wt + j * ws) * ln.load(rows[j]);
    ln.store(dx + (i * l + s) * d, acc);
  };
  for (int64_t t = 0; t < l; ++t) {
    const T* g = dy + (i * l + t) * d;
    const T* yr = a.y ? a.y + (i * l + t) * d : nullptr;
    T* rt = ring + (t % k) * ws;
    const Taps<T> taps(a, i, t);
    if (dx && t >= k - 1) ring_rows(t - (k - 1));
    auto row = [&](auto inside) {
      constexpr bool In = decltype(inside)::value;
      for_lanes<T>(d, [&](const auto& ln) MG_INLINE_LAMBDA {
        LV<T> dp = ln.load(g);
        if (a.silu) {
          const LV<T> pre = taps.template pre<In, K>(ln);
          const LV<T> s = yr ? sigmoid_from_silu(ln.load(yr), pre) : sigmoid_lanes(pre);
          dp = dp * s * (T(1) + pre * (T(1) - s));
        }
        ln.store(rt, dp);
        ln.store(part + k * ws, ln.load(part + k * ws) + dp);
        for (int64_t j = 0; j < k; ++j) {
          const LV<T> xj = In ? taps.x_in(j, ln) : taps.x_any(j, ln);
          ln.store(part + j * ws, ln.load(part + j * ws) + dp * xj);
        }
        if (dinit)
          for (int64_t m = t; m < k - 1; ++m) {  // dinit[i, c, m] += w[c, m - t] dpre[t, c]
            T add[kLanes<T>];
            lv_store(add, ln.load(a.wt + (m - t) * ws) * dp);
            T* p = dinit + (i * d + ln.c) * (k - 1) + m;
            for (int64_t e = 0; e < ln.m; ++e) p[e * (k - 1)] += add[e];
          }
        if (dx && t >= k - 1) dx_row(t - (k - 1), ln);
      });
    };
    if (taps.inside())
      row(std::true_type{});
    else
      row(std::false_type{});
  }
  if (dx)
    for (int64_t s = std::max<int64_t>(0, l - (k - 1)); s < l; ++s) {
      ring_rows(s);
      for_lanes<T>(d, [&](const auto& ln) { dx_row(s, ln); });
    }
}

}  // namespace

template <class T>
void conv1d_forward(const Conv1dArgs<T>& args, T* y) {
  const Conv<T> a(args);
  auto run = [&](auto width) {  // width: K as a type (4, or 0 for any k)
    parallel_for(a.b * a.l, a.d * (a.k + 8), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const Taps<T> taps(a, r / a.l, r % a.l);
        T* yr = y + r * a.d;
        auto row = [&](auto inside) {
          for_lanes<T>(a.d, [&](const auto& ln) MG_INLINE_LAMBDA {
            const LV<T> pre = taps.template pre<decltype(inside)::value, decltype(width)::value>(ln);
            ln.store(yr, a.silu ? pre * sigmoid_lanes(pre) : pre);
          });
        };
        if (taps.inside())
          row(std::true_type{});
        else
          row(std::false_type{});
      }
    });
  };
  if (a.k == 4)
    run(std::integral_constant<int, 4>{});
  else
    run(std::integral_constant<int, 0>{});
}

template <class T>
void conv1d_backward(const Conv1dArgs<T>& args, const T* dy, T* dx, T* dw, T* db, T* dinit) {
  const Conv<T> a(args);
  const int64_t d = a.d, k = a.k, ws = a.ws;
  std::vector<T> parts(size_t(a.b * (k + 1) * ws));
  parallel_for(a.b, a.l * d * (2 * k + 12), [&](int64_t lo, int64_t hi) {
    std::vector<T> ring(size_t(k * ws));
    for (int64_t i = lo; i < hi; ++i)
      (k == 4 ? backward_sequence<T, 4> : backward_sequence<T, 0>)(a, i, dy, dx, dinit, ring.data(),
                                                                   parts.data() + i * (k + 1) * ws);
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
