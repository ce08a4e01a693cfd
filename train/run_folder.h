// The run folder on disk: what a run is made of, the lock that keeps one trainer per folder, and the
// atomic checkpoint.
//
//   run/config.json                 the model's config (Hugging Face names)       } what users load:
//   run/model.safetensors           a copy of the newest checkpoint's weights      } from_pretrained(run)
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
// model.safetensors and config.json replaced by copies of the new ones (a file of their own, never a
// hard link into the checkpoint, written to a temporary name and renamed: atomic) and the older
// checkpoint removed. A crash at any moment leaves at least one complete checkpoint (after the first), and
// find_checkpoint() picks the newest one that verifies. Runs written before this layout (model and
// trainer_state.safetensors at the root, no checkpoint folder) still resume.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/run_layout.h"

namespace mg {

// The file names, inspect_run_folder() and is_run_file() are in io/run_layout.h.

// Holds an exclusive flock on `dir/.lock` and on `dir` for its lifetime (the folder must exist). Throws mg::Error
// naming the folder and the other trainer's pid when another process holds it. The kernel drops the
// lock when the process dies, so a killed trainer never leaves a stale lock.
class RunLock {
 public:
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  // nullopt while the locked folder is still at `dir`. When it was moved or renamed: where it is now;
  // when it was removed (or `dir` now names another folder and the locked one cannot be found): "". A
  // trainer writes by path, so it asks before each checkpoint: writing on would make a new folder at
  // `dir` with no lock and no run record beside the moved run.
  std::optional<std::string> moved_to() const;

 private:
  std::string dir_;
  int fd_ = -1;      // DIR/.lock, which names the holder's pid
  int dir_fd_ = -1;  // DIR itself: holds even when .lock is removed by hand
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
// Returns each folder set aside and its new name.
std::vector<std::pair<std::string, std::string>> set_aside_unusable_checkpoints(const std::string& run_dir,
                                                                                int64_t newest_good);

// Empty when the file `path` has the size and CRC-32 that the manifest of `ckpt` records for its file
// `name` (or the manifest lists no such file), else what differs, naming both files.
std::string compare_with_checkpoint(const CheckpointRef& ckpt, const std::string& name, const std::string& path);

// Removes the checkpoints older than `ckpt` (superseded), then makes the root model.safetensors and
// config.json copies of those of `ckpt` (after a crash between a checkpoint's rename and the root switch,
// or a root file written over). The copies are a no-op when they already hold the same bytes as files of
// their own; a hard link (runs of earlier builds) is replaced by a copy. A copy that fails (a full disk)
// is an error saying that the checkpoint is saved and how to continue.
void publish_checkpoint(const std::string& run_dir, const CheckpointRef& ckpt);

// Removes what an interrupted trainer left: its own names followed by `.tmp.<pid>` (io/run_layout.h,
// is_temporary): root run files and `checkpoint-<step>[.old].tmp.<pid>` folders.
// Call only while holding the RunLock (then no other process is writing them).
void remove_temporaries(const std::string& run_dir);

// Removes a run's own files (the ones inspect_run_folder() lists as run_files), for `train --overwrite`.
// Anything else in the folder is left alone.
void remove_run_files(const std::string& run_dir);

// "a, b, c and 2 more": the first `max` names, for messages.
std::string join_names(const std::vector<std::string>& names, size_t max = 4);

// CRC-32 (zlib's, as data/bytes.h's crc32_bytes) of a whole file.
uint32_t crc32_file(const std::string& path);

// A test hook for the crash tests: when the environment variable MG_TEST_CRASH_AT is `name` or
// `name:N`, the process kills itself with SIGKILL at the first (or N-th) call with that name;
// MG_TEST_INTERRUPT_AT does the same with a SIGINT (as Ctrl-C), MG_TEST_HANGUP_AT with a SIGHUP (a closed
// terminal), MG_TEST_STOP_AT with a SIGSTOP (the test acts on the folder, then sends SIGCONT). The trainer
// calls it between the
// writes of a checkpoint and before each phase ("step": after each training step, on every rank).
// With MG_TEST_CRASH_RANK=r only rank r of a data-parallel run does. Without the variables it does nothing.
void crash_point(const char* name);

}  // namespace mg
