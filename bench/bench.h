// Benchmarks that print figures (never timed tests). `mambagrad bench NAME` runs them.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mg::bench {

struct ScanBenchOptions {
  int reps = 3;                // timed repetitions per measurement (the median is reported)
  int64_t ref_steps = 0;       // time the composed reference on at most this many steps and scale; 0: min(l, 256)
  bool quick = false;          // small shapes, for a smoke test
  std::string device = "cpu";  // "cpu", or "cuda[:N]" for bench/scan_bench_cuda.cpp
  void validate(const char* command) const;  // throws naming --reps or --ref-steps when out of range
};

// selective_scan fused vs composed reference: forward and forward+backward times, their ratio,
// bytes moved per second, and the memory the backward needs. Returns 0.
int run_scan_bench(const ScanBenchOptions& o);

// bench/machine.cpp: the machine's practical peak (fp32 multiply-adds on `threads` threads, as GFLOP/s =
// 2 x multiply-adds) and memory bandwidth (a parallel copy of 256 MiB: GB/s of bytes read + written).
double measure_peak_gflops(int threads);
// The same with AVX512-BF16 dot products (VDPBF16PS; 2 flops per bf16 pair product); 0 without it.
double measure_bf16_peak_gflops(int threads);
double measure_memory_bandwidth_gbs(int threads);
// The OPENBLAS_CORETYPE the OpenBLAS peers run with: "SkylakeX" where this CPU has the AVX-512 subsets
// those kernels use (Debian's OpenBLAS takes recent Xeons for a generic core), else null: OpenBLAS's own
// detection (right for AVX2 cores; SkylakeX kernels there stop the process with SIGILL).
const char* openblas_coretype();

// bench/scan_bench_cuda.cpp (`bench scan --device cuda`): the fused scan on the GPU, forward and
// forward+backward, bytes per second against the device-to-device copy bandwidth of the same run,
// peak device memory. Returns 2, saying why, without a CUDA build or a GPU.
int run_scan_bench_cuda(const ScanBenchOptions& o);

// bench/conv_bench.cpp: causal_conv1d forward and forward+backward at the presets' training shapes against
// its memory floor (bytes moved at the measured bandwidth). Returns 0.
int run_conv_bench(int reps, bool quick);

// bench/matmul_bench.cpp: our gemm vs OpenBLAS (loaded at run time) on the presets' training shapes;
// peer: also torch.mm in float32 and bfloat16 (bench/torch_peer.py --matmul).
int run_matmul_bench(int reps, bool quick, bool peer);

// bench/train_bench.cpp: full training steps of the presets (tokens/s, peak memory), optionally beside
// the PyTorch peer bench/torch_peer.py, on `device` ("cpu", "cuda" or "cuda:N").
// With `profile` (a file name), the timed steps of the one preset run under the op profiler
// (introspect/profiler.h): the Chrome trace is written there and the table printed.
int run_train_bench(const std::vector<std::string>& presets, int64_t batch, int64_t seq, int steps, int warmup,
                    bool peer, const std::string& data, const std::string& device = "cpu",
                    const std::string& precision = "fp32", const std::string& profile = "");

struct GenerateBenchOptions {
  std::string preset = "small";
  int64_t batch = 1;             // sequences decoded together
  int64_t prompt_bytes = 4096;   // prefill length
  int64_t tokens = 1000;         // decoded tokens per sequence (timed)
  bool peer = false;             // also time bench/torch_peer.py --generate
  bool background_load = false;  // a busy thread on one core during every measurement
  std::string device = "cpu";
};

// bench/generate_bench.cpp: prefill and decode tokens/s of a preset, against the floors of this machine
// (weight bytes per step at the measured memory bandwidth; the step's multiply-adds at the measured
// peak), at 1 thread and at --threads, optionally beside the PyTorch peer's recurrent step.
int run_generate_bench(const GenerateBenchOptions& o);

// bench/torch_peer_run.cpp: runs bench/torch_peer.py with `args` (echoing its output, indented) and
// returns the key=value figures of its `torch_peer ...` line; empty when it was skipped (no python3,
// no torch) or failed, or its line lacks `required_key`: `status` says which ("ok" otherwise).
std::map<std::string, std::string> run_torch_peer(const std::string& args, const std::string& required_key,
                                                  std::string& status);
std::string shell_quote(const std::string& s);

}  // namespace mg::bench
