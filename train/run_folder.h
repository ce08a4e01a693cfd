// The run folder on disk: what a run is made of, the lock that keeps one trainer per folder, and the
// atomic checkpoint.
//
//   run/config.json                 the model's config (Hugging Face names)       } what users load:
//   run/model.safetensors           the newest checkpoint's weights (a hard link)  } from_pretrained(run)
//   run/run.json                    the run's options and the identity of its data (size, CRC-32)
//   run/metrics.jsonl, curves.svg   one JSON object per step; the bpc curves
//   run/checkpoint-<step>/          the newest complete checkpoint:
//        model.safetensors, config.json, trainer_state.safetensors (AdamW moments, step, data generator,
//        options) and checkpoint.json (the step and every file's size and CRC-32)
//   run/.lock                       held (flock) by the trainer that writes the folder
//
// A checkpoint is written into `checkpoint-<step>.tmp.<pid>/`, every file fsync'ed, then the folder is
// renamed to `checkpoint-<step>/`: that one rename is the commit point, so a folder with that name is
// complete by construction, and checkpoint.json lets a reader verify it. Only then is the root
// model.safetensors switched to the new weights (link + rename, atomic) and the older checkpoint
// removed. A crash at any moment leaves at least one complete checkpoint (after the first), and
// find_checkpoint() picks the newest one that verifies. Runs written before this layout (model and
// trainer_state.safetensors at the root, no checkpoint folder) still resume.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mg {

inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kStateFile = "trainer_state.safetensors";
inline constexpr const char* kRunFile = "run.json";
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kCurvesFile = "curves.svg";
inline constexpr const char* kManifestFile = "checkpoint.json";
inline constexpr const char* kLockFile = ".lock";

// What a folder holds, read without changing anything.
struct RunFolderContents {
  bool exists = false;                  // a directory of that name exists
  bool is_file = false;                 // the name is taken by something that is not a directory
  std::vector<std::string> run_files;   // the names of a run's files present (checkpoint folders too)
  std::vector<std::string> other_files; // anything else (leftover temporaries and the lock excluded)
  bool holds_run() const { return !run_files.empty(); }
};
RunFolderContents inspect_run_folder(const std::string& dir);

// Holds an exclusive flock on `dir/.lock` for its lifetime (the folder must exist). Throws mg::Error
// naming the folder and the other trainer's pid when another process holds it. The kernel drops the
// lock when the process dies, so a killed trainer never leaves a stale lock.
class RunLock {
 public:
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

struct CheckpointRef {
  int64_t step = 0;
  std::string dir;      // the folder that holds model.safetensors and trainer_state.safetensors
  bool legacy = false;  // the older layout: both files at the root of the run folder
};

// The newest checkpoint of `run_dir` that verifies (its manifest, every file's size and CRC-32, the step
// in both safetensors files), or nullopt when there is none. A newer checkpoint that does not verify is
// skipped and described in `*skipped` (when given).
std::optional<CheckpointRef> find_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped = nullptr);

// Writes checkpoint `step` atomically as described above: `write_files(tmp_dir)` writes the files
// (each with write_file_atomic or save_safetensors) into a fresh temporary folder; then the manifest,
// the rename, the root model and config switched to the new files, and older checkpoints (and a
// legacy root trainer_state) removed. On failure (a full disk) the temporary folder is removed and
// mg::Error says that the previous checkpoint is intact. Call only while holding the RunLock.
void write_checkpoint(const std::string& run_dir, int64_t step,
                      const std::function<void(const std::string& tmp_dir)>& write_files);

// Renames every checkpoint folder newer than `newest_good` (all of them when -1), which find_checkpoint()
// skipped as unusable, to `checkpoint-<step>.damaged`, so that a new checkpoint can take its name and
// nothing is deleted. Call only while holding the RunLock.
void set_aside_unusable_checkpoints(const std::string& run_dir, int64_t newest_good);

// Makes the root model.safetensors and config.json those of `ckpt` (after a crash between a
// checkpoint's rename and the root switch). A no-op when they already are.
void publish_checkpoint(const std::string& run_dir, const CheckpointRef& ckpt);

// Removes what an interrupted writer left: `*.tmp.<pid>` files and `checkpoint-*.tmp.<pid>` folders.
// Call only while holding the RunLock (then no other process is writing them).
void remove_temporaries(const std::string& run_dir);

// Removes a run's own files (the ones inspect_run_folder() lists as run_files), for `train --overwrite`.
// Anything else in the folder is left alone.
void remove_run_files(const std::string& run_dir);

// True when `path` names one of a run's own files: a run file at the root of a folder that holds a run,
// or any file inside a checkpoint folder. Commands that write an output refuse such a path.
bool is_run_file(const std::string& path);

// "a, b, c and 2 more": the first `max` names, for messages.
std::string join_names(const std::vector<std::string>& names, size_t max = 4);

// CRC-32 (zlib's, as data/bytes.h's crc32_bytes) of a whole file.
uint32_t crc32_file(const std::string& path);

// A test hook for the crash tests: when the environment variable MG_TEST_CRASH_AT is `name` or
// `name:N`, the process kills itself with SIGKILL at the first (or N-th) call with that name;
// MG_TEST_INTERRUPT_AT does the same with a SIGINT (as Ctrl-C). The trainer calls it between the
// writes of a checkpoint and before each phase ("step": after each training step, on every rank).
// With MG_TEST_CRASH_RANK=r only rank r of a data-parallel run does. Without the variables it does nothing.
void crash_point(const char* name);

}  // namespace mg
