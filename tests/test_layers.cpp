// The layer stack of docs/layers.md, enforced: every #include "folder/..." in the library's sources
// must name its own folder or a folder of a lower layer. autograd/ and ops/ are one layer (ops record
// into autograd, the engine sums gradients with ops); introspect/ sits on them (its tools observe the
// engine through autograd/observer.h, and ops never see them), below models/ (module paths); every
// other pair of folders on one level, such as the two kernel rooms ops/cpu/ and cuda/, may not include
// each other. Above ops no file includes
// a kernel header (ops/cpu/..., cuda/...): the choice between the CPU and the CUDA kernel is made in
// ops/. The exceptions are cuda/'s runtime (device count, memory figures, synchronisation) and NCCL
// communicator headers, which hold no kernel, and bench/, which times kernels directly.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

// The folder a path belongs to, as the layer table names it ("ops/cpu" is not "ops").
std::string folder_of(const std::string& rel) {
  if (rel.rfind("ops/cpu/", 0) == 0) return "ops/cpu";
  return rel.substr(0, rel.find('/'));
}

// Lower is more basic. Folders on one level are separate rooms, except autograd and ops (one layer).
const std::map<std::string, int> kLevel = {
    {"core", 0}, {"ops/cpu", 1}, {"cuda", 1}, {"autograd", 2}, {"ops", 2},   {"introspect", 3},
    {"data", 4}, {"models", 4},  {"io", 4},   {"train", 5},    {"bench", 6}, {"apps", 7},
};

bool may_include(const std::string& from, const std::string& to) {
  if (from == to) return true;
  if ((from == "autograd" && to == "ops") || (from == "ops" && to == "autograd")) return true;
  return kLevel.at(to) < kLevel.at(from);
}

// cuda/ headers that declare no kernel: the device runtime and the NCCL communicator.
const std::vector<std::string> kCudaRuntimeHeaders = {"cuda/runtime.h", "cuda/nccl.h"};

// Whether a file in `from` may include the header `path` of folder `to` as far as kernel headers go:
// the kernel folders and autograd/ + ops/ (ops picks the kernel) may; above ops, only the runtime
// headers, and bench/, whose kernel benchmarks call ops/cpu/ and cuda/ launchers directly.
bool may_include_kernel_header(const std::string& from, const std::string& to, const std::string& path) {
  if (to != "ops/cpu" && to != "cuda") return true;
  if (kLevel.at(from) <= kLevel.at("ops")) return true;
  if (from == "bench") return true;  // the exception: kernel benchmarks (bench/scan_bench*, matmul_bench ...)
  return to == "cuda" &&
         std::find(kCudaRuntimeHeaders.begin(), kCudaRuntimeHeaders.end(), path) != kCudaRuntimeHeaders.end();
}

// The header path an `#include "folder/..."` line names ("ops/cpu/gemm.h"), or "" for any other line.
// (A hand parse: <regex> draws false warnings from GCC 12 in sanitizer builds.)
std::string include_path(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line[i] != '#') return "";
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos || line.compare(i, 7, "include") != 0) return "";
  i = line.find_first_not_of(" \t", i + 7);
  if (i == std::string::npos || line[i] != '"') return "";
  const size_t end = line.find('"', i + 1);
  if (end == std::string::npos) return "";
  return line.substr(i + 1, end - i - 1);
}

// The folder an included path names ("ops/cpu" for ops/cpu/..., else its first folder), or "" when it
// names no folder of lower-case letters.
std::string include_folder(const std::string& path) {
  size_t j = 0;
  while (j < path.size() && ((path[j] >= 'a' && path[j] <= 'z') || path[j] == '_')) ++j;
  if (j == 0 || j >= path.size() || path[j] != '/') return "";
  std::string folder = path.substr(0, j);
  if (path.compare(j, 5, "/cpu/") == 0) folder += "/cpu";
  return folder;
}

}  // namespace

TEST_CASE("layers: no #include goes up the stack and none above ops names a kernel header (docs/layers.md)") {
  namespace fs = std::filesystem;
  const fs::path root = MG_SOURCE_DIR;
  std::vector<std::string> violations;
  int files = 0;
  for (const auto& [name, level] : kLevel) {
    if (name == "ops/cpu" || !fs::exists(root / name)) continue;  // ops/cpu is walked with ops
    for (const auto& e : fs::recursive_directory_iterator(root / name)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh")) continue;
      const std::string rel = fs::relative(e.path(), root).generic_string();
      const std::string from = folder_of(rel);
      ++files;
      std::ifstream in(e.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        const std::string path = include_path(line);
        const std::string target = include_folder(path);  // "ops/cpu" for ops/cpu/..., else the first folder
        if (!kLevel.count(target)) continue;              // not one of our folders
        if (!may_include(from, target) || !may_include_kernel_header(from, target, path))
          violations.push_back(rel + ":" + std::to_string(n) + ": " + line);
      }
    }
  }
  CHECK(files > 50);
  std::ostringstream all;
  for (const auto& v : violations) all << "\n  " << v;
  INFO("includes that go up the stack:", all.str());
  CHECK(violations.empty());
}

TEST_CASE("layers: the engine and the ops never include introspect/, which includes them") {
  // The tools observe the engine (autograd/observer.h); the engine does not know them.
  CHECK_FALSE(may_include("autograd", "introspect"));
  CHECK_FALSE(may_include("ops", "introspect"));
  CHECK_FALSE(may_include("core", "introspect"));
  CHECK(may_include("introspect", "autograd"));
  CHECK(may_include("introspect", "ops"));
  CHECK(may_include("models", "introspect"));
  CHECK(may_include("train", "introspect"));
  CHECK_FALSE(may_include("introspect", "models"));
  CHECK(include_folder(include_path("#include \"introspect/anomaly.h\"")) == "introspect");
}

TEST_CASE("layers: the kernel-header rule refuses train, models, data, io and apps") {
  // The cases the rule exists for, so that a rule that allowed everything would fail here.
  for (const char* from : {"data", "models", "io", "train", "apps"}) {
    CAPTURE(from);
    CHECK_FALSE(may_include_kernel_header(from, "ops/cpu", include_path("#include \"ops/cpu/gemm.h\"")));
    CHECK_FALSE(may_include_kernel_header(from, "cuda", include_path("#include \"cuda/optim.h\"")));
    CHECK(may_include_kernel_header(from, "cuda", include_path("#include \"cuda/runtime.h\"")));
    CHECK(may_include_kernel_header(from, "ops", include_path("#include \"ops/optim.h\"")));
  }
  CHECK(may_include_kernel_header("ops", "ops/cpu", "ops/cpu/optim.h"));
  CHECK(may_include_kernel_header("ops", "cuda", "cuda/optim.h"));
  CHECK(may_include_kernel_header("bench", "ops/cpu", "ops/cpu/gemm.h"));
  CHECK(include_folder(include_path("  #  include \"ops/cpu/gemm.h\"  // x")) == "ops/cpu");
  CHECK(include_folder(include_path("#include <cuda/std/utility>")).empty());
}

TEST_CASE("sources: only core/format.cpp runs fmt's formatting engine (the others call mg::format)") {
  // fmt is header-only here: a file that calls fmt::format, fmt::print or fmt::join compiles the whole
  // engine again (core/format.h), which is most of a small file's build time, 20x under the sanitizers.
  namespace fs = std::filesystem;
  const fs::path root = MG_SOURCE_DIR;
  std::vector<std::string> found;
  int files = 0;
  for (const char* dir : {"core", "cuda", "autograd", "ops", "introspect", "data", "models", "io", "train", "bench",
                          "apps", "tests", "examples"}) {
    if (!fs::exists(root / dir)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / dir)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh")) continue;
      const std::string rel = fs::relative(e.path(), root).generic_string();
      if (rel == "core/format.cpp" || rel == "tests/test_layers.cpp") continue;
      ++files;
      std::ifstream in(e.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n)
        for (const char* call : {"fmt::format(", "fmt::print(", "fmt::join(", "fmt::vformat(", "fmt::format_to("})
          if (line.find(call) != std::string::npos) found.push_back(rel + ":" + std::to_string(n) + ": " + line);
    }
  }
  CHECK(files > 100);
  std::ostringstream all;
  for (const auto& f : found) all << "\n  " << f;
  INFO("calls of fmt's engine (use mg::format, mg::print, mg::join from core/format.h):", all.str());
  CHECK(found.empty());
}
