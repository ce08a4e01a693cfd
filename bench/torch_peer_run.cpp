// Running bench/torch_peer.py in a child process: shared by `bench train` and `bench generate`.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include "core/format.h"
#include <sstream>

#include "bench/bench.h"
#include "core/parallel.h"

#ifndef MG_SOURCE_DIR
#define MG_SOURCE_DIR "."
#endif

namespace mg::bench {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::map<std::string, std::string> run_torch_peer(const std::string& args, const std::string& required_key,
                                                  std::string& status) {
  // MG_PYTHON picks the interpreter (scripts/gpu-check.sh points it at the one holding PyTorch).
  const char* env_python = std::getenv("MG_PYTHON");
  const std::string python = env_python && *env_python ? env_python : "/usr/bin/python3";
  const std::string script = std::string(MG_SOURCE_DIR) + "/bench/torch_peer.py";
  if (access(python.c_str(), X_OK) != 0) {
    status = "skipped: " + python + " not found";
    return {};
  }
  if (access(script.c_str(), R_OK) != 0) {
    status = "skipped: " + script + " not found";
    return {};
  }
  // Debian's OpenBLAS misdetects recent Xeons; SkylakeX kernels are right for AVX-512 machines only.
  const char* core = openblas_coretype();
  const std::string env = core && !getenv("OPENBLAS_CORETYPE") ? mg::format("OPENBLAS_CORETYPE={} ", core) : "";
  const std::string cmd = mg::format("{}{} {} {} 2>&1", env, python, shell_quote(script), args);
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    status = "skipped: could not start " + python;
    return {};
  }
  std::map<std::string, std::string> kv;
  bool skipped = false;
  std::string skip_reason;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) {
    std::string line(buf);
    mg::print("  | {}", line);
    if (line.empty() || line.back() != '\n') mg::print("\n");
    if (line.rfind("torch_peer skipped", 0) == 0) {
      skipped = true;
      skip_reason = line.substr(std::string("torch_peer skipped").size());
      while (!skip_reason.empty() && (skip_reason.back() == '\n' || skip_reason.back() == ' ')) skip_reason.pop_back();
    } else if (line.rfind("torch_peer ", 0) == 0) {
      std::istringstream ss(line.substr(11));
      std::string tok;
      while (ss >> tok) {
        auto eq = tok.find('=');
        if (eq != std::string::npos) kv[tok.substr(0, eq)] = tok.substr(eq + 1);
      }
    }
  }
  std::fflush(stdout);
  int rc = pclose(p);
  if (skipped) {
    status = "skipped" + skip_reason;
    return {};
  }
  if (rc != 0 || !kv.count(required_key)) {
    status = mg::format("failed (exit status {})", WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
    return {};
  }
  status = "ok";
  return kv;
}

}  // namespace mg::bench
