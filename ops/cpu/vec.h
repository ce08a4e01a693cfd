// Fixed-width SIMD vectors for the CPU scan kernels: Vec<T> holds kVecLanes = 16 values (GCC/Clang
// vector extensions, so one AVX-512 register for float, two for double, and whatever the target
// has otherwise), with the few functions the kernels need: unaligned and partial loads and stores,
// exp, softplus and sigmoid, and a transposing row sum.
//
// float gets vectorised exp/softplus (std::exp does not vectorise without -ffast-math); double,
// used by gradcheck, calls std::exp lane by lane so that its results are as exact as the library's.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace mg::cpu {

inline constexpr int kVecLanes = 16;

template <class T>
struct VecTraits;
template <>
struct VecTraits<float> {
  typedef float vec __attribute__((vector_size(kVecLanes * sizeof(float))));
  typedef int32_t ivec __attribute__((vector_size(kVecLanes * sizeof(int32_t))));
  using ielem = int32_t;
};
template <>
struct VecTraits<double> {
  typedef double vec __attribute__((vector_size(kVecLanes * sizeof(double))));
  typedef int64_t ivec __attribute__((vector_size(kVecLanes * sizeof(int64_t))));
  using ielem = int64_t;
};
template <class T>
using Vec = typename VecTraits<T>::vec;
template <class T>
using IVec = typename VecTraits<T>::ivec;

template <class T>
inline Vec<T> splat(T x) {
  return Vec<T>{} + x;
}
template <class T>
inline Vec<T> loadu(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline void storeu(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
// The first m lanes from p, the rest 0 (m <= kVecLanes); never reads past p[m - 1].
template <class T>
inline Vec<T> load_first(const T* p, int64_t m) {
  if (m == kVecLanes) return loadu(p);
  Vec<T> v = {};
  for (int64_t j = 0; j < m; ++j) v[j] = p[j];
  return v;
}
template <class T>
inline void store_first(T* p, Vec<T> v, int64_t m) {
  if (m == kVecLanes) return storeu(p, v);
  for (int64_t j = 0; j < m; ++j) p[j] = v[j];
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

// m ? a : b per lane, m from a comparison of float vectors (all bits set or clear), with bit operations.
template <class V, class I>
inline V select(I m, V a, V b) {
  return (V)(((I)a & m) | ((I)b & ~m));
}

// exp, portable: Cephes' expf written on whole vectors. x = m ln2 + r with |r| <= ln2/2 (ln2 split in
// two for an exact reduction), a degree-6 polynomial for exp(r), 2^m built in the exponent bits.
// Relative error about 1 ulp; 0 below -87.3 (where expf is denormal anyway), finite up to 88.
// On AVX2, 64-byte vectors are two registers, and GCC 12 splits their comparisons lane by lane inside
// large functions: kernels there call vexp_any on one register (ops/cpu/conv1d.cpp).
template <class V>
inline V vexp_any(V x) {
  using I = decltype(x < x);
  const V round = V{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const V lo = V{} - 87.0f, hi = V{} + 88.0f, zero_below = V{} - 87.3f;
  V xc = select(x < lo, lo, x);
  xc = select(xc > hi, hi, xc);
  const V t = xc * 1.44269504088896341f + round;
  const V mf = t - round;         // m = round(x / ln2), in [-126, 127]
  const I m = (I)t - 0x4B400000;  // the same m as an integer
  V r = xc - mf * 0.693359375f;
  r = r + mf * 2.12194440e-4f;
  const V v = exp_poly(r) * (V)((m + 127) << 23);
  return select(x < zero_below, V{}, v);
}
inline Vec<float> vexp_portable(Vec<float> x) {  // two halves: one register each with AVX2
  typedef float Half __attribute__((vector_size(kVecLanes * sizeof(float) / 2)));
  Half h[2];
  std::memcpy(h, &x, sizeof x);
  h[0] = vexp_any(h[0]), h[1] = vexp_any(h[1]);
  std::memcpy(&x, h, sizeof x);
  return x;
}

// exp: on AVX-512 the same reduction and polynomial, with vscalefps doing 2^m (it also handles
// underflow to 0 and overflow to inf, so no clamps are needed but one for -inf).
inline Vec<float> vexp(Vec<float> x) {
#if defined(__AVX512F__)
  // (The masked forms with every lane selected avoid GCC 12's false "may be used uninitialized"
  // from the unmasked intrinsics' undefined pass-through operand.)
  constexpr __mmask16 all = 0xFFFF;
  const __m512 xc = (__m512)(x < splat(-150.0f) ? splat(-150.0f) : x);  // -inf -> -150 (-> 0); NaN stays NaN
  const __m512 y = _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f));
  const __m512 mf = _mm512_mask_roundscale_ps(y, all, y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(mf, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(mf, _mm512_set1_ps(-2.12194440e-4f), r);
  const __m512 p = (__m512)exp_poly((Vec<float>)r);
  return (Vec<float>)_mm512_mask_scalef_ps(p, all, p, mf);
#else
  return vexp_portable(x);
#endif
}
inline Vec<double> vexp(Vec<double> x) {
  for (int j = 0; j < kVecLanes; ++j) x[j] = std::exp(x[j]);
  return x;
}

// 2^x, for the scan's decay factors exp(dt A) = 2^(dt A log2(e)) with A log2(e) computed once per
// block: x = m + f with m = round(x) and |f| <= 1/2 exact, a degree-6 polynomial for 2^f (fitted for
// minimax relative error, 2e-9; under 1 ulp evaluated in float), and 2^m in the exponent. Against
// exp(dt A) the one extra rounding of dt A log2(e) costs |x| ulps relatively, i.e. an absolute error
// below 3e-8 for the decay factors, which lie in [0, 1].
// (As vexp_any: on one register of the target, comparisons as bit selects; vexp2_portable runs it on the
// two halves of a 64-byte vector, which GCC 12 would otherwise compare lane by lane on AVX2.)
template <class V>
inline V vexp2_any(V x) {
  using I = decltype(x < x);
  const V round = V{} + 12582912.0f;  // 1.5 * 2^23
  const V lo = V{} - 126.0f, hi = V{} + 127.0f;
  const I below = x < lo;
  V xc = select(below, lo, x);
  xc = select(xc > hi, hi, xc);
  const V t = xc + round;
  const V mf = t - round;
  const I m = (I)t - 0x4B400000;
  const V f = xc - mf;
  const V v = exp2_poly(f) * (V)((m + 127) << 23);
  return select(below, V{}, v);
}
inline Vec<float> vexp2_portable(Vec<float> x) {  // two halves: one register each with AVX2
  typedef float Half __attribute__((vector_size(kVecLanes * sizeof(float) / 2)));
  Half h[2];
  std::memcpy(h, &x, sizeof x);
  h[0] = vexp2_any(h[0]), h[1] = vexp2_any(h[1]);
  std::memcpy(&x, h, sizeof x);
  return x;
}
inline Vec<float> vexp2(Vec<float> x) {
#if defined(__AVX512F__)
  constexpr __mmask16 all = 0xFFFF;
  constexpr int nearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
#if defined(__AVX512DQ__)
  // vreduceps gives f = x - round(x) in one step and 0 for +-inf, so 2^(-inf) = scalef(1, -inf) = 0
  // with no clamp (NaN stays NaN).
  const __m512 xc = (__m512)x;
  const __m512 mf = _mm512_mask_roundscale_ps(xc, all, xc, nearest);
  const __m512 f = _mm512_mask_reduce_ps(xc, all, xc, nearest);
#else
  const __m512 xc = (__m512)(x < splat(-150.0f) ? splat(-150.0f) : x);  // -inf -> -150 (-> 0); NaN stays NaN
  const __m512 mf = _mm512_mask_roundscale_ps(xc, all, xc, nearest);
  const __m512 f = _mm512_sub_ps(xc, mf);
#endif
  const __m512 p = (__m512)exp2_poly((Vec<float>)f);
  return (Vec<float>)_mm512_mask_scalef_ps(p, all, p, mf);
#else
  return vexp2_portable(x);
#endif
}
inline Vec<double> vexp2(Vec<double> x) {
  for (int j = 0; j < kVecLanes; ++j) x[j] = std::exp2(x[j]);
  return x;
}

// log1p(t) for t in (0, 1]: 2 atanh(s) with s = t / (2 + t) <= 1/3, as an odd series in s
// (truncation error below 1e-8).
inline Vec<float> log1p_unit(Vec<float> t) {
  const Vec<float> s = t / (2.0f + t), s2 = s * s;
  Vec<float> p = splat(1.0f / 15);
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// softplus(x) = log1p(exp(x)), x itself above 20. float: max(x, 0) + log1p(t) with t = exp(-|x|) in
// (0, 1].
inline Vec<float> vsoftplus(Vec<float> x) {
  using V = Vec<float>;
  const V zero = splat(0.0f);
  const V t = vexp(x < zero ? x : -x);  // exp(-|x|)
  const V v = (x > zero ? x : zero) + log1p_unit(t);
  return x > splat(20.0f) ? x : v;
}
inline Vec<double> vsoftplus(Vec<double> x) {
  for (int j = 0; j < kVecLanes; ++j) x[j] = x[j] > 20.0 ? x[j] : std::log1p(std::exp(x[j]));
  return x;
}

// softplus(x) and its derivative: sigmoid(x), and exactly 1 above 20 where softplus(x) = x.
inline Vec<float> vsoftplus(Vec<float> x, Vec<float>& dsoftplus) {
  using V = Vec<float>;
  const V zero = splat(0.0f), one = splat(1.0f);
  const V t = vexp(x < zero ? x : -x);  // exp(-|x|)
  const V big = splat(20.0f);
  dsoftplus = x > big ? one : (x > zero ? one : t) / (1.0f + t);  // sigmoid(x) from t = exp(-|x|)
  const V v = (x > zero ? x : zero) + log1p_unit(t);
  return x > big ? x : v;
}
inline Vec<double> vsoftplus(Vec<double> x, Vec<double>& dsoftplus) {
  for (int j = 0; j < kVecLanes; ++j) {
    const double e = std::exp(x[j]);
    dsoftplus[j] = x[j] > 20.0 ? 1.0 : e / (1.0 + e);
    x[j] = x[j] > 20.0 ? x[j] : std::log1p(e);
  }
  return x;
}

inline Vec<float> vsigmoid(Vec<float> x) { return 1.0f / (1.0f + vexp(-x)); }
inline Vec<double> vsigmoid(Vec<double> x) { return 1.0 / (1.0 + vexp(-x)); }

namespace detail {
// Lane j of the result takes lane (j / H) * 2H + j % H + off of the pair (x, y) (y's lanes count from
// kVecLanes): the halves of every 2H-lane group of x, then of y.
template <class T, int H, size_t... J>
constexpr IVec<T> pair_mask(std::index_sequence<J...>, int off) {
  using E = typename VecTraits<T>::ielem;
  return IVec<T>{static_cast<E>((int(J) / H) * 2 * H + int(J) % H + off)...};
}
template <class T, int H>
inline Vec<T> fold_pair(Vec<T> x, Vec<T> y) {
  constexpr IVec<T> lo = pair_mask<T, H>(std::make_index_sequence<kVecLanes>{}, 0);
  constexpr IVec<T> hi = pair_mask<T, H>(std::make_index_sequence<kVecLanes>{}, H);
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_shuffle(x, y, lo) + __builtin_shuffle(x, y, hi);
#else
  Vec<T> a, b;
  for (int j = 0; j < kVecLanes; ++j) {
    a[j] = lo[j] < kVecLanes ? x[lo[j]] : y[lo[j] - kVecLanes];
    b[j] = hi[j] < kVecLanes ? x[hi[j]] : y[hi[j] - kVecLanes];
  }
  return a + b;
#endif
}
template <class T, int H>
inline void fold_level(Vec<T>* r) {  // 2H vectors holding 16 / 2H rows each -> H vectors holding 16 / H rows each
  for (int p = 0; p < H; ++p) r[p] = fold_pair<T, H>(r[2 * p], r[2 * p + 1]);
}
}  // namespace detail

// rows[0 .. kVecLanes): returns the vector whose lane k is the sum of the lanes of rows[k]: kVecLanes
// horizontal sums for 15 shuffle pairs and adds, in a fixed order. Overwrites rows.
template <class T>
inline Vec<T> sum_rows(Vec<T>* rows) {
  static_assert(kVecLanes == 16, "sum_rows folds 16 lanes in four levels");
  detail::fold_level<T, 8>(rows);
  detail::fold_level<T, 4>(rows);
  detail::fold_level<T, 2>(rows);
  detail::fold_level<T, 1>(rows);
  return rows[0];
}

}  // namespace mg::cpu
