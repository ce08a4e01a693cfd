// Atomic file replacement: the content goes to `path + ".tmp.<pid>"`, is flushed and fsync'ed, and
// is then renamed over `path` (rename is atomic on POSIX filesystems), followed by an fsync of the
// directory. A crash, a Ctrl-C or a throwing writer therefore never leaves a half-written `path`:
// readers see either the old file or the complete new one. On any failure the temporary is removed
// and an mg::Error (or the writer's own exception) propagates.
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

}  // namespace mg
