// mambagrad: the command line. `mambagrad --help` lists the subcommands.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "apps/commands.h"
#include "apps/option_checks.h"
#include "core/error.h"
#include "core/memory_limit.h"
#include "core/parallel.h"
#include "cuda/runtime.h"
#include "train/distributed.h"
#include "train/interrupt.h"

namespace {

// Descriptors 0, 1 and 2 that the caller closed (`mambagrad train ... >&-`) are taken by /dev/null opened
// read-only before anything else is opened: otherwise the first file opened (a run's .lock, its
// metrics.jsonl) would become standard output and receive the progress lines. Writes to a read-only
// descriptor fail as writes to a closed one do (EBADF), so a closed output is still reported.
void reserve_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      const int got = ::open("/dev/null", O_RDONLY);  // the lowest free descriptor: this one
      if (got > 2) ::close(got);
    }
}

}  // namespace

int main(int argc, char** argv) {
  reserve_standard_descriptors();
  CLI::App app{"mambagrad: a from-scratch tensor library with autograd, and Mamba on enwik8"};
  app.require_subcommand(1);
  app.fallthrough();  // the global options below are accepted after the subcommand too
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (default: MG_NUM_THREADS, else all cores)")
      ->check(mg::app::integer<int64_t>([](int64_t v) { return v >= 1 && v <= mg::kMaxThreads; },
                                        mg::format("an integer from 1 to {}", mg::kMaxThreads)));
  // Subcommands that run on a GPU take --device (apps/device_option.h); this switch is global.
  bool tf32 = false;
  app.add_flag("--tf32", tf32, "CUDA: float32 matmuls in TF32 (faster, ~1e-3 relative error; default full float32)");
  mg::app::Run run;
  mg::app::add_train_command(app, run);
  mg::app::add_eval_command(app, run);
  mg::app::add_generate_command(app, run);
  mg::app::add_logits_command(app, run);
  mg::app::add_graph_command(app, run);
  mg::app::add_gradcheck_command(app, run);
  mg::app::add_bench_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A first word that is not a subcommand: name it and the valid ones (CLI11 alone says only that
    // a subcommand is required, or that the word was not expected).
    if (app.get_subcommands().empty() && e.get_exit_code() != 0) {
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads") {
          ++i;
          continue;
        }
        if (a.empty() || a[0] == '-') continue;
        std::string names;
        for (const CLI::App* sub :
             static_cast<const CLI::App&>(app).get_subcommands([](const CLI::App*) { return true; }))
          names += (names.empty() ? "" : ", ") + sub->get_name();
        std::fprintf(stderr, "error: unknown command '%s' (valid: %s; see mambagrad --help)\n", a.c_str(),
                     names.c_str());
        return e.get_exit_code();
      }
    }
    if (!app.get_subcommands().empty()) {
      const CLI::App* cmd = app.get_subcommands().front();
      const std::string name = cmd->get_name();
      // An option the command does not have (CLI11: "The following arguments were not expected: 0.9 --top-p",
      // in reverse order): name it, and the command's options.
      if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
        for (int i = 1; i < argc; ++i) {
          const std::string a = argv[i], opt = a.substr(0, a.find('='));
          if (a == "--") break;  // what follows is not options
          if (opt.size() < 2 || opt[0] != '-' || (opt[1] >= '0' && opt[1] <= '9') || opt[1] == '.') continue;
          const CLI::Option* known = cmd->get_option_no_throw(opt);
          if (!known) known = app.get_option_no_throw(opt);
          if (known) {  // skip its value, which may start with '-' (--warmup -1, --prompt "-- hi")
            if (known->get_expected_min() > 0 && a.find('=') == std::string::npos) ++i;
            continue;
          }
          std::string names;
          for (const CLI::Option* o : cmd->get_options())
            if (o->nonpositional() && o->get_name() != "--help") names += (names.empty() ? "" : ", ") + o->get_name();
          std::fprintf(stderr, "error: [%s] unknown option %s (%s's options: %s; see mambagrad %s --help)\n",
                       name.c_str(), opt.c_str(), name.c_str(), names.c_str(), name.c_str());
          return e.get_exit_code();
        }
      }
      // An option given twice (CLI11: "--bytes: At Most 1 required but received 2").
      constexpr std::string_view kTwice = ": At Most 1 required but received ";
      const std::string what = e.what();
      const size_t at = what.find(kTwice);
      if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && at != std::string::npos) {
        std::fprintf(stderr, "error: [%s] %s was given %s times; give it once\n", name.c_str(),
                     what.substr(0, at).c_str(), what.substr(at + kTwice.size()).c_str());
        return e.get_exit_code();
      }
    }
    const int status = app.exit(e);  // --help prints here: a write error fails it as any output
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "error: cannot write to standard output: %s\n", std::strerror(errno));
      return status == 0 ? 1 : status;
    }
    return status;
  } catch (const std::exception& e) {  // a subcommand's callback refusing its options, before anything runs
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  // After an error: a rank of a data-parallel run that failed alone ends the job (MPI_Abort), so that
  // no other rank waits for it forever in a collective (train/distributed.h).
  auto failed = [](int status) {
    mg::World::end_after_error(status);
    return status;
  };
  try {
    if (threads > 0) mg::set_num_threads(threads);
    mg::cuda::set_allow_tf32(tf32);
    const int status = run();
    // Every rank of a data-parallel run gets here together (an interrupt is agreed between them).
    mg::World::finalize();
    // What a command printed is part of its result: a write error (a full disk, /dev/full) fails it.
    mg::app::flush_stdout(app.get_subcommands().front()->get_name().c_str());
    MG_CHECK(std::fclose(stdout) == 0, "cannot close standard output: {}", std::strerror(errno));
    return status;
  } catch (const mg::Interrupted& e) {  // Ctrl-C while evaluating: the shell's status for it
    std::fprintf(stderr, "%s\n", e.what());
    return failed(mg::interrupted_exit_status(e.signo));
  } catch (const std::bad_alloc&) {
    // Sizes from files and options are bounded first (core/memory_limit.h); this is what is left.
    std::fprintf(stderr,
                 "error: [%s] ran out of memory (this machine's memory: %s); use a smaller model, batch or "
                 "file\n",
                 app.get_subcommands().empty() ? "mambagrad" : app.get_subcommands()[0]->get_name().c_str(),
                 mg::format_bytes((double)mg::memory_limit_bytes()).c_str());
    return failed(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return failed(1);
  }
}
