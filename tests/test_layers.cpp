// The layer stack of docs/layers.md, enforced: every #include "folder/..." in the library's sources
// must name its own folder or a folder of a lower layer. autograd/ and ops/ are one layer (ops record
// into autograd, the engine sums gradients with ops); every other pair of folders on one level, such
// as the two kernel rooms ops/cpu/ and cuda/, may not include each other.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
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

}  // namespace

TEST_CASE("layers: no #include goes up the stack (docs/layers.md)") {
  namespace fs = std::filesystem;
  const fs::path root = MG_SOURCE_DIR;
  const std::regex include_re(R"re(^\s*#\s*include\s*"([a-z_]+(/cpu)?)/)re");
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
        std::smatch m;
        if (!std::regex_search(line, m, include_re)) continue;
        const std::string target = m[1].str();  // "ops/cpu" for ops/cpu/..., else the first folder
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
