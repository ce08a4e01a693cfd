// Fixed-width SIMD vectors for the CPU kernels (GCC/Clang vector extensions), one abstraction for all:
//   Vec<T>: kVecLanes = 16 values (one AVX-512 register for float, two for double, and whatever the
//           target has otherwise): the scan kernels' vector, with exp, 2^x, softplus and sigmoid;
//   Reg<T>: one register of the target (64 bytes with AVX-512, 32 with AVX, else 16): the gemm's vector.
// The functions take either (any VecN<T, N>): unaligned and partial loads and stores, a broadcast, an
// exactly rounded fma, a horizontal sum and a transposing row sum.
//
// float gets vectorised exp/softplus (std::exp does not vectorise without -ffast-math); double,
// used by gradcheck, calls std::exp lane by lane so that its results are as exact as the library's.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace mg::cpu {

template <class T, int N>
struct VecOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
// N lanes of T.
template <class T, int N>
using VecN = typename VecOf<T, N>::type;

inline constexpr int kVecLanes = 16;
template <class T>
using Vec = VecN<T, kVecLanes>;

#if defined(__AVX512F__)
inline constexpr int kRegBytes = 64;
#elif defined(__AVX__)
inline constexpr int kRegBytes = 32;
#else
inline constexpr int kRegBytes = 16;
#endif
template <class T>
inline constexpr int kRegLanes = kRegBytes / int(sizeof(T));
template <class T>
using Reg = VecN<T, kRegLanes<T>>;

// Whether vfma on a Reg rounds once (as std::fma): the target has FMA instructions.
#if defined(__AVX512F__) || defined(__FMA__)
inline constexpr bool kFusedFma = true;
#else
inline constexpr bool kFusedFma = false;
#endif

// The element type and the lane count of a vector type.
template <class V>
using lane_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;
template <class V>
inline constexpr int lanes_of = int(sizeof(V) / sizeof(lane_t<V>));

// Every lane x (x - 0 is x for every x, -0 included, so this is one broadcast).
template <class V>
inline V splat(lane_t<V> x) {
  return x - V{};
}
template <class T, class V = Vec<T>>
inline V loadu(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T, class V>
inline void storeu(T* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
// The first m lanes from p, the rest 0 (m <= the lanes of V); never reads past p[m - 1].
template <class T, class V = Vec<T>>
inline V load_first(const T* p, int64_t m) {
  if (m == lanes_of<V>) return loadu<T, V>(p);
  V v = {};
  for (int64_t j = 0; j < m; ++j) v[j] = p[j];
  return v;
}
template <class T, class V>
inline void store_first(T* p, V v, int64_t m) {
  if (m == lanes_of<V>) return storeu(p, v);
  for (int64_t j = 0; j < m; ++j) p[j] = v[j];
}

// a * b + c, rounded once (as std::fma) for one register of an FMA target (kFusedFma); otherwise as
// the compiler evaluates a * b + c.
template <class V>
inline V vfma(V a, V b, V c) {
  [[maybe_unused]] constexpr bool f32 = std::is_same_v<lane_t<V>, float>;
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64 && f32) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  if constexpr (sizeof(V) == 64 && !f32) return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#endif
#if defined(__FMA__)
  if constexpr (sizeof(V) == 32 && f32) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  if constexpr (sizeof(V) == 32 && !f32) return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
  if constexpr (sizeof(V) == 16 && f32) return (V)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
  if constexpr (sizeof(V) == 16 && !f32) return (V)_mm_fmadd_pd((__m128d)a, (__m128d)b, (__m128d)c);
#endif
  return a * b + c;
}

// The sum of the lanes by a fixed tree: lane i + n/2 added to lane i, then i + n/4, ..., i + 1
// (sum_rows adds the same pairs, so its lane k is bit-identical to hsum(rows[k])).
template <class V>
inline lane_t<V> hsum(V v) {
  constexpr int n = lanes_of<V>;
  if constexpr (n == 2) {
    return v[0] + v[1];
  } else {
    using H = VecN<lane_t<V>, n / 2>;
    H lo, hi;
    std::memcpy(&lo, &v, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
    return hsum(lo + hi);
  }
}

// f applied to each half of v (one register each with AVX2 when v is a 64-byte vector: GCC 12 splits
// the comparisons of 64-byte vectors lane by lane inside large functions there).
template <class V, class F>
inline V on_halves(V v, F f) {
  using H = VecN<lane_t<V>, lanes_of<V> / 2>;
  H h[2];
  std::memcpy(h, &v, sizeof v);
  h[0] = f(h[0]), h[1] = f(h[1]);
  std::memcpy(&v, h, sizeof v);
  return v;
}

// exp(r) for |r| <= ln2/2: Cephes' degree-6 polynomial, written as 1 + r + r^2 p(r). Each step is
// one fused multiply-add where the target has them (GCC contracts a * b + c).
// (Templates on the float vector type V: Vec<float>, or one register of the target, ops/cpu/conv1d.cpp.)
template <class V>
inline V exp_poly(V r) {
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r) * r + (r + 1.0f);
}
// 2^f for |f| <= 1/2: a degree-6 polynomial fitted for minimax relative error (2e-9).
template <class V>
inline V exp2_poly(V f) {
  V p = V{} + 1.535384071758017e-4f;
  p = p * f + 1.339887036010623e-3f;
  p = p * f + 9.618435986340046e-3f;
  p = p * f + 5.5503323674201965e-2f;
  p = p * f + 2.4022647738456726e-1f;
  p = p * f + 6.931471824645996e-1f;
  return p * f + 1.0f;
}

// m ? a : b per lane, m from a comparison of float vectors (all bits set or clear): GCC's vector
// conditional on a vector type (a blend, or vmaxps / vminps where it reads as a clamp), else (a type of
// several registers with the bit operators, conv1d.cpp's) with bit operations.
template <class V, class I>
inline V select(I m, V a, V b) {
  if constexpr (requires(V v) { v[0]; })
    return m ? a : b;
  else
    return (V)(((I)a & m) | ((I)b & ~m));
}

// x < lo ? lo : (x > hi ? hi : x) per lane, NaN kept, on a float vector. On one AVX register as vmaxps(lo,
// x) and vminps(hi, .): both return their second operand where one is NaN, so the same values for
// every x (GCC emits a compare and a blend for each conditional, sharing the first compare with a later
// x < lo).
template <class V>
inline V clamp_to(V x, V lo, V hi) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<V, VecN<float, 8>>)
    return (V)_mm256_min_ps((__m256)hi, _mm256_max_ps((__m256)lo, (__m256)x));
#endif
  const V xc = select(x < lo, lo, x);
  return select(xc > hi, hi, xc);
}

// exp(x) (Base2 false) or 2^x (Base2 true) on any float vector, the one exponential of the kernels:
// y = x / ln2 (or x) = m + f with m = round(y), 2^m built in the exponent bits, the clamps (clamp_to) and
// the zero below the range (select) (callers pass one register of the target: see on_halves).
//   exp: Cephes' expf: the reduction r = x - m ln2 exact (ln2 split in two), exp_poly(r); relative
//        error about 1 ulp; 0 below -87.3 (where expf is denormal anyway), finite up to 88.
//   2^x: f = x - m exact, exp2_poly(f) (under 1 ulp evaluated in float); 0 below -126. For the scan's
//        decay factors exp(dt A) = 2^(dt A log2(e)) with A log2(e) computed once per block: against
//        exp(dt A) the one extra rounding of dt A log2(e) costs |x| ulps relatively, i.e. an absolute
//        error below 3e-8 for the decay factors, which lie in [0, 1].
// ZeroBelow false leaves out the zero below the range (exp: e^-87 instead of 0 below -87.3), for callers
// to whom the two are the same (a sigmoid's 1 / (1 + e)).
template <bool Base2, class V, bool ZeroBelow = true>
inline V vexp_bits(V x) {
  using I = decltype(x < x);
  const V round = V{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const V lo = V{} + (Base2 ? -126.0f : -87.0f), hi = V{} + (Base2 ? 127.0f : 88.0f);
  const V zero_below = Base2 ? lo : V{} - 87.3f;
  const V xc = clamp_to(x, lo, hi);
  V t;
  if constexpr (Base2)
    t = xc + round;
  else
    t = xc * 1.44269504088896341f + round;
  const V mf = t - round;         // m, in [-126, 127]
  const I m = (I)t - 0x4B400000;  // the same m as an integer
  V p;
  if constexpr (Base2) {
    p = exp2_poly(xc - mf);
  } else {
    V r = xc - mf * 0.693359375f;
    r = r + mf * 2.12194440e-4f;
    p = exp_poly(r);
  }
  const V v = p * (V)((m + 127) << 23);
  if constexpr (!ZeroBelow) return v;
  return select(x < zero_below, V{}, v);
}
// The same on the two halves of a Vec<float>: the forms for targets without AVX-512.
template <bool Base2>
inline Vec<float> vexp_halves(Vec<float> x) {
  return on_halves(x, [](auto h) { return vexp_bits<Base2>(h); });
}
inline Vec<float> vexp_portable(Vec<float> x) { return vexp_halves<false>(x); }
inline Vec<float> vexp2_portable(Vec<float> x) { return vexp_halves<true>(x); }

#if defined(__AVX512F__)
// exp or 2^x on AVX-512: the same reduction and polynomial, with vscalefps doing 2^m (it also handles
// underflow to 0 and overflow to inf, so no clamps are needed but one for -inf). 2^x with AVX-512DQ:
// vreduceps gives f = x - round(x) in one step and 0 for +-inf, so 2^(-inf) = scalef(1, -inf) = 0 with
// no clamp at all (NaN stays NaN).
// (The masked forms with every lane selected avoid GCC 12's false "may be used uninitialized"
// from the unmasked intrinsics' undefined pass-through operand.)
template <bool Base2>
inline Vec<float> vexp_scalef(Vec<float> x) {
  constexpr __mmask16 all = 0xFFFF;
  constexpr int nearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
#if defined(__AVX512DQ__)
  constexpr bool clamp = !Base2;
#else
  constexpr bool clamp = true;
#endif
  // -inf -> -150 (-> 0); NaN stays NaN
  const __m512 xc = clamp ? (__m512)(x < splat<Vec<float>>(-150.0f) ? splat<Vec<float>>(-150.0f) : x) : (__m512)x;
  const __m512 y = Base2 ? xc : _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f));
  const __m512 mf = _mm512_mask_roundscale_ps(y, all, y, nearest);
  __m512 r;
  if constexpr (!Base2) {
    r = _mm512_fnmadd_ps(mf, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(mf, _mm512_set1_ps(-2.12194440e-4f), r);
  } else if constexpr (!clamp) {
    r = _mm512_mask_reduce_ps(xc, all, xc, nearest);
  } else {
    r = _mm512_sub_ps(xc, mf);
  }
  const __m512 p = Base2 ? (__m512)exp2_poly((Vec<float>)r) : (__m512)exp_poly((Vec<float>)r);
  return (Vec<float>)_mm512_mask_scalef_ps(p, all, p, mf);
}
#endif

// exp (Base2 false) or 2^x of a float or double vector: a Vec of floats by vexp_scalef on AVX-512, else
// per register; one register of floats (or any other float vector) by the portable form; doubles with the
// C library lane by lane.
template <bool Base2, class V>
inline V vexp_vec(V x) {
  if constexpr (std::is_same_v<lane_t<V>, double>) {
    for (int j = 0; j < lanes_of<V>; ++j) x[j] = Base2 ? std::exp2(x[j]) : std::exp(x[j]);
    return x;
  } else if constexpr (std::is_same_v<V, Vec<float>>) {
#if defined(__AVX512F__)
    return vexp_scalef<Base2>(x);
#else
    return vexp_halves<Base2>(x);
#endif
  } else {
    return vexp_bits<Base2>(x);
  }
}
template <class V>
inline V vexp(V x) {
  return vexp_vec<false>(x);
}
template <class V>
inline V vexp2(V x) {
  return vexp_vec<true>(x);
}

// log1p(t) for t in (0, 1]: 2 atanh(s) with s = t / (2 + t) <= 1/3, as an odd series in s
// (truncation error below 1e-8). V: a float vector.
template <class V>
inline V log1p_unit(V t) {
  const V s = t / (2.0f + t), s2 = s * s;
  V p = splat<V>(1.0f / 15);
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// softplus(x) = log1p(exp(x)), x itself above 20, on a float vector V: max(x, 0) + log1p(t) with
// t = exp(-|x|) in (0, 1]; with dsp, also its derivative: sigmoid(x), exactly 1 above 20 where
// softplus(x) = x.
template <class V>
inline V softplus_lanes(V x, V* dsp) {
  const V zero = splat<V>(0.0f), one = splat<V>(1.0f), big = splat<V>(20.0f);
  const V t = vexp(x < zero ? x : -x);                                // exp(-|x|)
  if (dsp) *dsp = x > big ? one : (x > zero ? one : t) / (1.0f + t);  // sigmoid(x) from t = exp(-|x|)
  const V v = (x > zero ? x : zero) + log1p_unit(t);
  return x > big ? x : v;
}
// On a Vec: in one piece with AVX-512, else per half (one register each: GCC 12 compares 64-byte vectors
// lane by lane inside the scan kernels), the same arithmetic per lane either way.
inline Vec<float> vsoftplus(Vec<float> x, Vec<float>* dsoftplus) {
#if defined(__AVX512F__)
  return softplus_lanes(x, dsoftplus);
#else
  using H = VecN<float, kVecLanes / 2>;
  H h[2], g[2];
  std::memcpy(h, &x, sizeof x);
  h[0] = softplus_lanes(h[0], dsoftplus ? &g[0] : nullptr);
  h[1] = softplus_lanes(h[1], dsoftplus ? &g[1] : nullptr);
  if (dsoftplus) std::memcpy(dsoftplus, g, sizeof x);
  std::memcpy(&x, h, sizeof x);
  return x;
#endif
}
inline Vec<float> vsoftplus(Vec<float> x) { return vsoftplus(x, nullptr); }
inline Vec<float> vsoftplus(Vec<float> x, Vec<float>& dsoftplus) { return vsoftplus(x, &dsoftplus); }
inline Vec<double> vsoftplus(Vec<double> x) {
  for (int j = 0; j < kVecLanes; ++j) x[j] = x[j] > 20.0 ? x[j] : std::log1p(std::exp(x[j]));
  return x;
}
inline Vec<double> vsoftplus(Vec<double> x, Vec<double>& dsoftplus) {
  for (int j = 0; j < kVecLanes; ++j) {
    const double e = std::exp(x[j]);
    dsoftplus[j] = x[j] > 20.0 ? 1.0 : e / (1.0 + e);
    x[j] = x[j] > 20.0 ? x[j] : std::log1p(e);
  }
  return x;
}

// On a Vec or on one register of float (the scan's per-register steps): the same arithmetic per lane.
template <class V>
inline V vsigmoid(V x) {
  static_assert(std::is_same_v<lane_t<V>, float>, "a float vector (Vec<double> has its own overload)");
  return 1.0f / (1.0f + vexp(-x));
}
inline Vec<double> vsigmoid(Vec<double> x) { return 1.0 / (1.0 + vexp(-x)); }

namespace detail {
template <class V>
using IVecOf = VecN<std::conditional_t<sizeof(lane_t<V>) == 4, int32_t, int64_t>, lanes_of<V>>;
// Lane j of the result takes lane (j / H) * 2H + j % H + off of the pair (x, y) (y's lanes count from
// the lane count n): the halves of every 2H-lane group of x, then of y.
template <class V, int H, size_t... J>
constexpr IVecOf<V> pair_mask(std::index_sequence<J...>, int off) {
  using E = lane_t<IVecOf<V>>;
  return IVecOf<V>{static_cast<E>((int(J) / H) * 2 * H + int(J) % H + off)...};
}
template <class V, int H>
inline V fold_pair(V x, V y) {
  constexpr int n = lanes_of<V>;
  constexpr IVecOf<V> lo = pair_mask<V, H>(std::make_index_sequence<n>{}, 0);
  constexpr IVecOf<V> hi = pair_mask<V, H>(std::make_index_sequence<n>{}, H);
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_shuffle(x, y, lo) + __builtin_shuffle(x, y, hi);
#else
  V a, b;
  for (int j = 0; j < n; ++j) {
    a[j] = lo[j] < n ? x[lo[j]] : y[lo[j] - n];
    b[j] = hi[j] < n ? x[hi[j]] : y[hi[j] - n];
  }
  return a + b;
#endif
}
// 2H vectors holding n / 2H rows each -> H vectors holding n / H rows each, down to one vector.
template <class V, int H>
inline void fold_levels(V* r) {
  for (int p = 0; p < H; ++p) r[p] = fold_pair<V, H>(r[2 * p], r[2 * p + 1]);
  if constexpr (H > 1) fold_levels<V, H / 2>(r);
}
}  // namespace detail

// rows[0 .. n) for vectors of n lanes: returns the vector whose lane k is the sum of the lanes of rows[k]
// (n horizontal sums for n - 1 shuffle pairs and adds, hsum's tree per lane). Overwrites rows.
template <class V>
inline V sum_rows(V* rows) {
  detail::fold_levels<V, lanes_of<V> / 2>(rows);
  return rows[0];
}

// One register of AVX (without AVX-512): the same sums (hsum's tree per lane) by a transposing butterfly
// of in-lane shuffles, fed the rows in an order that makes each level's pairs adjacent; the generic
// fold's two-source shuffles compile to twice the instructions there (with AVX-512 they are one
// vpermt2ps or vshuff32x4 each, as many as a hand-written butterfly). Leaves rows as they were.
#if defined(__AVX__) && !defined(__AVX512F__)
// 8 floats: levels i + 4 (128-bit halves), i + 2, i + 1 (in lanes); fed v[l with bits 0 / 1 swapped].
inline Reg<float> sum_rows(Reg<float>* rows) {
  constexpr int perm[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  __m256 u[4], w[2];
  for (int p = 0; p < 4; ++p) {
    const __m256 a = (__m256)rows[perm[p]], b = (__m256)rows[perm[p + 4]];
    u[p] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  }
  for (int p = 0; p < 2; ++p)
    w[p] = _mm256_add_ps(_mm256_shuffle_ps(u[p], u[p + 2], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(u[p], u[p + 2], _MM_SHUFFLE(3, 2, 3, 2)));
  return (Reg<float>)_mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
// 16 floats in two registers: lane k of the result is hsum(rows[k]) = hsum of the sum of rows[k]'s two
// halves (hsum's first level), the other levels by the 8-float butterfly, 8 rows at a time (the generic
// fold's 64-byte shuffles are compiled lane by lane here).
inline Vec<float> sum_rows(Vec<float>* rows) {
  Vec<float> out;
  for (int g = 0; g < 2; ++g) {
    Reg<float> r[8];
    for (int k = 0; k < 8; ++k) {
      Reg<float> lo, hi;
      std::memcpy(&lo, &rows[g * 8 + k], sizeof lo);
      std::memcpy(&hi, reinterpret_cast<const char*>(&rows[g * 8 + k]) + sizeof lo, sizeof hi);
      r[k] = lo + hi;
    }
    const Reg<float> sum = sum_rows(r);
    std::memcpy(reinterpret_cast<char*>(&out) + g * sizeof sum, &sum, sizeof sum);
  }
  return out;
}
// 4 doubles: levels i + 2, i + 1.
inline Reg<double> sum_rows(Reg<double>* rows) {
  const __m256d v0 = (__m256d)rows[0], v1 = (__m256d)rows[1], v2 = (__m256d)rows[2], v3 = (__m256d)rows[3];
  const __m256d u0 = _mm256_add_pd(_mm256_permute2f128_pd(v0, v2, 0x20), _mm256_permute2f128_pd(v0, v2, 0x31));
  const __m256d u1 = _mm256_add_pd(_mm256_permute2f128_pd(v1, v3, 0x20), _mm256_permute2f128_pd(v1, v3, 0x31));
  return (Reg<double>)_mm256_add_pd(_mm256_unpacklo_pd(u0, u1), _mm256_unpackhi_pd(u0, u1));
}
#endif

}  // namespace mg::cpu
