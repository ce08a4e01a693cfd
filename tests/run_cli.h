// The command lines of a tiny training run and of its resume, run as child processes (tests/cli.h):
// shared by the run-folder tests.
#pragma once
#include <csignal>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "tests/cli.h"

namespace mg::test {

// What a tiny run's command line sets besides its data, folder and steps; `extra` is appended.
struct TinyArgs {
  int batch = 4, eval_every = 1, eval_bytes = 512;  // eval_bytes: validation and test
  int warmup = -1;                                  // -1: the trainer's default (no --warmup)
  std::vector<std::string> extra = {};
};

// The command line of a tiny run, by default with a checkpoint every step (--threads 1: bit-identical runs).
inline std::vector<std::string> tiny_train(const std::string& data, const std::string& out, int steps,
                                           const TinyArgs& t = {}) {
  std::vector<std::string> args = {"train",
                                   "--data",
                                   data,
                                   "--out",
                                   out,
                                   "--preset",
                                   "tiny",
                                   "--d-model",
                                   "32",
                                   "--n-layer",
                                   "1",
                                   "--steps",
                                   std::to_string(steps),
                                   "--batch",
                                   std::to_string(t.batch),
                                   "--seq",
                                   "32",
                                   "--eval-every",
                                   std::to_string(t.eval_every),
                                   "--eval-bytes",
                                   std::to_string(t.eval_bytes),
                                   "--test-bytes",
                                   std::to_string(t.eval_bytes),
                                   "--threads",
                                   "1",
                                   "--quiet"};
  if (t.warmup >= 0) args.insert(args.end(), {"--warmup", std::to_string(t.warmup)});
  args.insert(args.end(), t.extra.begin(), t.extra.end());
  return args;
}

// A tiny run of `steps` steps in `out`, killed (SIGKILL) at the point that MG_TEST_CRASH_AT names
// ("checkpoint-published:4").
inline void killed_run(const std::string& data, const std::string& out, int steps, const std::string& crash_at) {
  const CliRun k = run_cli(tiny_train(data, out, steps), {"MG_TEST_CRASH_AT=" + crash_at});
  REQUIRE(k.signal == SIGKILL);
}

inline CliRun resume_cli(const std::string& dir, std::vector<std::string> extra = {},
                         std::vector<std::string> env = {}) {
  std::vector<std::string> args{"train", "--resume", dir, "--threads", "1", "--quiet"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(args, env);
}

// Runs the program (run_cli's arguments) and requires that it succeeds; returns the run.
inline CliRun cli_ok(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                     const std::string& cwd = "") {
  CliRun r = run_cli(args, env, -1, cwd);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return r;
}

// Runs the program and checks that it fails (with `exit_code`, or any non-zero status when -1),
// without a signal, and that its error output holds `message`; returns the run.
inline CliRun cli_fails(const std::vector<std::string>& args, const std::string& message, int exit_code = -1,
                        const std::string& cwd = "") {
  CliRun r = run_cli(args, {}, -1, cwd);
  INFO(r.err);
  if (exit_code == -1)
    CHECK(r.exit_code > 0);
  else
    CHECK(r.exit_code == exit_code);
  CHECK(r.signal == 0);
  CHECK(r.err.find(message) != std::string::npos);
  return r;
}

}  // namespace mg::test
