// Atomic file replacement: the content goes to `path + ".tmp.<pid>"`, is flushed and fsync'ed, and
// is then renamed over `path` (rename is atomic on POSIX filesystems), followed by an fsync of the
// directory. A crash, a Ctrl-C or a throwing writer therefore never leaves a half-written `path`:
// readers see either the old file or the complete new one. On any failure the temporary is removed
// and an mg::Error (or the writer's own exception) propagates.
// Only a regular file (or a name that does not exist yet) is replaced. A character device (/dev/null,
// /dev/full) is written into without a rename, so it stays the device, and a write error is an error;
// a directory, a FIFO, a socket or a block device is refused. Commands check the paths users name for
// their outputs first (io/output_file.h).
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace mg {

// Calls `write` with a binary stream on the temporary file, then publishes it as `path`.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

// The same for bytes already in memory.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Makes `dst` a file of its own holding the bytes of `src`: a reflink (FICLONE) where the filesystem
// offers one, else a copy, written to a temporary name, fsync'ed and renamed over `dst` as above. Never
// a hard link, so a later write to `dst` cannot reach `src`.
void copy_file_atomic(const std::string& src, const std::string& dst);

}  // namespace mg
