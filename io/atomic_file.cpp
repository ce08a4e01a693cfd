#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace mg {

namespace {

// fsync through a fresh descriptor: Linux flushes the inode's dirty pages whichever fd asks.
void fsync_path(const std::string& p, bool directory, const std::string& target) {
  int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) {
    if (directory) return;  // best effort: some filesystems do not let a directory be opened
    MG_THROW("[write_file_atomic] cannot reopen '{}' to sync it while writing '{}': {}", p, target,
             std::strerror(errno));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && !directory)
    MG_THROW("[write_file_atomic] fsync of '{}' failed while writing '{}': {}", p, target, std::strerror(err));
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  MG_CHECK(!path.empty(), "[write_file_atomic] empty path");
  const std::string tmp = path + ".tmp." + std::to_string((long long)::getpid());
  try {
    {
      std::vector<char> buf(1 << 20);  // declared first: it must outlive the stream's destructor
      std::ofstream out;
      out.rdbuf()->pubsetbuf(buf.data(), (std::streamsize)buf.size());
      out.open(tmp, std::ios::binary | std::ios::trunc);
      MG_CHECK(out.is_open(), "[write_file_atomic] cannot create '{}' (for '{}'): {}", tmp, path,
               std::strerror(errno));
      write(out);
      out.flush();
      MG_CHECK(out.good(), "[write_file_atomic] writing '{}' (for '{}') failed: {}", tmp, path, std::strerror(errno));
      out.close();
      MG_CHECK(!out.fail(), "[write_file_atomic] closing '{}' (for '{}') failed: {}", tmp, path,
               std::strerror(errno));
    }
    fsync_path(tmp, false, path);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      MG_THROW("[write_file_atomic] cannot rename '{}' to '{}': {}", tmp, path, std::strerror(errno));
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  fsync_path(parent.empty() ? std::string(".") : parent.string(), true, path);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(bytes.data(), (std::streamsize)bytes.size()); });
}

}  // namespace mg
