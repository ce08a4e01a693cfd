// Runs the `mambagrad` program of this build as a child process (the crash and command-line tests):
// its exit status, or the signal that ended it, and what it printed.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mg::test {

struct CliRun {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  std::string out, err;
};

// `args` follow the program name; `env` adds NAME=value entries to this process's environment. With
// kill_after_ms >= 0 the child gets SIGKILL after that many milliseconds unless it ended before.
// `cwd`, when not empty, is the child's working directory. `on_stop`, when given (without kill_after_ms),
// runs each time the child stops itself (SIGSTOP: the trainer's MG_TEST_STOP_AT), and the child then gets
// SIGCONT.
// run_program: the same for another program (mpirun, tests/test_distributed.cpp), by its path.
inline CliRun run_program(const std::string& program, const std::vector<std::string>& args,
                          const std::vector<std::string>& env = {}, int kill_after_ms = -1, const std::string& cwd = "",
                          const std::function<void()>& on_stop = {}) {
  static int counter = 0;
  const std::string base = "/tmp/mg_cli_out_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  const std::string out_path = base + ".out", err_path = base + ".err";
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) env_s.push_back(*e);
  env_s.insert(env_s.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, program.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  CliRun r;
  if (rc != 0) {
    r.err = "posix_spawn failed";
    return r;
  }
  int status = 0;
  if (kill_after_ms >= 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  } else {
    while (::waitpid(pid, &status, on_stop ? WUNTRACED : 0) == pid && WIFSTOPPED(status)) {
      on_stop();
      ::kill(pid, SIGCONT);
    }
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  auto slurp = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(out_path), r.err = slurp(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return r;
}

inline CliRun run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                      int kill_after_ms = -1, const std::string& cwd = "", const std::function<void()>& on_stop = {}) {
  return run_program(MG_CLI_PATH, args, env, kill_after_ms, cwd, on_stop);
}

}  // namespace mg::test
