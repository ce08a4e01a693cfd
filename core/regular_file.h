// Files that the library reads (data, configs, run records, safetensors) are regular files only: a FIFO
// with no writer would block an open for reading forever, and a device may never end. A path is checked
// before it is opened and again on the descriptor, which is opened non-blocking, so that a FIFO swapped in
// between cannot block either.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace mg {

// What a stat mode is, for messages: "a regular file", "a directory", "a FIFO (named pipe)", ...
const char* file_kind_name(mode_t mode);

// What open_regular() found: the open descriptor, or why there is none.
struct RegularOpen {
  int fd = -1;
  int stat_errno = 0;  // stat failed (ENOENT: the path does not exist)
  int open_errno = 0;  // the open failed
  mode_t mode = 0;     // the path is not a regular file: its mode (file_kind_name)
};

// Opens `path` for reading when it is a regular file. Never blocks, never throws.
RegularOpen open_regular(const std::string& path);

// A regular file open for reading. `op` starts its messages ("[load]").
class RegularFile {
 public:
  // Throws mg::Error naming `path` when it cannot be opened or is not a regular file.
  RegularFile(const std::string& path, const std::string& op);
  ~RegularFile();
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  uint64_t size() const { return size_; }
  // Reads `n` bytes at `offset` into `dst`; false when the file ends before them or the read fails.
  bool read_at(uint64_t offset, void* dst, size_t n) const;
  // The whole file (throws when a read fails).
  std::string read_all() const;

 private:
  std::string path_, op_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace mg
