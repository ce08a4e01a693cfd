// The command lines of a tiny training run and of its resume, run as child processes (tests/cli.h):
// shared by the run-folder tests.
#pragma once
#include <string>
#include <vector>

#include "tests/cli.h"

namespace mg::test {

// The command line of a tiny run with a checkpoint every step (--threads 1: bit-identical runs).
inline std::vector<std::string> tiny_train(const std::string& data, const std::string& out, int steps) {
  return {"train",         "--data",         data,   "--out",         out,   "--preset",    "tiny",
          "--d-model",     "32",             "--n-layer", "1",          "--steps", std::to_string(steps),
          "--batch",       "4",              "--seq",    "32",          "--eval-every", "1",  "--eval-bytes",
          "512",           "--test-bytes",   "512",      "--threads",   "1",   "--quiet"};
}

inline CliRun resume_cli(const std::string& dir, std::vector<std::string> extra = {},
                         std::vector<std::string> env = {}) {
  std::vector<std::string> args{"train", "--resume", dir, "--threads", "1", "--quiet"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(args, env);
}

}  // namespace mg::test
