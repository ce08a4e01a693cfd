// The `mambagrad` subcommands. Each registers its options on the CLI11 app and returns the exit code
// of its run; errors are mg::Error exceptions, turned into a message and exit code 1 by main.
#pragma once
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

#include "core/error.h"

namespace mg::app {

using Run = std::function<int()>;

// Flushes standard output; a write error (a full disk, /dev/full) is an mg::Error naming `command`. main
// checks it once more, and closes it, after every command.
inline void flush_stdout(const char* command) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    MG_THROW("[{}] cannot write to standard output: {}", command, std::strerror(errno));
}

// Adds the subcommand to `app`; `run` is set to its action.
void add_gradcheck_command(CLI::App& app, Run& run);
void add_bench_command(CLI::App& app, Run& run);
void add_train_command(CLI::App& app, Run& run);
void add_eval_command(CLI::App& app, Run& run);
void add_generate_command(CLI::App& app, Run& run);
void add_logits_command(CLI::App& app, Run& run);
void add_graph_command(CLI::App& app, Run& run);

}  // namespace mg::app
