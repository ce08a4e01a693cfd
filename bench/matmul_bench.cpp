// `mambagrad bench matmul`: our CPU gemm (ops/cpu/gemm) on the training shapes of the `small` and
// `base` presets, against OpenBLAS sgemm in the same run, and the machine's measured FMA peak; first
// a decode section (M = 1 and 16 rows against each weight, see decode_section). The training shapes
// also run the bf16 gemm of mixed precision (gemm.h, "Mixed precision"), each way this CPU has (fp32 on
// rounded operands always, avx512-bf16 and amx where the CPU has them), against our float32 gemm in the
// same run, and say which way `--precision bf16` runs here; last, the AMX kernel with its tile operations
// left out (its packing, loops and write-back, measurable on any CPU) against the time its 4x target allows.
//
// Shapes: tokens M = batch 16 x seq 256 = 4096; each linear layer y = x W^T (W stored (N, K)) in its
// three forms: forward  Y (M, N) = X (M, K) W^T            gemm(trans_b)
//              backward dX (M, K) = dY (M, N) W             gemm()
//              backward dW (N, K) = dY^T (N, M) X (M, K)    gemm(trans_a), K = M = 4096 summed over tokens
// OpenBLAS is loaded at run time (dlopen "libopenblas.so.0", cblas_sgemm) only here, never linked by
// the library; if it is missing the peer is skipped. Debian's build picks a generic core on CPUs it
// does not know, so on AVX-512 CPUs OPENBLAS_CORETYPE=SkylakeX is set unless the environment sets it
// (bench/machine.cpp, openblas_coretype: elsewhere OpenBLAS detects the core itself). Both libraries
// run with the same thread count. Each figure is the best of --reps timed trials (each trial repeats
// the call for >= 20 ms), after one warm-up call: the machine is shared, and the best is the least
// disturbed run.
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include "core/format.h"
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/gemm.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mg::bench {

namespace {

// cblas_sgemm(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), CblasRowMajor = 101,
// CblasNoTrans = 111, CblasTrans = 112.
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

struct OpenBlas {
  SgemmFn sgemm = nullptr;
  void (*set_threads)(int) = nullptr;
  char* (*corename)() = nullptr;
  std::string error;
};

OpenBlas load_openblas() {
  OpenBlas o;
  if (const char* core = openblas_coretype()) setenv("OPENBLAS_CORETYPE", core, /*overwrite=*/0);
  void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    o.error = e ? e : "dlopen failed";
    return o;
  }
  o.sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
  o.set_threads = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
  o.corename = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"));
  if (!o.sgemm) o.error = "no cblas_sgemm in libopenblas.so.0";
  return o;
}

// Best seconds per call over `reps` trials, each running f for at least 20 ms.
double best_seconds(int reps, const std::function<void()>& f) {
  f();  // warm-up (packing buffers, page faults, thread start)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    int calls = 0;
    auto t0 = Clock::now();
    double s = 0;
    do {
      f();
      ++calls;
      s = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (s < 0.02);
    best = std::min(best, s / calls);
  }
  return best;
}

// Decode section: token-by-token generation calls linear(x, W) with M = batch rows, W (N, K) stored
// row-major (trans_b), every layer of the `small` and `base` presets; dt_proj reads its A as a narrow
// of x_proj's output (lda = dt_rank + 2 d_state). Ours (cpu::gemm, the small-M path) against the packed
// path (cpu::gemm_packed, what gemm did before for every M) and OpenBLAS; GB/s = bytes of W / our time.
void decode_section(int reps, const OpenBlas& ob) {
  struct Shape {
    const char* preset;
    const char* layer;
    int64_t N, K, lda;
  };
  const Shape shapes[] = {{"small", "in_proj", 1024, 256, 256},  {"small", "x_proj", 48, 512, 512},
                          {"small", "dt_proj", 512, 16, 48},     {"small", "out_proj", 256, 512, 512},
                          {"small", "head", 256, 256, 256},      {"base", "in_proj", 2048, 512, 512},
                          {"base", "x_proj", 64, 1024, 1024},    {"base", "dt_proj", 1024, 32, 64},
                          {"base", "out_proj", 512, 1024, 1024}, {"base", "head", 256, 512, 512}};
  struct Row {
    const Shape* s;
    int64_t M;
    double ours = 0, packed = 0, theirs = 0;  // seconds per call
  };
  std::vector<Row> rows;
  for (const Shape& s : shapes)
    for (int64_t M : {1, 16}) rows.push_back({&s, M});
  // Ours, then the packed path, then OpenBLAS, 0.5 s apart: the packed path's and OpenBLAS's idle
  // threads spin after each call and would take a core from the next (serial) measurement.
  for (int lib = 0; lib < (ob.sgemm ? 3 : 2); ++lib) {
    if (lib > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    for (Row& r : rows) {
      const Shape& s = *r.s;
      std::vector<float> a(r.M * s.lda), w(s.N * s.K), c(r.M * s.N, 0.f);
      for (float& x : a) x = dist(rng);
      for (float& x : w) x = dist(rng);
      if (lib == 0) {
        r.ours = best_seconds(reps, [&] {
          cpu::gemm<float>(false, true, r.M, s.N, s.K, a.data(), s.lda, w.data(), s.K, 0.f, c.data(), s.N);
        });
      } else if (lib == 1) {
        r.packed = best_seconds(reps, [&] {
          cpu::gemm_packed<float>(false, true, r.M, s.N, s.K, a.data(), s.lda, w.data(), s.K, 0.f, c.data(), s.N);
        });
      } else {
        r.theirs = best_seconds(reps, [&] {
          ob.sgemm(101, 111, 112, int(r.M), int(s.N), int(s.K), 1.f, a.data(), int(s.lda), w.data(), int(s.K), 0.f,
                   c.data(), int(s.N));
        });
      }
    }
  }
  mg::print("\ndecode: linear y = x W^T, x (M, K), W (N, K), float32; microseconds per call\n");
  mg::print("  {:<6} {:<9} {:>10} {:>3} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}\n", "preset", "layer", "W N x K", "M",
            "ours us", "packed", "OpenBLAS", "W GB/s", "packed/us", "OBLAS/us");
  double lp = 0, lo = 0;
  for (const Row& r : rows) {
    const Shape& s = *r.s;
    const double gbs = double(s.N * s.K * sizeof(float)) / r.ours / 1e9;
    lp += std::log(r.packed / r.ours);
    if (ob.sgemm) lo += std::log(r.theirs / r.ours);
    mg::print("  {:<6} {:<9} {:>10} {:>3} {:>8.2f} {:>8.2f} {:>8} {:>8.1f} {:>8.2f}x {:>8}\n", s.preset, s.layer,
              mg::format("{}x{}", s.N, s.K), r.M, r.ours * 1e6, r.packed * 1e6,
              ob.sgemm ? mg::format("{:.2f}", r.theirs * 1e6) : "-", gbs, r.packed / r.ours,
              ob.sgemm ? mg::format("{:.2f}x", r.theirs / r.ours) : "-");
  }
  mg::print("decode, geometric mean over {} calls: packed / ours {:.2f}x", rows.size(), std::exp(lp / rows.size()));
  if (ob.sgemm) mg::print(", OpenBLAS / ours {:.2f}x", std::exp(lo / rows.size()));
  mg::print(" (above 1: ours faster)\n");
}

// The machine's measured peaks and the peer, printed before the tables.
void print_matmul_header(int threads, int reps, const OpenBlas& ob) {
  mg::print("gemm, float32, row-major, {} threads; best of {} trials\n", threads, reps);
  const double peak = measure_peak_gflops(threads), bf16_peak = measure_bf16_peak_gflops(threads);
  mg::print("peak (measured, fp32 FMA loop on {} threads): {:.1f} GFLOP/s\n", threads, peak);
  if (bf16_peak > 0)
    mg::print("peak (measured, VDPBF16PS loop on {} threads): {:.1f} GFLOP/s = {:.2f}x the fp32 FMA peak\n", threads,
              bf16_peak, bf16_peak / peak);
  if (ob.sgemm)
    mg::print("peer: OpenBLAS cblas_sgemm, core {} (OPENBLAS_CORETYPE={})\n", ob.corename ? ob.corename() : "?",
              getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "");
  else
    mg::print("peer: OpenBLAS skipped ({})\n", ob.error);
}

struct MatmulPreset {
  const char* name;
  int64_t d_model, d_inner, dt_rank, d_state;
};

// One gemm of a training step.
struct MatmulRow {
  std::string preset, layer, form;
  bool ta, tb;
  int64_t M, N, K;
  double ours = 0, theirs = 0;                      // GFLOP/s
  double bf16_fp32 = 0, bf16_dp = 0, bf16_amx = 0;  // the bf16 gemm's ways, GFLOP/s (0: not run)
  double torch_fp32 = 0, torch_bf16 = 0;            // the PyTorch peer's torch.mm, GFLOP/s (0: not run)
  double amx_untiled = 0;  // the AMX kernel without its tile operations (AmxTiles::none), GFLOP/s of the product
  double bf16_best() const { return std::max({bf16_fp32, bf16_dp, bf16_amx}); }
  double bf16_of(cpu::Bf16Gemm way) const {  // amx, dpbf16 or (any other way) fp32-on-rounded
    return way == cpu::Bf16Gemm::amx ? bf16_amx : way == cpu::Bf16Gemm::dpbf16 ? bf16_dp : bf16_fp32;
  }
};

// The forward and the two backward gemms of every linear layer of the presets, on M tokens.
std::vector<MatmulRow> training_rows(const std::vector<MatmulPreset>& presets, int64_t M) {
  std::vector<MatmulRow> rows;
  for (const MatmulPreset& p : presets) {
    struct Layer {
      const char* name;
      int64_t K, N;
    };
    const Layer layers[] = {{"in_proj", p.d_model, 2 * p.d_inner},
                            {"x_proj", p.d_inner, p.dt_rank + 2 * p.d_state},
                            {"dt_proj", p.dt_rank, p.d_inner},
                            {"out_proj", p.d_inner, p.d_model},
                            {"head", p.d_model, 256}};
    for (const Layer& l : layers) {
      rows.push_back({p.name, l.name, "fwd X W^T", false, true, M, l.N, l.K});
      rows.push_back({p.name, l.name, "dX = dY W", false, false, M, l.K, l.N});
      rows.push_back({p.name, l.name, "dW = dY^T X", true, false, l.N, l.K, M});
    }
  }
  return rows;
}

// Ours (float32, and the bf16 gemm's ways this CPU has) on one row's operands.
void time_ours(MatmulRow& s, int reps, const float* a, int64_t lda, const float* b, int64_t ldb, float* c) {
  const double flop = 2.0 * s.M * s.N * s.K;
  s.ours = flop / 1e9 /
           best_seconds(reps, [&] { cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, a, lda, b, ldb, 0.f, c, s.N); });
  auto bf16_way = [&](cpu::Bf16Gemm way) {
    return flop / 1e9 /
           best_seconds(reps, [&] { cpu::gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, a, lda, b, ldb, 0.f, c, s.N, way); });
  };
  s.bf16_fp32 = bf16_way(cpu::Bf16Gemm::fp32);
  if (cpu::cpu_has_avx512_bf16()) s.bf16_dp = bf16_way(cpu::Bf16Gemm::dpbf16);
  if (cpu::cpu_has_amx()) s.bf16_amx = bf16_way(cpu::Bf16Gemm::amx);
  s.amx_untiled = flop / 1e9 / best_seconds(reps, [&] {
                    cpu::gemm_bf16_amx(cpu::AmxTiles::none, s.ta, s.tb, s.M, s.N, s.K, a, lda, b, ldb, 0.f, c, s.N);
                  });
}

// All of ours first, then all of OpenBLAS: its idle threads spin for a while after each call and would
// steal the cores from the next measurement if the two were interleaved.
void time_training_rows(std::vector<MatmulRow>& rows, int reps, const OpenBlas& ob) {
  for (int lib = 0; lib < (ob.sgemm ? 2 : 1); ++lib) {
    if (lib == 1) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    for (MatmulRow& s : rows) {
      // Stored operands: A is (M, K), or (K, M) when ta; B is (K, N), or (N, K) when tb.
      std::vector<float> a(s.M * s.K), b(s.K * s.N), c(s.M * s.N, 0.f);
      for (float& x : a) x = dist(rng);
      for (float& x : b) x = dist(rng);
      const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
      if (lib == 0) {
        time_ours(s, reps, a.data(), lda, b.data(), ldb, c.data());
        continue;
      }
      s.theirs = 2.0 * s.M * s.N * s.K / 1e9 / best_seconds(reps, [&] {
                   ob.sgemm(101, s.ta ? 112 : 111, s.tb ? 112 : 111, int(s.M), int(s.N), int(s.K), 1.f, a.data(),
                            int(lda), b.data(), int(ldb), 0.f, c.data(), int(s.N));
                 });
    }
  }
}

// A table per preset, then the geometric means.
void print_training_rows(const std::vector<MatmulRow>& rows, const std::vector<MatmulPreset>& presets, int64_t M,
                         const OpenBlas& ob) {
  double log_ratio_sum = 0, min_ratio = 1e30, bf16_log_sum = 0;
  int n_ratio = 0;
  std::string last;
  for (const MatmulRow& s : rows) {
    if (s.preset != last) {
      last = s.preset;
      const MatmulPreset& p =
          *std::find_if(presets.begin(), presets.end(), [&](const MatmulPreset& q) { return q.name == last; });
      mg::print("\n{} preset (d_model {}, d_inner {}, dt_rank {}, d_state {}), tokens M = {}\n", p.name, p.d_model,
                p.d_inner, p.dt_rank, p.d_state, M);
      mg::print("  {:<10} {:<12} {:>16} {:>10} {:>10} {:>7} {:>10} {:>10} {:>10} {:>9}\n", "layer", "form",
                "gemm M x N x K", "ours GF/s", "OpenBLAS", "ratio", "bf16 fp32r", "bf16 dp", "bf16 amx", "bf16/fp32");
    }
    std::string dims = mg::format("{}x{}x{}", s.M, s.N, s.K);
    const double bf16_best = s.bf16_best();
    bf16_log_sum += std::log(bf16_best / s.ours);
    auto gf = [](double x) { return x > 0 ? mg::format("{:.1f}", x) : std::string("-"); };
    const std::string bf16_cols =
        mg::format("{:>10.1f} {:>10} {:>10} {:>8.2f}x", s.bf16_fp32, gf(s.bf16_dp), gf(s.bf16_amx), bf16_best / s.ours);
    if (ob.sgemm) {
      const double ratio = s.ours / s.theirs;
      log_ratio_sum += std::log(ratio);
      min_ratio = std::min(min_ratio, ratio);
      ++n_ratio;
      mg::print("  {:<10} {:<12} {:>16} {:>10.1f} {:>10.1f} {:>6.2f}x {}\n", s.layer, s.form, dims, s.ours, s.theirs,
                ratio, bf16_cols);
    } else {
      mg::print("  {:<10} {:<12} {:>16} {:>10.1f} {:>10} {:>7} {}\n", s.layer, s.form, dims, s.ours, "-", "-",
                bf16_cols);
    }
  }
  mg::print("\nbf16 gemm (fastest way) / our float32 gemm over {} shapes: geometric mean {:.2f}x\n", rows.size(),
            std::exp(bf16_log_sum / rows.size()));
  mg::print("--precision bf16 runs the {} way here (AMX: {}, AVX512-BF16: {})\n",
            cpu::bf16_gemm_name(cpu::Bf16Gemm::automatic), cpu::cpu_has_amx() ? "yes" : "no",
            cpu::cpu_has_avx512_bf16() ? "yes" : "no");
  if (n_ratio)
    mg::print("\nours / OpenBLAS over {} shapes: geometric mean {:.2f}x, minimum {:.2f}x\n", n_ratio,
              std::exp(log_ratio_sum / n_ratio), min_ratio);
}

// The AMX kernel's work outside its tile instructions (packing with rounding, loops, write-back), which
// runs on any CPU: per product its time against the time the 4x target allows the whole kernel (our
// float32 gemm's time / 4). Where it takes most of that budget, the target is out of reach whatever the
// tiles do.
void print_amx_untiled(const std::vector<MatmulRow>& rows) {
  mg::print(
      "\nThe AMX kernel without its tile instructions (packing, loops, write-back), against the time a 4x\n"
      "speed-up over our float32 gemm allows the whole kernel (float32 time / 4)\n");
  mg::print("  {:<6} {:<10} {:<12} {:>16} {:>12} {:>12} {:>9}\n", "preset", "layer", "form", "gemm M x N x K",
            "untiled ms", "fp32 ms / 4", "share");
  double log_sum = 0;
  for (const MatmulRow& s : rows) {
    const double gflop = 2.0 * s.M * s.N * s.K / 1e9, untiled_ms = gflop / s.amx_untiled * 1e3;
    const double budget_ms = gflop / s.ours * 1e3 / 4;
    log_sum += std::log(untiled_ms / budget_ms);
    mg::print("  {:<6} {:<10} {:<12} {:>16} {:>12.3f} {:>12.3f} {:>8.0f}%\n", s.preset, s.layer, s.form,
              mg::format("{}x{}x{}", s.M, s.N, s.K), untiled_ms, budget_ms, 100 * untiled_ms / budget_ms);
  }
  mg::print("untiled AMX kernel / (float32 time / 4) over {} shapes: geometric mean {:.0f}%\n", rows.size(),
            100 * std::exp(log_sum / rows.size()));
}

// The PyTorch peer (bench/torch_peer.py --matmul) on every row, at this run's thread count: torch.mm in
// float32 and in bfloat16 on the same layouts. Returns false (and says why) when it did not run.
bool time_torch_rows(std::vector<MatmulRow>& rows, int reps) {
  std::string shapes;
  for (const MatmulRow& s : rows) shapes += mg::format("{},{},{},{},{};", s.M, s.N, s.K, int(s.ta), int(s.tb));
  mg::print("\nPyTorch peer: torch.mm in float32 and bfloat16 on the same shapes, {} threads\n", num_threads());
  std::string status;
  const auto kv =
      run_torch_peer(mg::format("--matmul '{}' --reps {} --threads {}", shapes, reps, num_threads()), "fp32_0", status);
  if (kv.empty()) {
    mg::print("PyTorch peer {}\n", status);
    return false;
  }
  auto figure = [&](const std::string& key) {
    auto it = kv.find(key);
    return it == kv.end() ? 0.0 : std::atof(it->second.c_str());
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].torch_fp32 = figure(mg::format("fp32_{}", i));
    rows[i].torch_bf16 = figure(mg::format("bf16_{}", i));
  }
  return true;
}

// Ours against the PyTorch peer: float32 against torch's float32, and our bf16 gemm (the way
// --precision bf16 takes here) against torch's bf16 matmul.
void print_torch_rows(const std::vector<MatmulRow>& rows) {
  // The way --precision bf16 runs here among the timed ones (an emulated or unknown way: fp32-on-rounded).
  cpu::Bf16Gemm way = cpu::bf16_gemm_choice();
  if (way != cpu::Bf16Gemm::amx && way != cpu::Bf16Gemm::dpbf16) way = cpu::Bf16Gemm::fp32;
  mg::print("\n  {:<6} {:<10} {:<12} {:>16} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9}\n", "preset", "layer", "form",
            "gemm M x N x K", "ours fp32", "torch fp32", "ratio", "ours bf16", "torch bf16", "ratio");
  double log_fp32 = 0, log_bf16 = 0, min_bf16 = 1e30;
  int n = 0;
  for (const MatmulRow& s : rows) {
    if (s.torch_fp32 <= 0 || s.torch_bf16 <= 0) continue;
    const double r32 = s.ours / s.torch_fp32, r16 = s.bf16_of(way) / s.torch_bf16;
    log_fp32 += std::log(r32), log_bf16 += std::log(r16), min_bf16 = std::min(min_bf16, r16), ++n;
    mg::print("  {:<6} {:<10} {:<12} {:>16} {:>10.1f} {:>10.1f} {:>8.2f}x {:>10.1f} {:>10.1f} {:>8.2f}x\n", s.preset,
              s.layer, s.form, mg::format("{}x{}x{}", s.M, s.N, s.K), s.ours, s.torch_fp32, r32, s.bf16_of(way),
              s.torch_bf16, r16);
  }
  if (n)
    mg::print(
        "\nours / PyTorch over {} shapes (above 1: ours faster): float32 geometric mean {:.2f}x; bf16 ({} way) "
        "geometric mean {:.2f}x, minimum {:.2f}x\n",
        n, std::exp(log_fp32 / n), cpu::bf16_gemm_name(way), std::exp(log_bf16 / n), min_bf16);
}

}  // namespace

// Declared in apps/bench_cmd.cpp.
int run_matmul_bench(int reps, bool quick, bool peer) {
  MG_CHECK(reps >= 1, "[bench matmul] --reps must be at least 1 (the best of that many trials is reported), got {}",
           reps);
  const int threads = num_threads();
  OpenBlas ob = load_openblas();
  if (ob.sgemm && ob.set_threads) ob.set_threads(threads);
  print_matmul_header(threads, reps, ob);
  decode_section(reps, ob);
  std::vector<MatmulPreset> presets = {{"small", 256, 512, 16, 16}, {"base", 512, 1024, 32, 16}};
  const int64_t M = quick ? 512 : 16 * 256;
  if (quick) presets.resize(1);
  std::vector<MatmulRow> rows = training_rows(presets, M);
  time_training_rows(rows, reps, ob);
  print_training_rows(rows, presets, M, ob);
  print_amx_untiled(rows);
  if (peer && time_torch_rows(rows, reps)) print_torch_rows(rows);
  return 0;
}

}  // namespace mg::bench
