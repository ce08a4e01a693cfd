// mambagrad: the command line. `mambagrad --help` lists the subcommands.
#include <cstdio>

#include "apps/commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "cuda/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"mambagrad: a from-scratch tensor library with autograd, and Mamba on enwik8"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (default: MG_NUM_THREADS, else all cores)")->check(CLI::PositiveNumber);
  // Subcommands that run on a GPU take --device (apps/device_option.h); this switch is global.
  bool tf32 = false;
  app.add_flag("--tf32", tf32, "CUDA: float32 matmuls in TF32 (faster, ~1e-3 relative error; default full float32)");
  mg::app::Run run;
  mg::app::add_train_command(app, run);
  mg::app::add_eval_command(app, run);
  mg::app::add_generate_command(app, run);
  mg::app::add_logits_command(app, run);
  mg::app::add_gradcheck_command(app, run);
  mg::app::add_bench_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (threads > 0) mg::set_num_threads(threads);
    mg::cuda::set_allow_tf32(tf32);
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
