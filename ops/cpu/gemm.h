// Our CPU matrix multiply (no BLAS). Row-major C (M, N) = op(A) op(B) + beta * C, where op(A) is
// A (M, K) with row stride lda, or, when trans_a, the transpose of a stored (K, M) matrix; same for B.
// Blocked for the caches, vectorised over N, threaded over tiles of C. The one place to make fast.
#pragma once
#include <cstdint>

namespace mg::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace mg::cpu
