// The layer stack of docs/layers.md, enforced: every #include "folder/..." in the library's sources
// must name its own folder or a folder of a lower layer. autograd/ and ops/ are one layer (ops record
// into autograd, the engine sums gradients with ops); every other pair of folders on one level, such
// as the two kernel rooms ops/cpu/ and cuda/, may not include each other.
#include <doctest/doctest.h>

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
    {"core", 0},  {"ops/cpu", 1}, {"cuda", 1},  {"autograd", 2}, {"ops", 2},   {"data", 3},
    {"models", 3}, {"io", 3},     {"train", 4}, {"bench", 5},    {"apps", 6},
};

bool may_include(const std::string& from, const std::string& to) {
  if (from == to) return true;
  if ((from == "autograd" && to == "ops") || (from == "ops" && to == "autograd")) return true;
  return kLevel.at(to) < kLevel.at(from);
}

// The folder an `#include "folder/..."` line names ("ops/cpu" for ops/cpu/...), or "" for any other
// line. (A hand parse: <regex> draws false warnings from GCC 12 in sanitizer builds.)
std::string include_folder(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line[i] != '#') return "";
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos || line.compare(i, 7, "include") != 0) return "";
  i = line.find_first_not_of(" \t", i + 7);
  if (i == std::string::npos || line[i] != '"') return "";
  size_t j = ++i;
  while (j < line.size() && ((line[j] >= 'a' && line[j] <= 'z') || line[j] == '_')) ++j;
  if (j == i || j >= line.size() || line[j] != '/') return "";
  std::string folder = line.substr(i, j - i);
  if (line.compare(j, 5, "/cpu/") == 0) folder += "/cpu";
  return folder;
}

}  // namespace

TEST_CASE("layers: no #include goes up the stack (docs/layers.md)") {
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
        const std::string target = include_folder(line);  // "ops/cpu" for ops/cpu/..., else the first folder
        if (target.empty()) continue;
        if (!kLevel.count(target)) continue;  // not one of our folders
        if (!may_include(from, target)) violations.push_back(rel + ":" + std::to_string(n) + ": " + line);
      }
    }
  }
  CHECK(files > 50);
  std::ostringstream all;
  for (const auto& v : violations) all << "\n  " << v;
  INFO("includes that go up the stack:", all.str());
  CHECK(violations.empty());
}

TEST_CASE("sources: only core/format.cpp runs fmt's formatting engine (the others call mg::format)") {
  // fmt is header-only here: a file that calls fmt::format, fmt::print or fmt::join compiles the whole
  // engine again (core/format.h), which is most of a small file's build time, 20x under the sanitizers.
  namespace fs = std::filesystem;
  const fs::path root = MG_SOURCE_DIR;
  std::vector<std::string> found;
  int files = 0;
  for (const char* dir : {"core", "cuda", "autograd", "ops", "data", "models", "io", "train", "bench", "apps",
                          "tests", "examples"}) {
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
