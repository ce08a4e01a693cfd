// The names of a run folder's files (train/run_folder.h describes the folder), and what a folder holds,
// read without changing anything. Kept here, below the trainer, so that the rule for every file a
// command writes (io/output_file.h) can refuse a run's own files.
#pragma once
#include <cstdint>
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

// "checkpoint-<digits>" -> the step; anything else -> -1.
int64_t checkpoint_step(const std::string& name);

// True for the names of a run's files at the root of its folder (model, config, trainer state, run.json,
// metrics, curves).
bool is_root_run_file(const std::string& name);

// True for a name the trainer gives a file or folder while writing it: one of a run's own names (a root
// file, checkpoint.json, `checkpoint-<step>`, `checkpoint-<step>.old`) followed by `.tmp.<pid>`. Only such
// names are removed as an interrupted writer's leftovers; a user's `notes.tmp.md` is not one.
bool is_temporary(const std::string& name);

// "checkpoint-<step>.damaged": a checkpoint that resume set aside.
bool is_damaged_checkpoint(const std::string& name);

// What a folder holds, read without changing anything. A folder holds a run when it has run.json, a
// checkpoint folder (`checkpoint-<step>`, or one set aside as `.damaged`) or, the older layout, a
// trainer_state.safetensors at its root; then the root files of a run (model, config, metrics, curves) are
// the run's too. Without one of those, a config.json or model.safetensors is someone else's file (a
// Hugging Face model folder, a user's config). A checkpoint folder itself (it holds checkpoint.json and a
// trainer state, or is named `checkpoint-<step>` inside a run) is never a run folder: only its trainer
// writes there.
struct RunFolderContents {
  bool exists = false;                   // a directory of that name exists
  bool is_file = false;                  // the name is taken by something that is not a directory
  bool is_checkpoint = false;            // a checkpoint folder of a run, not a run folder
  std::vector<std::string> run_files;    // the names of a run's files present (checkpoint folders too)
  std::vector<std::string> other_files;  // anything else (leftover temporaries and the lock excluded)
  bool holds_run() const { return !run_files.empty(); }
};
RunFolderContents inspect_run_folder(const std::string& dir);

// True when `path` names one of a run's own files: a run file at the root of a folder that holds a run,
// or any file inside a checkpoint folder. Commands that write an output refuse such a path.
bool is_run_file(const std::string& path);

}  // namespace mg
