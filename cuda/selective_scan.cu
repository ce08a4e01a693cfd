// The fused selective scan on CUDA (docs/design.md#the-selective-scan; the op, its checks and vjp are in
// ops/selective_scan.cpp; the design is in docs/cuda-scan.md).
//
// Work split. A block owns batch row i and the 32 channels c0 .. c0+31 (lane = channel), and walks the
// sequence chunk by chunk. A chunk is kScanWarps * kScanItems = 64 time steps: warp w takes the
// kScanItems consecutive steps starting at w * kScanItems. Loads of u, delta, z, dout and stores of
// y, du, ddelta, dz are one 128-byte row per warp and step (coalesced); B and C of the chunk are staged
// in shared memory as (n, 64) and read with vector loads (all lanes read the same address).
//
// The scan. For each state k the step t maps h to a_t h + b_t with a_t = exp(dt_t A_k) and
// b_t = dt_t B_t,k u_t. Pairs compose associatively, (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2). Each
// thread composes its kScanItems pairs into one, the warps exchange these through shared memory, and
// each thread starts its steps from the chunk's start state composed with the pairs of the warps
// before it. The chunk's end state carries to the next chunk. The reverse recurrence of the backward
// is the same scan run backwards over e_t = a_t (dy_t C_t,k + e_t+1) (the gradient reaching h_t-1
// through step t), carried from chunk to chunk, and starts from dlast. With an initial state h0 the
// forward's first chunk starts from it instead of zeros, and the e that leaves chunk 0 is dh0.
//
// Determinism. No atomics: dB[t,k] and dC[t,k] (sums over channels) are reduced across the 32 lanes
// of a warp with a fixed butterfly and written as one partial per channel group; dA, dD and
// ddelta_bias are summed per thread in time order, across warps in warp order, and per batch row;
// small kernels then add the partials in a fixed order. The results do not depend on scheduling.
//
// Positions past l and channels past d run as identity steps (dt = 0, u = 0, dy = 0, A = 0) so that
// every lane takes part in the shuffles and barriers; they are never stored.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/unary_functors.h"
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/scan_kernels.h"

namespace mg::cuda {

namespace {

constexpr int S = kScanItems;
constexpr int P = kScanWarps;
constexpr int TC = kScanItems * kScanWarps;  // chunk length
constexpr int W = kScanLanes;
static_assert(W == 32, "a block's channels are the 32 lanes of a warp");
static_assert(2 * S <= 32 && (S & (S - 1)) == 0, "the dB/dC butterfly reduces 2 * kScanItems <= 32 values");

// exp(x * A) with A_scaled = A * log2(e) for float (exp2f is one MUFU op, as in the official kernels),
// plain exp for double.
__device__ __forceinline__ float scaled_A(float A) { return A * 1.4426950408889634f; }
__device__ __forceinline__ double scaled_A(double A) { return A; }
__device__ __forceinline__ float exp_scaled(float x) { return exp2f(x); }
__device__ __forceinline__ double exp_scaled(double x) { return exp(x); }

// The input of step `row` as the forward and the backward both read it: u, and the step size dt = delta +
// bias, through softplus when asked (core/unary_functors.h's, as the CPU's: log1p(exp(x)), x above 20).
template <class T>
__device__ __forceinline__ void load_step(const ScanArgs<T>& p, int64_t row, T bias, T& u, T& dt) {
  u = p.u[row];
  const T x = p.delta[row] + bias;
  dt = p.softplus ? fn::softplus(x) : x;
}

// S consecutive values from shared memory (16-byte aligned: offsets are multiples of S elements).
__device__ __forceinline__ void load_items(const float* src, float (&dst)[S]) {
#pragma unroll
  for (int q = 0; q < S / 4; ++q) {
    const float4 v = reinterpret_cast<const float4*>(src)[q];
    dst[4 * q] = v.x, dst[4 * q + 1] = v.y, dst[4 * q + 2] = v.z, dst[4 * q + 3] = v.w;
  }
}
__device__ __forceinline__ void load_items(const double* src, double (&dst)[S]) {
#pragma unroll
  for (int q = 0; q < S / 2; ++q) {
    const double2 v = reinterpret_cast<const double2*>(src)[q];
    dst[2 * q] = v.x, dst[2 * q + 1] = v.y;
  }
}

// A thread's S steps of one state k: the decay factors a[s] = exp(dt[s] A) (Ak: A as scaled_A gives it),
// the inputs bx[s] = dt[s] u[s] B[s], and their composition h -> Ap h + Bp over the S steps in order.
template <class T>
__device__ __forceinline__ void compose_steps(const T (&dt)[S], const T (&u)[S], const T (&Bv)[S], T Ak, T (&a)[S],
                                              T (&bx)[S], T& Ap, T& Bp) {
  Ap = T(1), Bp = T(0);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    a[s] = exp_scaled(dt[s] * Ak);
    bx[s] = dt[s] * u[s] * Bv[s];
    Ap *= a[s];
    Bp = a[s] * Bp + bx[s];
  }
}

// a when pick_a, else b, as a bitwise blend of the two values: a plain `?:` between two array elements is
// folded into a select of their addresses, which sends the whole array to local memory.
__device__ __forceinline__ float blend(bool pick_a, float a, float b) {
  const unsigned m = pick_a ? 0xffffffffu : 0u;
  return __uint_as_float((__float_as_uint(a) & m) | (__float_as_uint(b) & ~m));
}
__device__ __forceinline__ double blend(bool pick_a, double a, double b) {
  const unsigned long long m = pick_a ? ~0ull : 0ull;
  return __longlong_as_double((long long)(((unsigned long long)__double_as_longlong(a) & m) |
                                          ((unsigned long long)__double_as_longlong(b) & ~m)));
}

// One butterfly step of warp_transpose_sum and the ones after it; Off is a template argument so that
// every array index is a compile-time constant (the values stay in registers).
template <int Off, int V, class T>
__device__ __forceinline__ void transpose_steps(T (&v)[V], int lane) {
  if constexpr (Off >= 1) {
    const bool upper = (lane & Off) != 0;
#pragma unroll
    for (int q = 0; q < Off; ++q) {
      const T send = blend(upper, v[q], v[q + Off]);
      const T keep = blend(upper, v[q + Off], v[q]);
      v[q] = keep + __shfl_xor_sync(kFullMask, send, Off);
    }
    transpose_steps<Off / 2>(v, lane);
  }
}

// Sums each of V values over the 32 lanes of the warp; lane L returns the sum of value L % V.
// Butterfly: at each step a lane keeps half of its values and adds its partner's copy of that half,
// so V sums cost about V shuffles instead of 5 V. The order of the additions is fixed.
template <int V, class T>
__device__ __forceinline__ T warp_transpose_sum(T (&v)[V], int lane) {
  static_assert(V >= 2 && V <= 32 && (V & (V - 1)) == 0, "V must be a power of two in [2, 32]");
  transpose_steps<V / 2>(v, lane);
  T r = v[0];
#pragma unroll
  for (int off = V; off < 32; off *= 2) r += __shfl_xor_sync(kFullMask, r, off);
  return r;
}

// Shared memory of the kernels, in elements of T (the float64 block at the end of the backward's is
// placed first so that it stays 8-byte aligned).
__host__ __device__ inline int64_t fwd_smem_elems(int64_t n) { return 2 * n * TC + 2 * 2 * P * W + 2 * n * W; }
__host__ __device__ inline int64_t bwd_smem_doubles(int64_t n) { return n * W + 2 * P * W; }
__host__ __device__ inline int64_t bwd_smem_elems(int64_t n) {
  return 2 * n * TC + n * W + 2 * n * W + 3 * 2 * P * W + 2 * P * W;
}

// B and C of chunk [t0, t0 + TC) of batch row i into sB, sC laid out (n, TC); zero past l.
template <class T>
__device__ __forceinline__ void stage_BC(const ScanArgs<T>& p, int64_t i, int64_t t0, T* sB, T* sC, int tid) {
  const int64_t n = p.n;
  for (int64_t e = tid; e < (int64_t)TC * n; e += P * W) {
    const int64_t tt = e / n, k = e - tt * n, t = t0 + tt;
    const bool in = t < p.l;
    const int64_t r = i * p.l + t;
    sB[k * TC + tt] = in ? p.B[r * p.B_rs + k] : T(0);
    sC[k * TC + tt] = in ? p.C[r * p.C_rs + k] : T(0);
  }
}

template <class T>
__global__ void __launch_bounds__(P* W) scan_forward_kernel(ScanArgs<T> p, T* out, T* states, T* last) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t n = p.n, l = p.l, d = p.d;
  T* sB = reinterpret_cast<T*>(smem_raw);  // (n, TC)
  T* sC = sB + n * TC;                     // (n, TC)
  T* aggA = sC + n * TC;                   // (2, P, W): a warp's composed pair, by parity of k
  T* aggB = aggA + 2 * P * W;              // (2, P, W)
  T* carry = aggB + 2 * P * W;             // (2, n, W): the chunk's start state, by parity of the chunk

  const int lane = threadIdx.x, w = threadIdx.y, tid = w * W + lane;
  const int64_t G = (d + W - 1) / W;
  const int64_t i = blockIdx.x / G, c = (blockIdx.x % G) * W + lane;
  const bool valid = c < d;
  const int64_t nchunks = (l + TC - 1) / TC;
  const T bias = (valid && p.delta_bias) ? p.delta_bias[c] : T(0);
  const T Dc = (valid && p.D) ? p.D[c] : T(0);

  // carry[0] (chunk 0's start) is the initial state or zeros; e % W == lane, so c is this thread's channel.
  for (int64_t e = tid; e < n * W; e += P * W) carry[e] = (valid && p.h0) ? p.h0[(i * d + c) * n + e / W] : T(0);

  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t t0 = ch * TC;
    const int cur = (int)(ch & 1);
    __syncthreads();  // the previous chunk is done with sB, sC (and carry[0] holds the initial state)
    stage_BC(p, i, t0, sB, sC, tid);

    T u[S], dt[S], y[S];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t t = t0 + w * S + s;
      y[s] = T(0);
      if (valid && t < l) {
        const int64_t row = (i * l + t) * d + c;
        load_step(p, row, bias, u[s], dt[s]);
      } else {
        u[s] = T(0);
        dt[s] = T(0);
      }
    }
    __syncthreads();  // sB, sC ready

    for (int64_t k = 0; k < n; ++k) {
      const T Ak = valid ? scaled_A(p.A[c * n + k]) : T(0);
      T Bv[S], a[S], bx[S], Ap, Bp;
      load_items(sB + k * TC + w * S, Bv);
      compose_steps(dt, u, Bv, Ak, a, bx, Ap, Bp);
      const int buf = (int)(k & 1);
      aggA[(buf * P + w) * W + lane] = Ap;
      aggB[(buf * P + w) * W + lane] = Bp;
      __syncthreads();
      T h = carry[(cur * n + k) * W + lane];
      for (int q = 0; q < w; ++q) h = aggA[(buf * P + q) * W + lane] * h + aggB[(buf * P + q) * W + lane];
      T Cv[S];
      load_items(sC + k * TC + w * S, Cv);
#pragma unroll
      for (int s = 0; s < S; ++s) {
        h = a[s] * h + bx[s];
        y[s] += Cv[s] * h;
      }
      if (w == P - 1) {  // h is the state after the chunk's last step
        carry[((cur ^ 1) * n + k) * W + lane] = h;
        if (valid && states) states[((i * nchunks + ch) * n + k) * d + c] = h;
        if (valid && last && ch == nchunks - 1) last[(i * d + c) * n + k] = h;
      }
    }

#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t t = t0 + w * S + s;
      if (valid && t < l) {
        const int64_t row = (i * l + t) * d + c;
        T v = y[s] + Dc * u[s];
        if (p.z) {
          const T zz = p.z[(i * l + t) * p.z_rs + c];
          v *= zz * fn::sigmoid(zz);
        }
        out[row] = v;
      }
    }
  }
}

// float32: at most 128 registers so that two blocks share an SM (a few bytes spill); float64 takes what
// it needs.
template <class T>
__global__ void __launch_bounds__(P* W, sizeof(T) == 4 ? 2 : 1)
    scan_backward_kernel(ScanArgs<T> p, const T* dout, const T* dlast, const T* states, ScanGrads<T> g,
                         ScanScratch<T> sc) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t n = p.n, l = p.l, d = p.d, b = p.b;
  double* dA_blk = reinterpret_cast<double*>(smem_raw);  // (n, W): dA of this block, over chunks
  double* red = dA_blk + n * W;                          // (2, P, W): dD and ddelta_bias across warps
  T* sB = reinterpret_cast<T*>(red + 2 * P * W);         // (n, TC)
  T* sC = sB + n * TC;                                   // (n, TC)
  T* hprev = sC + n * TC;                                // (n, W): the state before the chunk
  T* ecarry = hprev + n * W;     // (2, n, W): gradient reaching the chunk's last state from later steps
  T* aggA = ecarry + 2 * n * W;  // (2, P, W) by parity of k: product of a warp's a
  T* aggF = aggA + 2 * P * W;    // (2, P, W): the warp's forward b (start state 0)
  T* aggR = aggF + 2 * P * W;    // (2, P, W): the warp's reverse e (incoming gradient 0)
  T* dAtmp = aggR + 2 * P * W;   // (2, P, W) by parity of k: each warp's dA of the chunk

  const int lane = threadIdx.x, w = threadIdx.y, tid = w * W + lane;
  const int64_t G = (d + W - 1) / W;
  const int64_t i = blockIdx.x / G, grp = blockIdx.x % G, c = grp * W + lane;
  const bool valid = c < d;
  const int64_t nchunks = (l + TC - 1) / TC;
  const T bias = (valid && p.delta_bias) ? p.delta_bias[c] : T(0);
  const T Dc = (valid && p.D) ? p.D[c] : T(0);
  const bool want_BC = sc.part_dB || sc.part_dC;

  // Each thread fills its own lane's column (k = w, w + P, ...).
  for (int64_t k = w; k < n; k += P) {
    dA_blk[k * W + lane] = 0.0;
    ecarry[(((nchunks - 1) & 1) * n + k) * W + lane] = (dlast && valid) ? dlast[(i * d + c) * n + k] : T(0);
  }
  double dD_acc = 0.0, db_acc = 0.0;

  for (int64_t ch = nchunks - 1; ch >= 0; --ch) {
    const int64_t t0 = ch * TC;
    const int cur = (int)(ch & 1);
    __syncthreads();  // the previous chunk is done with sB, sC, hprev
    stage_BC(p, i, t0, sB, sC, tid);
    // The state before the chunk: the saved end of the chunk before, or for chunk 0 the initial state.
    if (ch > 0) {
      for (int64_t k = w; k < n; k += P)
        hprev[k * W + lane] = valid ? states[((i * nchunks + ch - 1) * n + k) * d + c] : T(0);
    } else {
      for (int64_t k = w; k < n; k += P) hprev[k * W + lane] = (valid && p.h0) ? p.h0[(i * d + c) * n + k] : T(0);
    }

    T u[S], dt[S], dy[S], yacc[S], du_acc[S], ddt_acc[S];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t t = t0 + w * S + s;
      yacc[s] = du_acc[s] = ddt_acc[s] = T(0);
      if (valid && t < l) {
        const int64_t row = (i * l + t) * d + c;
        load_step(p, row, bias, u[s], dt[s]);
        T go = dout[row];
        if (p.z) {
          const T zz = p.z[(i * l + t) * p.z_rs + c];
          go *= zz * fn::sigmoid(zz);
        }
        dy[s] = go;
      } else {
        u[s] = dt[s] = dy[s] = T(0);
      }
    }
    __syncthreads();  // sB, sC, hprev ready

    for (int64_t k = 0; k < n; ++k) {
      const T Ak = valid ? p.A[c * n + k] : T(0), Ak2 = scaled_A(Ak);
      T Bv[S], Cv[S], a[S], bx[S], Ap, Fp, Rp = T(0);
      load_items(sB + k * TC + w * S, Bv);
      load_items(sC + k * TC + w * S, Cv);
      compose_steps(dt, u, Bv, Ak2, a, bx, Ap, Fp);
#pragma unroll
      for (int s = S - 1; s >= 0; --s) Rp = a[s] * (dy[s] * Cv[s] + Rp);
      const int buf = (int)(k & 1);
      aggA[(buf * P + w) * W + lane] = Ap;
      aggF[(buf * P + w) * W + lane] = Fp;
      aggR[(buf * P + w) * W + lane] = Rp;
      __syncthreads();
      if (w == 0 && k > 0) {  // fold the previous state's per-warp dA, in warp order
        double sacc = 0.0;
        for (int q = 0; q < P; ++q) sacc += (double)dAtmp[((buf ^ 1) * P + q) * W + lane];
        dA_blk[(k - 1) * W + lane] += sacc;
      }
      T h = hprev[k * W + lane];
      for (int q = 0; q < w; ++q) h = aggA[(buf * P + q) * W + lane] * h + aggF[(buf * P + q) * W + lane];
      T e = ecarry[(cur * n + k) * W + lane];
      for (int q = P - 1; q > w; --q) e = aggA[(buf * P + q) * W + lane] * e + aggR[(buf * P + q) * W + lane];

      // Forward over the warp's steps: the states h_t (hs) and y's part from state k.
      const T hstart = h;
      T hs[S];
#pragma unroll
      for (int s = 0; s < S; ++s) {
        h = a[s] * h + bx[s];
        hs[s] = h;
        yacc[s] += Cv[s] * h;
      }
      // Backward over the warp's steps: dh = dL/dh_t, e = what reaches h_t-1.
      T v[2 * S];  // dB's terms, then dC's
      T dAk = T(0);
#pragma unroll
      for (int s = S - 1; s >= 0; --s) {
        const T dh = dy[s] * Cv[s] + e;
        const T hp = s > 0 ? hs[s - 1] : hstart;
        const T ah = a[s] * hp;
        const T dtu = dt[s] * u[s];
        v[s] = dh * dtu;
        v[S + s] = dy[s] * hs[s];
        du_acc[s] += dh * Bv[s];
        ddt_acc[s] += dh * (Bv[s] * u[s] + Ak * ah);
        dAk += dh * dt[s] * ah;
        e = a[s] * dh;
      }
      if (w == 0) ecarry[((cur ^ 1) * n + k) * W + lane] = e;                   // for the chunk before
      if (w == 0 && ch == 0 && valid && g.dh0) g.dh0[(i * d + c) * n + k] = e;  // what reaches h0
      dAtmp[(buf * P + w) * W + lane] = dAk;
      if (want_BC) {
        const T r = warp_transpose_sum<2 * S>(v, lane);
        if (lane < 2 * S) {
          const int s = lane % S;
          const int64_t t = t0 + w * S + s;
          T* part = lane < S ? sc.part_dB : sc.part_dC;
          if (part && t < l) part[((grp * b + i) * n + k) * l + t] = r;
        }
      }
    }
    __syncthreads();
    if (w == 0) {  // the last state's dA
      double sacc = 0.0;
      for (int q = 0; q < P; ++q) sacc += (double)dAtmp[(((n - 1) & 1) * P + q) * W + lane];
      dA_blk[(n - 1) * W + lane] += sacc;
    }

#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t t = t0 + w * S + s;
      if (!(valid && t < l)) continue;
      const int64_t row = (i * l + t) * d + c;
      if (g.du) g.du[row] = du_acc[s] * dt[s] + Dc * dy[s];
      T dd = ddt_acc[s];
      if (p.softplus) {
        const T x = p.delta[row] + bias;
        dd *= x > T(20) ? T(1) : fn::sigmoid(x);
      }
      if (g.ddelta) g.ddelta[row] = dd;
      if (g.dz) {
        const T zz = p.z[(i * l + t) * p.z_rs + c], sg = fn::sigmoid(zz);
        const T yv = yacc[s] + Dc * u[s];
        g.dz[row] = dout[row] * yv * sg * (T(1) + zz * (T(1) - sg));
      }
      dD_acc += (double)(dy[s] * u[s]);
      db_acc += (double)dd;
    }
  }

  // Per-block totals, summed across warps in warp order.
  red[w * W + lane] = dD_acc;
  red[(P + w) * W + lane] = db_acc;
  __syncthreads();
  if (w == 0 && valid) {
    double sD = 0.0, sb = 0.0;
    for (int q = 0; q < P; ++q) {
      sD += red[q * W + lane];
      sb += red[(P + q) * W + lane];
    }
    if (sc.part_dD) sc.part_dD[i * d + c] = sD;
    if (sc.part_dbias) sc.part_dbias[i * d + c] = sb;
    if (sc.part_dA)
      for (int64_t k = 0; k < n; ++k) sc.part_dA[(i * d + c) * n + k] = dA_blk[k * W + lane];
  }
}

// dst[i, t, k] = sum over groups of part[grp, i, k, t], groups in order.
template <class T>
__global__ void sum_groups_kernel(const T* part, int64_t G, int64_t b, int64_t n, int64_t l, T* dst) {
  const int64_t m = b * n * l;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = e % l, k = (e / l) % n, i = e / (l * n);
    double s = 0.0;
    for (int64_t q = 0; q < G; ++q) s += (double)part[q * m + e];
    dst[(i * l + t) * n + k] = (T)s;
  }
}

// dst[e] = sum over the batch of part[i, e] (m values per row), rows in order.
template <class T>
__global__ void sum_batch_kernel(const double* part, int64_t b, int64_t m, T* dst) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    double s = 0.0;
    for (int64_t i = 0; i < b; ++i) s += part[i * m + e];
    dst[e] = (T)s;
  }
}

// Sets the kernel's dynamic shared memory, opting in above 48 KiB; throws when the device has less.
template <class K>
void prepare_smem(K kernel, size_t bytes, int64_t n, int device, const char* dtype) {
  int optin = 0;
  MG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "selective_scan");
  MG_CHECK(bytes <= (size_t)optin,
           "[selective_scan] state size n = {} needs {} bytes of shared memory per block in {} on cuda:{}, which has "
           "{}: use a smaller n (or the cpu)",
           n, bytes, dtype, device, optin);
  if (bytes > 48 * 1024)
    MG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                  "selective_scan");
}

template <class T>
const char* dtype_label() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

template <class T>
dim3 scan_grid(const ScanArgs<T>& a) {
  return dim3(grid_of((size_t)(a.b * scan_num_groups_cuda(a.d)), "selective_scan"));  // one block per (batch, group)
}

}  // namespace

template <class T>
void selective_scan_forward(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state, int device) {
  set_device(device, "selective_scan");
  const size_t smem = (size_t)fwd_smem_elems(a.n) * sizeof(T);
  prepare_smem(scan_forward_kernel<T>, smem, a.n, device, dtype_label<T>());
  scan_forward_kernel<T><<<scan_grid(a), dim3(W, P), smem, stream(device)>>>(a, out, chunk_states, last_state);
  MG_CUDA_LAUNCH_CHECK("selective_scan");
}

template <class T>
void selective_scan_backward(const ScanArgs<T>& a, const T* dout, const T* dlast, const T* chunk_states,
                             const ScanGrads<T>& g, const ScanScratch<T>& s, int device) {
  set_device(device, "selective_scan");
  MG_CHECK(a.l <= kScanChunkCuda || chunk_states,
           "[selective_scan] internal error: the backward needs the chunk states");
  MG_CHECK(!g.dB || s.part_dB, "[selective_scan] internal error: dB needs its partials");
  MG_CHECK(!g.dC || s.part_dC, "[selective_scan] internal error: dC needs its partials");
  MG_CHECK((!g.dA || s.part_dA) && (!g.dD || s.part_dD) && (!g.ddelta_bias || s.part_dbias),
           "[selective_scan] internal error: dA, dD and ddelta_bias need their partials");
  MG_CHECK(!g.dz || a.z, "[selective_scan] internal error: dz without z");
  const size_t smem = (size_t)bwd_smem_doubles(a.n) * sizeof(double) + (size_t)bwd_smem_elems(a.n) * sizeof(T);
  prepare_smem(scan_backward_kernel<T>, smem, a.n, device, dtype_label<T>());
  cudaStream_t st = stream(device);
  scan_backward_kernel<T><<<scan_grid(a), dim3(W, P), smem, st>>>(a, dout, dlast, chunk_states, g, s);
  MG_CUDA_LAUNCH_CHECK("selective_scan");

  const int64_t G = scan_num_groups_cuda(a.d), mbc = a.b * a.n * a.l;
  if (g.dB) {
    sum_groups_kernel<T><<<grid_for(mbc), kThreads, 0, st>>>(s.part_dB, G, a.b, a.n, a.l, g.dB);
    MG_CUDA_LAUNCH_CHECK("selective_scan");
  }
  if (g.dC) {
    sum_groups_kernel<T><<<grid_for(mbc), kThreads, 0, st>>>(s.part_dC, G, a.b, a.n, a.l, g.dC);
    MG_CUDA_LAUNCH_CHECK("selective_scan");
  }
  if (g.dA) {
    sum_batch_kernel<T><<<grid_for(a.d * a.n), kThreads, 0, st>>>(s.part_dA, a.b, a.d * a.n, g.dA);
    MG_CUDA_LAUNCH_CHECK("selective_scan");
  }
  if (g.dD) {
    sum_batch_kernel<T><<<grid_for(a.d), kThreads, 0, st>>>(s.part_dD, a.b, a.d, g.dD);
    MG_CUDA_LAUNCH_CHECK("selective_scan");
  }
  if (g.ddelta_bias) {
    sum_batch_kernel<T><<<grid_for(a.d), kThreads, 0, st>>>(s.part_dbias, a.b, a.d, g.ddelta_bias);
    MG_CUDA_LAUNCH_CHECK("selective_scan");
  }
}

template void selective_scan_forward<float>(const ScanArgs<float>&, float*, float*, float*, int);
template void selective_scan_forward<double>(const ScanArgs<double>&, double*, double*, double*, int);
template void selective_scan_backward<float>(const ScanArgs<float>&, const float*, const float*, const float*,
                                             const ScanGrads<float>&, const ScanScratch<float>&, int);
template void selective_scan_backward<double>(const ScanArgs<double>&, const double*, const double*, const double*,
                                              const ScanGrads<double>&, const ScanScratch<double>&, int);

}  // namespace mg::cuda
