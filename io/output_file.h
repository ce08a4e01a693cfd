// The one rule for every file a command writes at a path the user names (`logits --out`, `graph --out`,
// `train --profile`), checked before any work so that a refused output costs nothing:
//   - a path that names nothing yet, or a regular file, is written atomically (io/atomic_file.h);
//   - a character device (/dev/null, /dev/full, a terminal) is written into, never replaced
//     (write_file_atomic writes through to it without a rename; a write error is an error);
//   - a directory, a FIFO, a socket or a block device is refused;
//   - a file the command reads, or the training data of the run it works on (compared by device and
//     inode, so also through links and other names), is refused;
//   - a run folder's own files (io/run_layout.h: model, config, metrics, checkpoints ...) are refused,
//     also those of the folder the command is about to make a run of;
//   - any other existing regular file is replaced only when it is empty or an earlier output of the same
//     kind (a DOT graph, an SVG, a logits file, a Chrome trace: told by its first bytes), so that a
//     mistyped --out never replaces a user's data, notes or another tool's file.
// Errors name the command, the option and the path, and say what would be valid.
#pragma once
#include <string>
#include <vector>

namespace mg {

// What a command writes at the path: an existing file is replaced only when it starts as this kind does.
enum class OutputKind { Dot, Svg, Logits, Trace };

struct OutputCheck {
  std::string command;             // "logits": the message's prefix
  std::string option;              // "--out": the option that named the path
  std::vector<std::string> reads;  // the files the command reads
  std::string run_dir;             // a folder the command writes a run into (empty: none)
  std::string run_data;            // the training data of the run the command works on (empty: none)
  OutputKind kind;                 // what the command writes there
};

// Throws mg::Error when `path` may not be written under the rule above.
void check_output_path(const std::string& path, const OutputCheck& check);

// Throws mg::Error naming the command and option when `path` is not valid UTF-8 (a run records its paths in
// JSON, which holds UTF-8 text only).
void check_utf8_path(const std::string& path, const std::string& command, const std::string& option);

// "a directory", "a FIFO (named pipe)", "a regular file" ...: what a stat'ed path is, for messages.
std::string file_kind(const std::string& path);

}  // namespace mg
