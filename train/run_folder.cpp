#include "train/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/regular_file.h"
#include "train/distributed.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace mg {

namespace fs = std::filesystem;

namespace {

std::string pid_suffix() { return ".tmp." + std::to_string((long long)::getpid()); }

// The processes that hold a flock on the file or folder open as `fd`, as Linux lists them in /proc/locks
// ("1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF", majors and minors in hex; a waiter's
// line has "->" in place of FLOCK). None where that cannot be read; a holder outside this PID namespace
// (a trainer in a container) is listed as 0 and left out.
std::vector<long long> flock_holders(int fd) {
  std::vector<long long> pids;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return pids;
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, kind, mode, access, dev;
    long long pid = 0;
    if (!(fields >> id >> kind) || kind != "FLOCK" || !(fields >> mode >> access >> pid >> dev) || pid <= 0) continue;
    unsigned maj = 0, min = 0;
    unsigned long long ino = 0;
    if (std::sscanf(dev.c_str(), "%x:%x:%llu", &maj, &min, &ino) == 3 && maj == ::major(st.st_dev) &&
        min == ::minor(st.st_dev) && ino == (unsigned long long)st.st_ino)
      pids.push_back(pid);
  }
  return pids;
}

// "pid 1234 (name)": a process and its command name, from /proc (the pid alone where that is gone).
std::string process_text(long long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!std::getline(in, name) || name.empty()) return mg::format("pid {}", pid);
  return mg::format("pid {} ({})", pid, name);
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems do not let a directory be opened
  ::fsync(fd);
  ::close(fd);
}

// The checkpoint folders of a run, newest first.
std::vector<std::pair<int64_t, std::string>> checkpoint_folders(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    const int64_t step = checkpoint_step(name);
    if (step >= 0 && e.is_directory()) out.push_back({step, e.path().string()});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first > b.first; });
  return out;
}

// A manifest's text ("" when it cannot be read, which the JSON parser then reports).
std::string read_manifest_text(const std::string& path) {
  try {
    return RegularFile(path, "[checkpoint]").read_all();
  } catch (const Error&) {
    return "";
  }
}

// Empty when the file `path` has the size and CRC-32 that a manifest's entry `info` records for `name`,
// else what differs.
std::string compare_with_manifest(const nlohmann::json& info, const std::string& name, const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return mg::format("{} is missing", name);
  if ((int64_t)size != info.at("bytes").get<int64_t>())
    return mg::format("{} has {} bytes, its manifest says {}", name, size, info.at("bytes").get<int64_t>());
  if (crc32_file(path) != info.at("crc32").get<uint32_t>())
    return mg::format("{} does not match its CRC-32 in the manifest (the file is damaged)", name);
  return "";
}

// Empty when the checkpoint folder verifies, else what is wrong with it.
std::string verify_checkpoint(const std::string& dir, int64_t step) {
  const std::string manifest = dir + "/" + kManifestFile;
  if (!fs::exists(manifest)) return mg::format("it has no {}", kManifestFile);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_manifest_text(manifest));
    if (j.at("step").get<int64_t>() != step)
      return mg::format("its {} names step {}", kManifestFile, j.at("step").get<int64_t>());
    const auto& files = j.at("files");
    for (const char* needed : {kModelFile, kStateFile})
      if (!files.contains(needed)) return mg::format("its {} does not list {}", kManifestFile, needed);
    for (const auto& [name, info] : files.items())
      if (std::string why = compare_with_manifest(info, name, dir + "/" + name); !why.empty()) return why;
  } catch (const nlohmann::json::exception& e) {
    return mg::format("its {} is unreadable: {}", kManifestFile, e.what());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// True when `dst` is a file of its own (not a hard link to `src`, as runs of earlier builds have) with the
// bytes of `src`.
bool same_content(const std::string& src, const std::string& dst) {
  std::error_code ec;
  if (!fs::is_regular_file(dst, ec) || fs::equivalent(src, dst, ec)) return false;
  return fs::file_size(src, ec) == fs::file_size(dst, ec) && !ec && crc32_file(src) == crc32_file(dst);
}

}  // namespace

std::string join_names(const std::vector<std::string>& names, size_t max) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max) s += mg::format(" and {} more", names.size() - max);
  return s;
}

uint32_t crc32_file(const std::string& path) {
  const RegularFile in(path, "[checkpoint]");
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t at = 0; at < in.size(); at += buf.size()) {
    const size_t n = (size_t)std::min<uint64_t>(buf.size(), in.size() - at);
    MG_CHECK(in.read_at(at, buf.data(), n), "[checkpoint] reading '{}' failed", path);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), (uInt)n);
  }
  return (uint32_t)crc;
}

RunLock::RunLock(const std::string& dir) : dir_(dir) {
  const std::string path = dir + "/" + kLockFile;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MG_CHECK(fd_ >= 0, "[train] cannot create the lock file '{}': {}", path, std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    const std::vector<long long> holders = err == EWOULDBLOCK ? flock_holders(fd_) : std::vector<long long>{};
    ::close(fd_);
    fd_ = -1;
    std::string pid = n > 0 ? std::string(buf, (size_t)n) : std::string("unknown");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (err == EWOULDBLOCK) {
      // The pid written in the file is the last trainer's. The holder, where the kernel names it, says
      // whether that trainer still holds the lock or another process does (a trainer writes its pid just
      // after it takes the lock).
      char* end = nullptr;
      const long long p = std::strtoll(pid.c_str(), &end, 10);
      const bool named = !pid.empty() && *end == '\0' && p > 0 && p <= INT_MAX;
      if (!holders.empty() && std::find(holders.begin(), holders.end(), p) == holders.end())
        MG_THROW("[train] {} is locked by another process: {} holds its {}{}; wait for it to finish or stop it first",
                 dir, process_text(holders.front()), kLockFile,
                 named ? mg::format(" (the pid written in it, {}, is of an earlier trainer)", pid) : std::string());
      // Where no such process lives, another program holds the lock.
      if (holders.empty() && named && ::kill((pid_t)p, 0) != 0 && errno == ESRCH)
        MG_THROW(
            "[train] {} is locked by another program: its {} names pid {}, a trainer that has exited, so the lock "
            "is held by some other process, or by a trainer in another PID namespace such as a container (`fuser "
            "{}` names a holder on this machine); wait for it or stop it first",
            dir, kLockFile, pid, shell_word(path));
      MG_THROW("[train] {} is in use by another trainer (pid {}); wait for it to finish or stop it first", dir, pid);
    }
    MG_THROW("[train] cannot lock '{}': {}", path, std::strerror(err));
  }
  // The folder itself too: a .lock removed by hand while a trainer runs would otherwise let a second
  // trainer make a new one and write the same folder. A folder that holds a run is never empty, so it
  // cannot be removed under the lock. Where the file system cannot lock a folder (some network file
  // systems), the .lock file alone guards it.
  dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ >= 0 && ::flock(dir_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::vector<long long> holders = err == EWOULDBLOCK ? flock_holders(dir_fd_) : std::vector<long long>{};
    ::close(dir_fd_);
    dir_fd_ = -1;
    if (err == EWOULDBLOCK) {
      ::close(fd_);
      fd_ = -1;
      MG_THROW(
          "[train] {} is in use by another trainer ({}: its {} was removed while it runs, and it holds the "
          "folder's own lock); wait for it to finish or stop it first",
          dir, holders.empty() ? std::string("its pid is unknown") : process_text(holders.front()), kLockFile);
    }
  }
  const std::string pid = std::to_string((long long)::getpid()) + "\n";  // both held: name the holder
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
}

std::optional<std::string> RunLock::moved_to() const {
  struct stat held {
  }, named{};
  if (dir_fd_ < 0 || ::fstat(dir_fd_, &held) != 0) return std::nullopt;  // nothing to compare with: assume in place
  if (::stat(dir_.c_str(), &named) == 0 && named.st_dev == held.st_dev && named.st_ino == held.st_ino)
    return std::nullopt;
  if (held.st_nlink == 0) return std::string();  // removed
  // Linux names a descriptor's directory where it is now.
  char buf[4096];
  const std::string link = "/proc/self/fd/" + std::to_string(dir_fd_);
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
  if (n <= 0 || n >= (ssize_t)sizeof buf) return std::string();
  std::string where(buf, (size_t)n);
  if (where.ends_with(" (deleted)")) return std::string();
  return where;
}

RunLock::~RunLock() {
  if (dir_fd_ >= 0) ::close(dir_fd_);  // closing the descriptors releases the flocks
  if (fd_ >= 0) ::close(fd_);
}

std::optional<CheckpointRef> find_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped) {
  for (const auto& [step, dir] : checkpoint_folders(run_dir)) {
    const std::string why = verify_checkpoint(dir, step);
    if (why.empty()) return CheckpointRef{step, dir, false};
    if (skipped) skipped->push_back(mg::format("{} is not a usable checkpoint: {}", dir, why));
  }
  // The layout before checkpoint folders: both files at the root, the step in their metadata.
  const std::string model = run_dir + "/" + kModelFile, state = run_dir + "/" + kStateFile;
  if (!fs::exists(state) || !fs::exists(model)) return std::nullopt;
  try {
    const auto ms = read_safetensors(model).metadata, ss = read_safetensors(state).metadata;
    if (!ms.count("step") || !ss.count("step") || ms.at("step") != ss.at("step")) {
      if (skipped)
        skipped->push_back(mg::format("{} and {} in {} are from different steps ({} and {})", kModelFile, kStateFile,
                                      run_dir, ms.count("step") ? ms.at("step") : "none",
                                      ss.count("step") ? ss.at("step") : "none"));
      return std::nullopt;
    }
    const std::string& s = ss.at("step");
    int64_t step = 0;
    MG_CHECK(
        !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }),
        "[resume] {} has a step that is not a non-negative integer: '{}'", state, s);
    step = std::stoll(s);
    return CheckpointRef{step, run_dir, true};
  } catch (const Error& e) {
    if (skipped) skipped->push_back(e.what());
    return std::nullopt;
  }
}

std::string compare_with_checkpoint(const CheckpointRef& ckpt, const std::string& name, const std::string& path) {
  const std::string manifest = ckpt.dir + "/" + kManifestFile;
  try {
    const nlohmann::json j = nlohmann::json::parse(read_manifest_text(manifest));
    if (!j.at("files").contains(name)) return "";
    std::string why = compare_with_manifest(j.at("files").at(name), name, path);
    if (!why.empty())
      why = mg::format("{} does not match the size and CRC-32 that {} records for {}", path, manifest, name);
    return why;
  } catch (const nlohmann::json::exception& e) {
    return mg::format("{} is unreadable: {}", manifest, e.what());
  }
}

void publish_checkpoint(const std::string& run_dir, const CheckpointRef& ckpt) {
  if (ckpt.legacy) return;
  // The checkpoints before this one are superseded: removed first, so that the space they held is free
  // for the root copies (on a nearly full disk the copy would otherwise fail on every resume). Readers
  // take the checkpoint itself while the root model is older than it.
  std::error_code ec;
  for (const auto& [s, dir] : checkpoint_folders(run_dir))
    if (s < ckpt.step) fs::remove_all(dir, ec);
  crash_point("checkpoint-superseded");
  for (const char* name : {kModelFile, kConfigFile}) {
    const std::string src = ckpt.dir + "/" + name, dst = run_dir + "/" + name;
    try {
      if (fs::exists(src) && !same_content(src, dst)) copy_file_atomic(src, dst);
    } catch (const std::exception& e) {
      MG_THROW(
          "[checkpoint] checkpoint-{} is saved in {}, but the root {} (a copy of the checkpoint's) could not be "
          "updated: {}. Nothing is lost (readers use the checkpoint until the copy is made): fix the cause (free "
          "space, where the disk is full) and continue the run with: mambagrad train --resume {}",
          ckpt.step, run_dir, name, e.what(), shell_word(run_dir));
    }
  }
  fsync_dir(run_dir);
}

void write_checkpoint(const std::string& run_dir, int64_t step,
                      const std::function<void(const std::string& tmp_dir)>& write_files) {
  crash_point("checkpoint-begin");
  const std::string final_dir = mg::format("{}/checkpoint-{}", run_dir, step);
  const std::string tmp = final_dir + pid_suffix();
  const std::string aside = final_dir + ".old" + pid_suffix();
  std::error_code ec;
  try {
    fs::remove_all(tmp, ec);
    // Not create_directories: a run folder moved or removed meanwhile must fail here, not be made again
    // (without its lock) at its old name.
    fs::create_directory(tmp);
    write_files(tmp);
    nlohmann::ordered_json manifest;
    manifest["format"] = "mambagrad-checkpoint";
    manifest["step"] = step;
    nlohmann::ordered_json files = nlohmann::ordered_json::object();
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp))
      if (e.is_regular_file() && !is_temporary(e.path().filename().string()))
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const std::string path = tmp + "/" + name;
      files[name] = {{"bytes", (int64_t)fs::file_size(path)}, {"crc32", crc32_file(path)}};
    }
    manifest["files"] = files;
    write_file_atomic(tmp + "/" + kManifestFile, manifest.dump(2) + "\n");
    fsync_dir(tmp);
    crash_point("checkpoint-written");
    if (fs::exists(final_dir)) {  // the same step saved again: set the old folder aside first
      fs::remove_all(aside, ec);
      fs::rename(final_dir, aside);
    }
    fs::rename(tmp, final_dir);  // the commit point
    fsync_dir(run_dir);
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    auto prev = find_checkpoint(run_dir);
    MG_THROW("[checkpoint] could not write checkpoint-{} in {}: {}. {}", step, run_dir, e.what(),
             prev ? mg::format("The previous checkpoint (step {}) is intact.", prev->step)
                  : std::string("No earlier checkpoint exists."));
  }
  crash_point("checkpoint-renamed");
  fs::remove_all(aside, ec);
  publish_checkpoint(run_dir, CheckpointRef{step, final_dir, false});  // removes the older checkpoints first
  crash_point("checkpoint-published");
  fs::remove(run_dir + "/" + kStateFile, ec);  // a legacy root trainer_state is superseded now
  fsync_dir(run_dir);
  crash_point("checkpoint-done");
}

std::vector<std::pair<std::string, std::string>> set_aside_unusable_checkpoints(const std::string& run_dir,
                                                                                int64_t newest_good) {
  std::vector<std::pair<std::string, std::string>> moved;
  for (const auto& [step, dir] : checkpoint_folders(run_dir)) {
    if (step <= newest_good) continue;
    const std::string aside = dir + ".damaged";
    std::error_code ec;
    fs::remove_all(aside, ec);
    fs::rename(dir, aside, ec);
    MG_CHECK(!ec, "[resume] cannot set the unusable checkpoint {} aside: {}", dir, ec.message());
    moved.emplace_back(dir, aside);
  }
  return moved;
}

void remove_temporaries(const std::string& run_dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(run_dir, ec))
    if (is_temporary(e.path().filename().string())) stale.push_back(e.path());
  for (const auto& p : stale) fs::remove_all(p, ec);
}

void remove_run_files(const std::string& run_dir) {
  const RunFolderContents c = inspect_run_folder(run_dir);
  for (const auto& name : c.run_files) {
    std::error_code ec;
    fs::remove_all(fs::path(run_dir) / name, ec);
    MG_CHECK(!ec, "[train] cannot remove '{}' to replace the run in {}: {}", name, run_dir, ec.message());
  }
  remove_temporaries(run_dir);
  fsync_dir(run_dir);
}

void crash_point(const char* name) {
  // MG_TEST_CRASH_RANK=r: only rank r of a data-parallel run (a dead rank, tests/test_distributed.cpp).
  if (const char* r = std::getenv("MG_TEST_CRASH_RANK"); r && *r && std::atoi(r) != launch_from_environment().rank)
    return;
  static std::map<std::string, int64_t> seen;
  bool counted = false;
  static constexpr std::pair<const char*, int> kHooks[] = {{"MG_TEST_CRASH_AT", SIGKILL},
                                                           {"MG_TEST_INTERRUPT_AT", SIGINT},
                                                           {"MG_TEST_HANGUP_AT", SIGHUP},
                                                           {"MG_TEST_STOP_AT", SIGSTOP}};
  for (const auto& [var, signo] : kHooks) {
    const char* spec = std::getenv(var);
    if (!spec || !*spec) continue;
    const std::string s = spec;
    const auto colon = s.find(':');
    if (s.substr(0, colon) != name) continue;
    if (!counted) ++seen[name], counted = true;
    const int64_t nth = colon == std::string::npos ? 1 : std::atoll(s.c_str() + colon + 1);
    if (seen[name] != nth) continue;
    if (signo == SIGKILL || signo == SIGSTOP)  // to the whole process, not only this thread
      ::kill(::getpid(), signo);
    else
      std::raise(signo);
  }
}

}  // namespace mg
