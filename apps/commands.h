// The `mambagrad` subcommands. Each registers its options on the CLI11 app and returns the exit code
// of its run; errors are mg::Error exceptions, turned into a message and exit code 1 by main.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace mg::app {

using Run = std::function<int()>;

// Adds the subcommand to `app`; `run` is set to its action.
void add_gradcheck_command(CLI::App& app, Run& run);
void add_bench_command(CLI::App& app, Run& run);
void add_train_command(CLI::App& app, Run& run);
void add_eval_command(CLI::App& app, Run& run);
void add_generate_command(CLI::App& app, Run& run);
void add_logits_command(CLI::App& app, Run& run);
void add_graph_command(CLI::App& app, Run& run);

}  // namespace mg::app
