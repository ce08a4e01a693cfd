#include "io/run_layout.h"

#include <algorithm>
#include <filesystem>

namespace mg {

namespace fs = std::filesystem;

namespace {
const char* kRootRunFiles[] = {kModelFile, kConfigFile, kStateFile, kRunFile, kMetricsFile, kCurvesFile};
}  // namespace

int64_t checkpoint_step(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0 || name.size() > prefix.size() + 18)
    return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

bool is_root_run_file(const std::string& name) {
  return std::any_of(std::begin(kRootRunFiles), std::end(kRootRunFiles), [&](const char* f) { return name == f; });
}

bool is_temporary(const std::string& name) { return name.find(".tmp.") != std::string::npos; }

bool is_damaged_checkpoint(const std::string& name) {
  const std::string suffix = ".damaged";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         checkpoint_step(name.substr(0, name.size() - suffix.size())) >= 0;
}

RunFolderContents inspect_run_folder(const std::string& dir) {
  RunFolderContents c;
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (ec || !fs::exists(st)) return c;
  if (!fs::is_directory(st)) {
    c.is_file = true;
    return c;
  }
  c.exists = true;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kLockFile || is_temporary(name)) continue;
    const bool run_file = is_root_run_file(name) || checkpoint_step(name) >= 0 || is_damaged_checkpoint(name);
    (run_file ? c.run_files : c.other_files).push_back(name);
  }
  std::sort(c.run_files.begin(), c.run_files.end());
  std::sort(c.other_files.begin(), c.other_files.end());
  return c;
}

bool is_run_file(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) p = fs::absolute(path).lexically_normal();
  const std::string name = p.filename().string();
  const fs::path parent = p.parent_path();
  const std::string parent_name = parent.filename().string();
  if (checkpoint_step(parent_name) >= 0 || is_damaged_checkpoint(parent_name)) return true;
  const bool root_name = is_root_run_file(name) || name == kLockFile || checkpoint_step(name) >= 0;
  return root_name && inspect_run_folder(parent.string()).holds_run();
}

}  // namespace mg
