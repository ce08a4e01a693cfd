// The fused selective scan on the CPU. Work is split over (batch, block of kScanBlock channels);
// within a block the n states of each channel live in a local (n, kScanBlock) array and every
// inner loop runs over the block's channels, which the compiler vectorises. Blocks at the end of d
// are padded to full width with lanes that carry dt = 0, u = 0 (identity steps contributing 0), so
// every channel runs through the same code whatever d and the thread count are.
//
// Where the memory goes (b, l, d, n as in SPEC section 2; "all states" = b*l*d*n values):
//   forward:  the output (b, l, d), and when a backward will run the chunk-end states
//             (b, ceil(l/kScanChunk), d, n) = all states / kScanChunk. Per thread: O(n * kScanBlock).
//   backward: per thread, the recomputed states and decay factors of one chunk of one block,
//             2 * kScanChunk * n * kScanBlock values (256 KiB for n = 16 in float32);
//             dB and dC partials, one (b, l, n) per channel group but the first (under 1/16 of all states);
//             per-batch partials of dA (b, d, n), dD and ddelta_bias (b, d) in float64.
//   No (b, l, d, n) tensor exists at any point.
#include "ops/cpu/selective_scan.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "core/tensor.h"

namespace mg::cpu {

namespace {

constexpr int64_t W = kScanBlock;

// exp for float written so that it vectorises (Cephes' expf: x = m ln2 + r, |r| <= ln2/2, a degree-6
// polynomial for exp(r), 2^m from the exponent bits). m is rounded with the 1.5 * 2^23 trick rather
// than a float->int conversion, and clamps are ternaries rather than std::min/max: either of those
// stops GCC from vectorising the loop. Relative error about 1 ulp; 0 below -87.3 (where expf is
// denormal anyway), finite up to 88.
inline float vexp(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  const float t = xc * 1.44269504088896341f + kRound;
  const float mf = t - kRound;                                 // m = round(x / ln2), in [-126, 127]
  const int32_t m = std::bit_cast<int32_t>(t) - 0x4B400000;  // the same m as an integer
  float r = xc - mf * 0.693359375f;
  r = r + mf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float v = p * std::bit_cast<float>((m + 127) << 23);
  return x < -87.3f ? 0.0f : v;
}
inline double vexp(double x) { return std::exp(x); }

// softplus(x) = log1p(exp(x)), x above 20. For float: max(x, 0) + log1p(t) with t = exp(-|x|) in
// (0, 1], and log1p(t) = 2 atanh(s) with s = t / (2 + t) <= 1/3, as an odd series in s (the
// truncation error is below 1e-8).
inline float vsoftplus(float x) {
  const float t = vexp(x < 0.0f ? x : -x);  // exp(-|x|)
  const float s = t / (2.0f + t), s2 = s * s;
  float p = 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  const float v = (x > 0.0f ? x : 0.0f) + 2.0f * s * p;
  return x > 20.0f ? x : v;
}
inline double vsoftplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

template <class T>
inline T vsigmoid(T x) {
  return T(1) / (T(1) + vexp(-x));
}

// Per-block constants: A transposed to (n, W), D, delta_bias; zero in padded lanes.
template <class T>
void load_block_params(const ScanArgs<T>& a, int64_t c0, int64_t nc, T* AT, T* Dv, T* bias) {
  for (int64_t k = 0; k < a.n; ++k)
    for (int64_t j = 0; j < W; ++j) AT[k * W + j] = j < nc ? a.A[(c0 + j) * a.n + k] : T(0);
  for (int64_t j = 0; j < W; ++j) {
    Dv[j] = (a.D && j < nc) ? a.D[c0 + j] : T(0);
    bias[j] = (a.delta_bias && j < nc) ? a.delta_bias[c0 + j] : T(0);
  }
}

// dt and u of one time step (row = the element offset of channel c0 at this (batch, t)).
template <class T>
inline void load_step(const ScanArgs<T>& a, int64_t row, int64_t nc, const T* bias, T* dt, T* uu) {
  const T *pu = a.u + row, *pd = a.delta + row;
  if (nc == W) {
    if (a.softplus) {
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dt[j] = vsoftplus(pd[j] + bias[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) dt[j] = pd[j] + bias[j];
    }
    for (int64_t j = 0; j < W; ++j) uu[j] = pu[j];
  } else {
    for (int64_t j = 0; j < W; ++j) {
      if (j < nc) {
        const T x = pd[j] + bias[j];
        dt[j] = a.softplus ? vsoftplus(x) : x;
        uu[j] = pu[j];
      } else {
        dt[j] = T(0);
        uu[j] = T(0);
      }
    }
  }
}

// h (n, W) <-> the rows (c0 .. c0+nc) of a (d, n) state.
template <class T>
void store_state(const T* h, int64_t n, int64_t nc, T* dst) {
  for (int64_t j = 0; j < nc; ++j)
    for (int64_t k = 0; k < n; ++k) dst[j * n + k] = h[k * W + j];
}
template <class T>
void load_state(const T* src, int64_t n, int64_t nc, T* h) {
  for (int64_t k = 0; k < n; ++k)
    for (int64_t j = 0; j < W; ++j) h[k * W + j] = j < nc ? src[j * n + k] : T(0);
}

}  // namespace

template <class T>
void selective_scan_forward(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state) {
  const int64_t b = a.b, l = a.l, d = a.d, n = a.n;
  const int64_t nblocks = (d + W - 1) / W, nchunks = scan_num_chunks(l);
  parallel_for(b * nblocks, l * W * n, [&](int64_t lo, int64_t hi) {
    std::vector<T> scratch(2 * n * W + 6 * W);
    T *AT = scratch.data(), *h = AT + n * W, *Dv = h + n * W, *bias = Dv + W, *dt = bias + W, *uu = dt + W,
      *dtu = uu + W, *y = dtu + W;
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t i = task / nblocks, c0 = (task % nblocks) * W, nc = std::min(W, d - c0);
      load_block_params(a, c0, nc, AT, Dv, bias);
      std::fill(h, h + n * W, T(0));
      for (int64_t t = 0; t < l; ++t) {
        const int64_t row = (i * l + t) * d + c0;
        load_step(a, row, nc, bias, dt, uu);
        const T *Bt = a.B + (i * l + t) * n, *Ct = a.C + (i * l + t) * n;
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
          dtu[j] = dt[j] * uu[j];
          y[j] = Dv[j] * uu[j];
        }
        for (int64_t k = 0; k < n; ++k) {
          const T bk = Bt[k], ck = Ct[k];
          T* hk = h + k * W;
          const T* Ak = AT + k * W;
#pragma omp simd
          for (int64_t j = 0; j < W; ++j) {
            hk[j] = vexp(dt[j] * Ak[j]) * hk[j] + dtu[j] * bk;
            y[j] += ck * hk[j];
          }
        }
        T* po = out + row;
        if (a.z) {
          const T* pz = a.z + row;
          for (int64_t j = 0; j < nc; ++j) po[j] = y[j] * pz[j] * vsigmoid(pz[j]);
        } else {
          for (int64_t j = 0; j < nc; ++j) po[j] = y[j];
        }
        if (chunk_states && ((t + 1) % kScanChunk == 0 || t == l - 1))
          store_state(h, n, nc, chunk_states + ((i * nchunks + t / kScanChunk) * d + c0) * n);
      }
      if (last_state) store_state(h, n, nc, last_state + (i * d + c0) * n);
    }
  });
}

template <class T>
void selective_scan_backward(const ScanArgs<T>& a, const T* dout, const T* dlast, const T* chunk_states,
                             const ScanGrads<T>& g) {
  const int64_t b = a.b, l = a.l, d = a.d, n = a.n;
  const int64_t nblocks = (d + W - 1) / W, nchunks = scan_num_chunks(l);
  // Channel groups: blocks [grp * bpg, (grp + 1) * bpg), fixed by d alone. At most d / 32 groups,
  // so that the dB and dC partials, 2 (G - 1) b l n values, stay under 1/16 of all states.
  const int64_t want_groups = std::max<int64_t>(1, std::min<int64_t>(kScanMaxGroups, d / 32));
  const int64_t bpg = (nblocks + want_groups - 1) / want_groups, G = (nblocks + bpg - 1) / bpg;
  const DType dt_t = dtype_of<T>();
  // Partials, allocated as tensors so that the memory counters see them (see the header comment).
  // Group 0 accumulates straight into dB / dC; groups 1 .. G-1 into their own (b, l, n) partial.
  Tensor partB = g.dB && G > 1 ? Tensor::empty({G - 1, b, l, n}, dt_t) : Tensor();  // (G-1, b, l, n)
  Tensor partC = g.dC && G > 1 ? Tensor::empty({G - 1, b, l, n}, dt_t) : Tensor();  // (G-1, b, l, n)
  Tensor part_dA = g.dA ? Tensor::empty({b, d, n}, DType::f64) : Tensor();  // (b, d, n)
  Tensor part_dD = g.dD ? Tensor::empty({b, d}, DType::f64) : Tensor();     // (b, d)
  Tensor part_db = g.ddelta_bias ? Tensor::empty({b, d}, DType::f64) : Tensor();  // (b, d)
  T* pB_all = partB.defined() ? partB.data<T>() : nullptr;
  T* pC_all = partC.defined() ? partC.data<T>() : nullptr;
  double* pdA_all = part_dA.defined() ? part_dA.data<double>() : nullptr;
  double* pdD_all = part_dD.defined() ? part_dD.data<double>() : nullptr;
  double* pdb_all = part_db.defined() ? part_db.data<double>() : nullptr;

  parallel_for(b * G, l * W * n * bpg * 3, [&](int64_t lo, int64_t hi) {
    const int64_t CW = kScanChunk * W, CNW = kScanChunk * n * W;
    // Per-thread scratch: (n, W) arrays, the chunk's states and decay factors (kScanChunk, n, W),
    // the chunk's dt, u, y (kScanChunk, W), and W-wide temporaries.
    std::vector<T> scratch(4 * n * W + 2 * CNW + 3 * CW + 7 * W);
    T *AT = scratch.data(), *h0 = AT + n * W, *gst = h0 + n * W, *dAc = gst + n * W;
    T *hbuf = dAc + n * W, *abuf = hbuf + CNW;
    T *dtbuf = abuf + CNW, *ubuf = dtbuf + CW, *ybuf = ubuf + CW;
    T *Dv = ybuf + CW, *bias = Dv + W, *dy = bias + W, *dtu = dy + W, *dua = dtu + W, *ddta = dua + W, *go = ddta + W;
    std::vector<double> acc(n * W + 2 * W);
    double *dAtot = acc.data(), *dDtot = dAtot + n * W, *dbtot = dDtot + W;

    for (int64_t task = lo; task < hi; ++task) {
      const int64_t i = task / G, grp = task % G;
      T* pB = !g.dB ? nullptr : grp == 0 ? g.dB + i * l * n : pB_all + ((grp - 1) * b + i) * l * n;
      T* pC = !g.dC ? nullptr : grp == 0 ? g.dC + i * l * n : pC_all + ((grp - 1) * b + i) * l * n;
      if (pB) std::fill(pB, pB + l * n, T(0));
      if (pC) std::fill(pC, pC + l * n, T(0));
      for (int64_t blk = grp * bpg; blk < std::min(nblocks, (grp + 1) * bpg); ++blk) {
        const int64_t c0 = blk * W, nc = std::min(W, d - c0);
        load_block_params(a, c0, nc, AT, Dv, bias);
        if (dlast)
          load_state(dlast + (i * d + c0) * n, n, nc, gst);
        else
          std::fill(gst, gst + n * W, T(0));
        std::fill(acc.begin(), acc.end(), 0.0);

        for (int64_t ch = nchunks - 1; ch >= 0; --ch) {
          const int64_t t0 = ch * kScanChunk, L = std::min(kScanChunk, l - t0);
          if (ch == 0)
            std::fill(h0, h0 + n * W, T(0));
          else
            load_state(chunk_states + ((i * nchunks + ch - 1) * d + c0) * n, n, nc, h0);

          // 1. Recompute the chunk: dt, u, the decay factors a = exp(dt A), the states h, and y.
          for (int64_t tt = 0; tt < L; ++tt) {
            const int64_t t = t0 + tt, row = (i * l + t) * d + c0;
            T *dt = dtbuf + tt * W, *uu = ubuf + tt * W, *y = ybuf + tt * W;
            load_step(a, row, nc, bias, dt, uu);
            const T *Bt = a.B + (i * l + t) * n, *Ct = a.C + (i * l + t) * n;
            const T* prev = tt ? hbuf + (tt - 1) * n * W : h0;
            T *hc = hbuf + tt * n * W, *ac = abuf + tt * n * W;
#pragma omp simd
            for (int64_t j = 0; j < W; ++j) {
              dtu[j] = dt[j] * uu[j];
              y[j] = Dv[j] * uu[j];
            }
            for (int64_t k = 0; k < n; ++k) {
              const T bk = Bt[k], ck = Ct[k];
              const T *Ak = AT + k * W, *pk = prev + k * W;
              T *hk = hc + k * W, *ak = ac + k * W;
#pragma omp simd
              for (int64_t j = 0; j < W; ++j) {
                const T e = vexp(dt[j] * Ak[j]);
                ak[j] = e;
                hk[j] = e * pk[j] + dtu[j] * bk;
                y[j] += ck * hk[j];
              }
            }
          }

          // 2. The reverse recurrence over the chunk; gst carries dL/dh across steps and chunks.
          std::fill(dAc, dAc + n * W, T(0));
          for (int64_t tt = L - 1; tt >= 0; --tt) {
            const int64_t t = t0 + tt, row = (i * l + t) * d + c0;
            const T *dt = dtbuf + tt * W, *uu = ubuf + tt * W, *y = ybuf + tt * W;
            for (int64_t j = 0; j < W; ++j) go[j] = j < nc ? dout[row + j] : T(0);
            if (a.z) {
              for (int64_t j = 0; j < W; ++j) {
                const T zz = j < nc ? a.z[row + j] : T(0), s = vsigmoid(zz);
                dy[j] = go[j] * zz * s;
                if (g.dz && j < nc) g.dz[row + j] = go[j] * y[j] * s * (T(1) + zz * (T(1) - s));
              }
            } else {
              for (int64_t j = 0; j < W; ++j) dy[j] = go[j];
            }
#pragma omp simd
            for (int64_t j = 0; j < W; ++j) {
              dtu[j] = dt[j] * uu[j];
              dua[j] = T(0);
              ddta[j] = T(0);
            }
            const T *Bt = a.B + (i * l + t) * n, *Ct = a.C + (i * l + t) * n;
            const T* prev = tt ? hbuf + (tt - 1) * n * W : h0;
            const T *hc = hbuf + tt * n * W, *ac = abuf + tt * n * W;
            for (int64_t k = 0; k < n; ++k) {
              const T bk = Bt[k], ck = Ct[k];
              const T *Ak = AT + k * W, *pk = prev + k * W, *hk = hc + k * W, *ak = ac + k * W;
              T *gk = gst + k * W, *dAk = dAc + k * W;
              T sB = 0, sC = 0;
#pragma omp simd reduction(+ : sB, sC)
              for (int64_t j = 0; j < W; ++j) {
                const T gg = gk[j] + dy[j] * ck;  // dL/dh[t]
                const T ah = ak[j] * pk[j];       // exp(dt A) h[t-1]
                sC += dy[j] * hk[j];
                sB += gg * dtu[j];
                dua[j] += gg * bk;
                ddta[j] += gg * (bk * uu[j] + Ak[j] * ah);
                dAk[j] += gg * dt[j] * ah;
                gk[j] = gg * ak[j];  // dL/dh[t-1] from this step
              }
              if (pB) pB[t * n + k] += sB;
              if (pC) pC[t * n + k] += sC;
            }
            for (int64_t j = 0; j < nc; ++j) {
              if (g.du) g.du[row + j] = dua[j] * dt[j] + Dv[j] * dy[j];
              T dd = ddta[j];
              if (a.softplus) {
                const T x = a.delta[row + j] + bias[j];
                dd *= x > T(20) ? T(1) : vsigmoid(x);
              }
              if (g.ddelta) g.ddelta[row + j] = dd;
              dDtot[j] += (double)(dy[j] * uu[j]);
              dbtot[j] += (double)dd;
            }
          }
          for (int64_t e = 0; e < n * W; ++e) dAtot[e] += (double)dAc[e];
        }
        for (int64_t j = 0; j < nc; ++j) {
          if (pdA_all)
            for (int64_t k = 0; k < n; ++k) pdA_all[(i * d + c0 + j) * n + k] = dAtot[k * W + j];
          if (pdD_all) pdD_all[i * d + c0 + j] = dDtot[j];
          if (pdb_all) pdb_all[i * d + c0 + j] = dbtot[j];
        }
      }
    }
  });

  // Fixed-order sums: over channel groups for dB, dC; over the batch for dA, dD, ddelta_bias.
  auto sum_groups = [&](const T* part, T* dst) {  // dst holds group 0's sum
    const int64_t m = b * l * n;
    parallel_for(m, G, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) {
        T s = dst[e];
        for (int64_t q = 0; q < G - 1; ++q) s += part[q * m + e];
        dst[e] = s;
      }
    });
  };
  if (g.dB && G > 1) sum_groups(pB_all, g.dB);
  if (g.dC && G > 1) sum_groups(pC_all, g.dC);
  auto sum_batch = [&](const double* part, int64_t m, T* dst) {
    for (int64_t e = 0; e < m; ++e) {
      double s = 0;
      for (int64_t i = 0; i < b; ++i) s += part[i * m + e];
      dst[e] = (T)s;
    }
  };
  if (g.dA) sum_batch(pdA_all, d * n, g.dA);
  if (g.dD) sum_batch(pdD_all, d, g.dD);
  if (g.ddelta_bias) sum_batch(pdb_all, d, g.ddelta_bias);
}

template void selective_scan_forward<float>(const ScanArgs<float>&, float*, float*, float*);
template void selective_scan_forward<double>(const ScanArgs<double>&, double*, double*, double*);
template void selective_scan_backward<float>(const ScanArgs<float>&, const float*, const float*, const float*,
                                             const ScanGrads<float>&);
template void selective_scan_backward<double>(const ScanArgs<double>&, const double*, const double*, const double*,
                                              const ScanGrads<double>&);

}  // namespace mg::cpu
