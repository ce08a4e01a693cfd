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

bool is_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at + 5 == name.size() || name.size() - (at + 5) > 10) return false;
  for (size_t i = at + 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;  // .tmp.<pid>
  std::string base = name.substr(0, at);
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".old") == 0) base.resize(base.size() - 4);
  return is_root_run_file(base) || base == kManifestFile || checkpoint_step(base) >= 0;
}

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
  bool marker = false;  // run.json, a checkpoint folder or a root trainer state: the folder holds a run
  bool manifest = false, state = false;  // checkpoint.json and trainer_state.safetensors: a checkpoint
  std::vector<std::string> root_files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kLockFile || is_temporary(name)) continue;
    if (name == kManifestFile) manifest = true;
    state = state || name == kStateFile;
    if (name == kRunFile || name == kStateFile || checkpoint_step(name) >= 0 || is_damaged_checkpoint(name)) {
      marker = true;
      c.run_files.push_back(name);
    } else {
      (is_root_run_file(name) ? root_files : c.other_files).push_back(name);
    }
  }
  c.is_checkpoint = manifest && state;  // a user's own checkpoint.json alone does not make one
  // A folder named checkpoint-<step> (or set aside) inside a folder that holds a run.
  fs::path self = fs::absolute(dir, ec).lexically_normal();
  if (!self.has_filename()) self = self.parent_path();  // "run/checkpoint-4/" names checkpoint-4
  const std::string own = self.filename().string();
  if (!c.is_checkpoint && (checkpoint_step(own) >= 0 || is_damaged_checkpoint(own))) {
    std::error_code pec;
    c.is_checkpoint = fs::exists(self.parent_path() / kRunFile, pec);
  }
  if (c.is_checkpoint) marker = false;
  if (!marker) {  // not a run: its run-file names are someone else's files
    c.other_files.insert(c.other_files.end(), c.run_files.begin(), c.run_files.end());
    c.other_files.insert(c.other_files.end(), root_files.begin(), root_files.end());
    c.run_files.clear();
  } else {
    c.run_files.insert(c.run_files.end(), root_files.begin(), root_files.end());
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
  const RunFolderContents c = inspect_run_folder(parent.string());
  if (c.is_checkpoint) return true;
  const bool root_name = is_root_run_file(name) || name == kLockFile || checkpoint_step(name) >= 0;
  return root_name && c.holds_run();
}

}  // namespace mg
