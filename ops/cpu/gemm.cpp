#include "ops/cpu/gemm.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"

namespace mg::cpu {

namespace {
constexpr int64_t kMC = 64, kKC = 256, kNC = 512;

// Copies the (mc, kc) block of op(A) starting at (i0, k0) into row-major `dst`.
template <class T>
void pack_a(bool trans, const T* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, T* dst) {
  for (int64_t i = 0; i < mc; ++i)
    for (int64_t k = 0; k < kc; ++k)
      dst[i * kc + k] = trans ? A[(k0 + k) * lda + i0 + i] : A[(i0 + i) * lda + k0 + k];
}

// Copies the (kc, nc) block of op(B) starting at (k0, j0) into row-major `dst`.
template <class T>
void pack_b(bool trans, const T* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, T* dst) {
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t j = 0; j < nc; ++j)
      dst[k * nc + j] = trans ? B[(j0 + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + j];
}

// C[mc, nc] += Ap[mc, kc] Bp[kc, nc], four rows of C at a time so each B row is loaded once per four.
template <class T>
void block_kernel(int64_t mc, int64_t nc, int64_t kc, const T* __restrict Ap, const T* __restrict Bp,
                  T* __restrict C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= mc; i += 4) {
    T* c0 = C + i * ldc;
    T* c1 = c0 + ldc;
    T* c2 = c1 + ldc;
    T* c3 = c2 + ldc;
    for (int64_t k = 0; k < kc; ++k) {
      const T a0 = Ap[i * kc + k], a1 = Ap[(i + 1) * kc + k], a2 = Ap[(i + 2) * kc + k], a3 = Ap[(i + 3) * kc + k];
      const T* b = Bp + k * nc;
#pragma omp simd
      for (int64_t j = 0; j < nc; ++j) {
        c0[j] += a0 * b[j];
        c1[j] += a1 * b[j];
        c2[j] += a2 * b[j];
        c3[j] += a3 * b[j];
      }
    }
  }
  for (; i < mc; ++i) {
    T* c = C + i * ldc;
    for (int64_t k = 0; k < kc; ++k) {
      const T a = Ap[i * kc + k];
      const T* b = Bp + k * nc;
#pragma omp simd
      for (int64_t j = 0; j < nc; ++j) c[j] += a * b[j];
    }
  }
}
}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t mt = (M + kMC - 1) / kMC, nt = (N + kNC - 1) / kNC;
  parallel_for(mt * nt, kMC * kNC * std::max<int64_t>(K, 1), [&](int64_t b, int64_t e) {
    std::vector<T> ap(kMC * kKC), bp(kKC * kNC);
    for (int64_t t = b; t < e; ++t) {
      const int64_t i0 = (t / nt) * kMC, j0 = (t % nt) * kNC;
      const int64_t mc = std::min(kMC, M - i0), nc = std::min(kNC, N - j0);
      T* c = C + i0 * ldc + j0;
      for (int64_t i = 0; i < mc; ++i)
        for (int64_t j = 0; j < nc; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        pack_a(trans_a, A, lda, i0, k0, mc, kc, ap.data());
        pack_b(trans_b, B, ldb, k0, j0, kc, nc, bp.data());
        block_kernel(mc, nc, kc, ap.data(), bp.data(), c, ldc);
      }
    }
  });
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float,
                          float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t,
                           double, double*, int64_t);

}  // namespace mg::cpu
