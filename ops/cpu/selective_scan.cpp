// The fused selective scan on the CPU. Work is split over (batch, block of kScanBlock = 16 channels);
// within a block the n states of each channel are n vectors of 16 lanes, one lane per channel
// (Vec<T>, ops/cpu/vec.h), and every step updates them with whole-vector operations (one register of the
// target at a time where a Vec is several: for_regs below). Blocks at the end
// of d are padded to full width with lanes that carry dt = 0, u = 0 (identity steps contributing 0),
// so every channel runs through the same code whatever d and the thread count are.
//
// Where the memory goes (b, l, d, n as in docs/design.md#the-selective-scan; "all states" = b*l*d*n values):
//   forward:  the output (b, l, d), and when a backward will run the chunk-end states
//             (b, ceil(l/kScanChunk), d, n) = all states / kScanChunk. Per thread: O(n * kScanBlock).
//   backward: per thread, the recomputed states and decay factors of one chunk of one block,
//             about 2 * kScanChunk * n * kScanBlock values (256 KiB for n = 16 in float32);
//             dB and dC partials, one (b, l, n) per channel group but the first (under 1/16 of all states);
//             per-batch partials of dA (b, d, n), dD and ddelta_bias (b, d) in float64.
//   No (b, l, d, n) tensor exists at any point.
//
// The initial state h0 (b, d, n), when given, is where the forward starts and the start state of chunk
// 0 in the backward (zeros otherwise); the carried dL/dh left after chunk 0 is its gradient dh0.
//
// The backward per chunk: (1) recompute the chunk forwards from its saved start state, storing each
// step's states and decay factors, and with them everything that needs only the forward values: y,
// dz, and dC[t, k] = sum over channels of dy * h[t]; (2) run the reverse recurrence for dL/dh, with
// dB[t, k] = sum over channels of dL/dh[t] * dt * u. The channel sums of both are 16 horizontal sums
// per step, done together by one transposing fold (sum_rows) in a fixed order.
#include "ops/cpu/selective_scan.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/tensor.h"
#include "ops/cpu/vec.h"

namespace mg::cpu {

namespace {

constexpr int64_t W = kScanBlock;
static_assert(kScanBlock == kVecLanes, "a block of channels is one vector of lanes");

// Software prefetch distance, in time steps. A block's row at step t + 1 is d floats after its row at
// t: a stride of 2 KiB and more for Mamba's widths, which Intel's hardware prefetchers do not follow
// (they stay inside a 4 KiB page; Zen 4's stride prefetcher does), so without this each step waits for
// its rows of delta, u, z and dout from L3 (the backward ran at 1.8x and the forward at 1.3x the time
// per state update of the same work with d = 16, on an Intel Xeon of the Sapphire Rapids class;
// docs/perf.md, "Selective scan"). Prefetches never change a result.
constexpr int64_t kPrefetchSteps = 8;

template <class T>
using VecArray = std::vector<Vec<T>>;  // over-aligned element type: C++17 aligned new

// Per-block constants: A transposed to n vectors (lane j = channel c0 + j) and A log2(e) (the decay
// factor exp(dt A) is computed as 2^(dt A log2(e)), see vexp2), D, delta_bias; zero in padded lanes.
template <class T>
struct BlockParams {
  VecArray<T> A, A2;
  Vec<T> D{}, bias{};
  explicit BlockParams(int64_t n) : A(n), A2(n) {}
  void load(const ScanArgs<T>& a, int64_t c0, int64_t nc) {
    for (int64_t k = 0; k < a.n; ++k) {
      Vec<T> v = {};
      for (int64_t j = 0; j < nc; ++j) v[j] = a.A[(c0 + j) * a.n + k];
      A[k] = v;
      A2[k] = v * T(1.442695040888963407359924681001892137);
    }
    D = a.D ? load_first(a.D + c0, nc) : Vec<T>{};
    bias = a.delta_bias ? load_first(a.delta_bias + c0, nc) : Vec<T>{};
  }
};

// dt = delta + bias (softplus'd when asked) and u of one time step; row = the element offset of
// channel c0 at this (batch, t). Padded lanes get dt = 0 and u = 0. With ddt, also d(dt)/d(delta).
template <class T>
inline void load_step(const ScanArgs<T>& a, const BlockParams<T>& p, int64_t row, int64_t nc, Vec<T>& dt, Vec<T>& u,
                      Vec<T>* ddt = nullptr) {
  const Vec<T> x = load_first(a.delta + row, nc) + p.bias;
  if (!a.softplus)
    dt = x;
  else if (ddt)
    dt = vsoftplus(x, *ddt);
  else
    dt = vsoftplus(x);
  if (nc < W)
    for (int64_t j = nc; j < W; ++j) dt[j] = T(0);  // padded lanes: identity steps
  u = load_first(a.u + row, nc);
}

// The n state vectors <-> the rows (c0 .. c0+nc) of a (d, n) state.
template <class T>
void store_state(const Vec<T>* h, int64_t n, int64_t nc, T* dst) {
  for (int64_t j = 0; j < nc; ++j)
    for (int64_t k = 0; k < n; ++k) dst[j * n + k] = h[k][j];
}
template <class T>
void load_state(const T* src, int64_t n, int64_t nc, Vec<T>* h) {
  for (int64_t k = 0; k < n; ++k) {
    Vec<T> v = {};
    for (int64_t j = 0; j < nc; ++j) v[j] = src[j * n + k];
    h[k] = v;
  }
}

// dst[k] += sum of the lanes of rows[k] for k < n; rows has n rounded up to whole vectors, the
// extra rows zero. Overwrites rows.
template <class T>
inline void add_row_sums(Vec<T>* rows, int64_t n, T* dst) {
  for (int64_t k0 = 0; k0 < n; k0 += W) {
    const Vec<T> s = sum_rows(rows + k0);
    const int64_t m = std::min(W, n - k0);
    store_first(dst + k0, load_first(dst + k0, m) + s, m);
  }
}

inline int64_t round_up_lanes(int64_t n) { return (n + W - 1) / W * W; }

// The state loops run on one register of the target at a time: a Vec is one register with AVX-512 (float),
// and the loops take whole Vecs; otherwise each loop runs once per register of the Vec's lanes, on
// views of the same buffers (GCC 12 keeps 64-byte vectors in memory on AVX2 and moves them through
// general registers). The arithmetic of every lane is the same either way.
template <class T>
inline constexpr int kRegsPerVec = int(sizeof(Vec<T>) / sizeof(Reg<T>));

// Register q of a Vec: the Vec itself when it is one register.
template <class T>
struct RegView {
  using R = std::conditional_t<kRegsPerVec<T> == 1, Vec<T>, Reg<T>>;
  int q;
  R operator()(const Vec<T>& v) const {
    if constexpr (kRegsPerVec<T> == 1) return v;
    return loadu<T, R>(reinterpret_cast<const T*>(&v) + q * kRegLanes<T>);
  }
  void set(Vec<T>& v, R r) const {
    if constexpr (kRegsPerVec<T> == 1)
      v = r;
    else
      storeu(reinterpret_cast<T*>(&v) + q * kRegLanes<T>, r);
  }
};
// f(RegView{q}) for each register q of a Vec.
template <class T, class F>
inline void for_regs(F&& f) {
  for (int q = 0; q < kRegsPerVec<T>; ++q) f(RegView<T>{q});
}

// Where a Vec is several registers (float on AVX2), a full block's per-step work (dt's softplus, u, the
// gate) runs one register at a time too, on loads and stores of the rows themselves: GCC moves such
// 64-byte values through the stack and general registers. The same arithmetic per lane as the Vec forms
// (load_step, vsoftplus, vsigmoid), which the last, partial block of channels takes.
template <class T>
inline constexpr bool kStepsByReg = std::is_same_v<T, float> && (kRegsPerVec<T> > 1);

// load_step on register r of a full block (kStepsByReg): dt (softplus'd when asked, with its derivative
// into *ddt when given) and u.
template <class T, class RV>
inline void load_step_reg(const ScanArgs<T>& a, const BlockParams<T>& p, int64_t row, RV r, Vec<T>& dt, Vec<T>& u,
                          Vec<T>* ddt = nullptr) {
  using R = typename RV::R;
  const int64_t o = row + r.q * kRegLanes<T>;
  const R x = loadu<T, R>(a.delta + o) + r(p.bias);
  if (!a.softplus) {
    r.set(dt, x);
  } else if (ddt) {
    R g;
    r.set(dt, softplus_lanes(x, &g));
    r.set(*ddt, g);
  } else {
    r.set(dt, softplus_lanes(x, static_cast<R*>(nullptr)));
  }
  r.set(u, loadu<T, R>(a.u + o));
}

}  // namespace

namespace {

// n state vectors: a fixed-size local array when N (the state size) is known at compile time, which
// lets the compiler unroll the loops over states and keep the states in registers; else a vector.
template <class T, int N>
struct States {
  Vec<T> v[N];
  explicit States(int64_t) {}
  Vec<T>& operator[](int64_t k) { return v[k]; }
  const Vec<T>& operator[](int64_t k) const { return v[k]; }
  Vec<T>* data() { return v; }
  Vec<T>* begin() { return v; }
  Vec<T>* end() { return v + N; }
};
template <class T>
struct States<T, 0> : VecArray<T> {
  explicit States(int64_t n) : VecArray<T>(n) {}
};

template <class T, int N>
void scan_forward_impl(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state) {
  const int64_t b = a.b, l = a.l, d = a.d, n = N ? N : a.n;
  const int64_t nblocks = (d + W - 1) / W, nchunks = scan_num_chunks(l);
  parallel_for(b * nblocks, l * W * n, [&](int64_t lo, int64_t hi) {
    BlockParams<T> p(n);
    States<T, N> h(n);
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t i = task / nblocks, c0 = (task % nblocks) * W, nc = std::min(W, d - c0);
      p.load(a, c0, nc);
      if (a.h0)  // the state before the first step; zero lanes past d
        load_state(a.h0 + (i * d + c0) * n, n, nc, h.data());
      else
        std::fill(h.begin(), h.end(), Vec<T>{});
      // Software pipelined by one step: step t + 1's dt (softplus) is computed, and step t - 1's output
      // gated and stored, while step t's states update, instead of each standing as a dependent
      // chain at the start or end of its own step. (A full block: one register at a time, kStepsByReg.)
      const bool by_reg = kStepsByReg<T> && nc == W;
      auto step_inputs = [&](int64_t row, Vec<T>& dt, Vec<T>& u) {
        if constexpr (kStepsByReg<T>)
          if (by_reg) return for_regs<T>([&](const auto r) { load_step_reg(a, p, row, r, dt, u); });
        load_step(a, p, row, nc, dt, u);
      };
      auto gate_and_store = [&](int64_t t, Vec<T> y) {  // y z sigmoid(z) into out, step t
        if constexpr (kStepsByReg<T>)
          if (by_reg)
            return for_regs<T>([&](const auto r) {
              using R = typename decltype(r)::R;
              const int64_t o = r.q * kRegLanes<T>;
              R y_r = r(y);
              if (a.z) {
                const R z = loadu<T, R>(a.z + (i * l + t) * a.z_rs + c0 + o);
                y_r = y_r * z * vsigmoid(z);
              }
              storeu(out + (i * l + t) * d + c0 + o, y_r);
            });
        if (a.z) {
          const Vec<T> z = load_first(a.z + (i * l + t) * a.z_rs + c0, nc);
          y = y * z * vsigmoid(z);
        }
        store_first(out + (i * l + t) * d + c0, y, nc);
      };
      Vec<T> dt_next, u_next, y_prev{};
      step_inputs((i * l) * d + c0, dt_next, u_next);
      for (int64_t t = 0; t < l; ++t) {
        const int64_t row = (i * l + t) * d + c0;
        if (t + kPrefetchSteps < l) {
          const int64_t ahead = row + kPrefetchSteps * d;
          __builtin_prefetch(a.delta + ahead);
          __builtin_prefetch(a.u + ahead);
          if (a.z) __builtin_prefetch(a.z + (i * l + t + kPrefetchSteps) * a.z_rs + c0);
          __builtin_prefetch(out + ahead, 1);
        }
        const Vec<T> dt = dt_next, u = u_next;
        if (t + 1 < l) step_inputs(row + d, dt_next, u_next);
        if (t > 0) gate_and_store(t - 1, y_prev);
        const T *Bt = a.B + (i * l + t) * a.B_rs, *Ct = a.C + (i * l + t) * a.C_rs;
        Vec<T> y;
        for_regs<T>([&](const auto r) {
          const auto dt_r = r(dt), u_r = r(u), dtu_r = dt_r * u_r;
          auto y_r = r(p.D) * u_r;
          for (int64_t k = 0; k < n; ++k) {
            const auto hk = vexp2(dt_r * r(p.A2[k])) * r(h[k]) + dtu_r * Bt[k];
            r.set(h[k], hk);
            y_r += hk * Ct[k];
          }
          r.set(y, y_r);
        });
        y_prev = y;
        if (chunk_states && ((t + 1) % kScanChunk == 0 || t == l - 1))
          store_state(h.data(), n, nc, chunk_states + ((i * nchunks + t / kScanChunk) * d + c0) * n);
      }
      gate_and_store(l - 1, y_prev);
      if (last_state) store_state(h.data(), n, nc, last_state + (i * d + c0) * n);
    }
  });
}

}  // namespace

template <class T>
void selective_scan_forward(const ScanArgs<T>& a, T* out, T* chunk_states, T* last_state) {
  if (a.n == 16)  // the Mamba default d_state
    scan_forward_impl<T, 16>(a, out, chunk_states, last_state);
  else
    scan_forward_impl<T, 0>(a, out, chunk_states, last_state);
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
  Tensor part_dA = g.dA ? Tensor::empty({b, d, n}, DType::f64) : Tensor();          // (b, d, n)
  Tensor part_dD = g.dD ? Tensor::empty({b, d}, DType::f64) : Tensor();             // (b, d)
  Tensor part_db = g.ddelta_bias ? Tensor::empty({b, d}, DType::f64) : Tensor();    // (b, d)
  T* pB_all = partB.defined() ? partB.data<T>() : nullptr;
  T* pC_all = partC.defined() ? partC.data<T>() : nullptr;
  double* pdA_all = part_dA.defined() ? part_dA.data<double>() : nullptr;
  double* pdD_all = part_dD.defined() ? part_dD.data<double>() : nullptr;
  double* pdb_all = part_db.defined() ? part_db.data<double>() : nullptr;
  const int64_t nr = round_up_lanes(n);

  parallel_for(b * G, l * W * n * bpg * 3, [&](int64_t lo, int64_t hi) {
    // Per-thread scratch. hbuf holds the chunk's states, hbuf[tt * n + k] = h[t0 + tt - 1] (row 0: the
    // saved start state); abuf the decay factors exp(dt A) of each step; dtb, ub, dyb the steps' dt, u
    // and dL/dy, dspb the derivative of softplus at each step, dzb the factor y is multiplied by for dz.
    BlockParams<T> p(n);
    VecArray<T> hbuf((kScanChunk + 1) * n), abuf(kScanChunk * n), dtb(kScanChunk), ub(kScanChunk), dyb(kScanChunk),
        dspb(kScanChunk), dzb(kScanChunk);
    VecArray<T> gst(n), dAc(n), rows(nr);  // dL/dh carried backwards; dA of the chunk; rows to sum
    std::vector<Vec<double>> dAtot(n);
    Vec<double> dDtot, dbtot;

    for (int64_t task = lo; task < hi; ++task) {
      const int64_t i = task / G, grp = task % G;
      T* pB = !g.dB ? nullptr : grp == 0 ? g.dB + i * l * n : pB_all + ((grp - 1) * b + i) * l * n;
      T* pC = !g.dC ? nullptr : grp == 0 ? g.dC + i * l * n : pC_all + ((grp - 1) * b + i) * l * n;
      if (pB) std::fill(pB, pB + l * n, T(0));
      if (pC) std::fill(pC, pC + l * n, T(0));
      for (int64_t blk = grp * bpg; blk < std::min(nblocks, (grp + 1) * bpg); ++blk) {
        const int64_t c0 = blk * W, nc = std::min(W, d - c0);
        const bool full = nc == W, by_reg = kStepsByReg<T> && full, want_dz = a.z && g.dz;
        p.load(a, c0, nc);
        if (dlast)
          load_state(dlast + (i * d + c0) * n, n, nc, gst.data());
        else
          std::fill(gst.begin(), gst.end(), Vec<T>{});
        std::fill(dAtot.begin(), dAtot.end(), Vec<double>{});
        dDtot = Vec<double>{};
        dbtot = Vec<double>{};

        for (int64_t ch = nchunks - 1; ch >= 0; --ch) {
          const int64_t t0 = ch * kScanChunk, L = std::min(kScanChunk, l - t0);
          if (ch == 0 && a.h0)
            load_state(a.h0 + (i * d + c0) * n, n, nc, hbuf.data());
          else if (ch == 0)
            std::fill(hbuf.begin(), hbuf.begin() + n, Vec<T>{});
          else
            load_state(chunk_states + ((i * nchunks + ch - 1) * d + c0) * n, n, nc, hbuf.data());

          // 1. Forwards over the chunk: states, decay factors, y for dz, and the dC sums. Software
          // pipelined by one step: step tt + 1's own values (dt and softplus' derivative, u, dL/dy and
          // dz's factor dL/dout sigmoid(z) (1 + z (1 - sigmoid(z)))) are computed while step tt's
          // states update, not as a dependent chain at the start of its own step.
          auto step_values = [&](int64_t tt) {
            const int64_t row = (i * l + t0 + tt) * d + c0;
            if constexpr (kStepsByReg<T>)
              if (by_reg)
                return for_regs<T>([&](const auto r) {
                  using R = typename decltype(r)::R;
                  load_step_reg(a, p, row, r, dtb[tt], ub[tt], &dspb[tt]);
                  const R go = loadu<T, R>(dout + row + r.q * kRegLanes<T>);
                  if (a.z) {  // the Vec form's products below
                    const R zz = loadu<T, R>(a.z + (i * l + t0 + tt) * a.z_rs + c0 + r.q * kRegLanes<T>);
                    const R sg = vsigmoid(zz);
                    r.set(dyb[tt], go * zz * sg);
                    r.set(dzb[tt], go * sg * (1.0f + zz * (1.0f - sg)));
                  } else {
                    r.set(dyb[tt], go);
                  }
                });
            load_step(a, p, row, nc, dtb[tt], ub[tt], &dspb[tt]);
            const Vec<T> go = load_first(dout + row, nc);
            if (a.z) {
              const Vec<T> zz = load_first(a.z + (i * l + t0 + tt) * a.z_rs + c0, nc), sg = vsigmoid(zz);
              dyb[tt] = go * zz * sg;
              dzb[tt] = go * sg * (T(1) + zz * (T(1) - sg));
            } else {
              dyb[tt] = go;
            }
          };
          step_values(0);
          std::fill(rows.begin(), rows.end(), Vec<T>{});
          for (int64_t tt = 0; tt < L; ++tt) {
            const int64_t t = t0 + tt, row = (i * l + t) * d + c0;
            if (tt + kPrefetchSteps < L) {
              const int64_t ahead = row + kPrefetchSteps * d;
              __builtin_prefetch(a.delta + ahead);
              __builtin_prefetch(a.u + ahead);
              __builtin_prefetch(dout + ahead);
              if (a.z) __builtin_prefetch(a.z + (i * l + t + kPrefetchSteps) * a.z_rs + c0);
              if (a.z && g.dz) __builtin_prefetch(g.dz + ahead, 1);
            }
            if (tt + 1 < L) step_values(tt + 1);
            const T *Bt = a.B + (i * l + t) * a.B_rs, *Ct = a.C + (i * l + t) * a.C_rs;
            const Vec<T>* prev = hbuf.data() + tt * n;
            Vec<T>* hc = hbuf.data() + (tt + 1) * n;
            Vec<T>* ac = abuf.data() + tt * n;
            Vec<T> dzv{};  // a partial block's dz, stored after the loop
            for_regs<T>([&](const auto r) {
              const auto dt_r = r(dtb[tt]), u_r = r(ub[tt]), dy_r = r(dyb[tt]), dtu_r = dt_r * u_r;
              auto y_r = r(p.D) * u_r;
              for (int64_t k = 0; k < n; ++k) {
                const auto e = vexp2(dt_r * r(p.A2[k]));
                const auto hk = e * r(prev[k]) + dtu_r * Bt[k];
                r.set(ac[k], e);
                r.set(hc[k], hk);
                y_r += hk * Ct[k];
                r.set(rows[k], dy_r * hk);
              }
              if (!want_dz) return;
              if (full)
                storeu(g.dz + row + r.q * kRegLanes<T>, y_r * r(dzb[tt]));
              else
                r.set(dzv, y_r * r(dzb[tt]));
            });
            if (pC) add_row_sums(rows.data(), n, pC + t * n);
            if (want_dz && !full) store_first(g.dz + row, dzv, nc);
          }

          // 2. The reverse recurrence over the chunk; gst carries dL/dh across steps and chunks.
          std::fill(dAc.begin(), dAc.end(), Vec<T>{});
          Vec<T> dDc{}, dbc{};
          for (int64_t tt = L - 1; tt >= 0; --tt) {
            const int64_t t = t0 + tt, row = (i * l + t) * d + c0;
            if (tt >= kPrefetchSteps) {  // the rows this loop writes, in reverse order
              if (g.du) __builtin_prefetch(g.du + row - kPrefetchSteps * d, 1);
              if (g.ddelta) __builtin_prefetch(g.ddelta + row - kPrefetchSteps * d, 1);
            }
            const T *Bt = a.B + (i * l + t) * a.B_rs, *Ct = a.C + (i * l + t) * a.C_rs;
            const Vec<T>* prev = hbuf.data() + tt * n;
            const Vec<T>* ac = abuf.data() + tt * n;
            Vec<T> du{}, dd{};  // a partial block's dL/du and dL/d(delta), stored after the loop
            for_regs<T>([&](const auto r) {
              const auto dt_r = r(dtb[tt]), u_r = r(ub[tt]), dy_r = r(dyb[tt]), dtu_r = dt_r * u_r;
              typename decltype(r)::R dua_r{}, dtA_r{};  // sum_k dL/dh * B, sum_k A * dL/dh * a * h[t-1]
              for (int64_t k = 0; k < n; ++k) {
                const auto gg = r(gst[k]) + dy_r * Ct[k];  // dL/dh[t]
                const auto ac_k = r(ac[k]);
                const auto q = gg * (ac_k * r(prev[k]));
                r.set(rows[k], gg * dtu_r);
                dua_r += gg * Bt[k];
                dtA_r += r(p.A[k]) * q;
                r.set(dAc[k], r(dAc[k]) + dt_r * q);
                r.set(gst[k], gg * ac_k);  // dL/dh[t-1] through this step
              }
              const auto du_r = dua_r * dt_r + r(p.D) * dy_r;
              auto dd_r = dua_r * u_r + dtA_r;  // dL/d(dt)
              if (a.softplus) dd_r *= r(dspb[tt]);
              r.set(dDc, r(dDc) + dy_r * u_r);
              r.set(dbc, r(dbc) + dd_r);
              const int64_t o = row + r.q * kRegLanes<T>;
              if (full) {
                if (g.du) storeu(g.du + o, du_r);
                if (g.ddelta) storeu(g.ddelta + o, dd_r);
              } else {
                r.set(du, du_r);
                r.set(dd, dd_r);
              }
            });
            if (pB) add_row_sums(rows.data(), n, pB + t * n);
            if (!full && g.du) store_first(g.du + row, du, nc);
            if (!full && g.ddelta) store_first(g.ddelta + row, dd, nc);
          }
          // Sums over a chunk in T, over chunks in double.
          for (int64_t k = 0; k < n; ++k) dAtot[k] += __builtin_convertvector(dAc[k], Vec<double>);
          dDtot += __builtin_convertvector(dDc, Vec<double>);
          dbtot += __builtin_convertvector(dbc, Vec<double>);
        }
        // After chunk 0, gst is dL/dh[-1]: the gradient of the initial state.
        if (g.dh0) store_state(gst.data(), n, nc, g.dh0 + (i * d + c0) * n);
        for (int64_t j = 0; j < nc; ++j) {
          if (pdA_all)
            for (int64_t k = 0; k < n; ++k) pdA_all[(i * d + c0 + j) * n + k] = dAtot[k][j];
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
