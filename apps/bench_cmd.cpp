// `mambagrad bench scan [--reps R] [--ref-steps N] [--quick]`: the benchmarks in bench/.
#include "apps/commands.h"
#include "bench/bench.h"

namespace mg::app {

void add_bench_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string what;
    bench::ScanBenchOptions scan;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("bench", "benchmarks that print figures (see docs/perf.md)");
  cmd->add_option("what", o->what, "which benchmark: scan (fused selective_scan vs its composed reference)")
      ->required()
      ->check(CLI::IsMember({"scan"}));
  cmd->add_option("--reps", o->scan.reps, "timed repetitions of the fused op (median reported)")->capture_default_str();
  cmd->add_option("--ref-steps", o->scan.ref_steps,
                  "time the reference on at most this many steps and scale to l (0: min(l, 256))")
      ->capture_default_str();
  cmd->add_flag("--quick", o->scan.quick, "small shapes only (a smoke test)");
  cmd->callback([o, &run] {
    run = [o] { return bench::run_scan_bench(o->scan); };
  });
}

}  // namespace mg::app
