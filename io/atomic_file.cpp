#include "io/atomic_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
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

// Writes into `path` as it is (a character device such as /dev/null or /dev/full: never replaced).
void write_through(const std::string& path, const std::function<void(std::ostream&)>& write) {
  std::ofstream out(path, std::ios::binary);
  MG_CHECK(out.is_open(), "[write_file_atomic] cannot open '{}': {}", path, std::strerror(errno));
  write(out);
  out.flush();
  MG_CHECK(out.good(), "[write_file_atomic] writing '{}' failed: {}", path, std::strerror(errno));
  out.close();
  MG_CHECK(!out.fail(), "[write_file_atomic] closing '{}' failed: {}", path, std::strerror(errno));
}

// Copies the open file `in` into the open file `out`: a reflink (shared extents, copy on write) where the
// filesystem offers one, else the bytes.
void copy_contents(int in, int out, const std::string& src, const std::string& dst) {
  if (::ioctl(out, FICLONE, in) == 0) return;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    MG_CHECK(n >= 0, "[copy_file_atomic] cannot read '{}': {}", src, std::strerror(errno));
    if (n == 0) return;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out, buf.data() + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR) continue;
      MG_CHECK(w > 0, "[copy_file_atomic] cannot write '{}': {}", dst, std::strerror(errno));
      done += w;
    }
  }
}

// Closes a descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void copy_file_atomic(const std::string& src, const std::string& dst) {
  const std::string tmp = dst + ".tmp." + std::to_string((long long)::getpid());
  try {
    Fd in{::open(src.c_str(), O_RDONLY | O_CLOEXEC)};
    MG_CHECK(in.fd >= 0, "[copy_file_atomic] cannot open '{}': {}", src, std::strerror(errno));
    Fd out{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    MG_CHECK(out.fd >= 0, "[copy_file_atomic] cannot create '{}' (for '{}'): {}", tmp, dst, std::strerror(errno));
    copy_contents(in.fd, out.fd, src, dst);
    MG_CHECK(::fsync(out.fd) == 0, "[copy_file_atomic] fsync of '{}' failed: {}", tmp, std::strerror(errno));
    MG_CHECK(::close(std::exchange(out.fd, -1)) == 0, "[copy_file_atomic] closing '{}' failed: {}", tmp,
             std::strerror(errno));
    MG_CHECK(std::rename(tmp.c_str(), dst.c_str()) == 0, "[copy_file_atomic] cannot rename '{}' to '{}': {}", tmp, dst,
             std::strerror(errno));
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  MG_CHECK(!path.empty(), "[write_file_atomic] empty path");
  // Only a regular file is replaced; a device is written into; a directory, FIFO or socket is refused.
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    MG_CHECK(S_ISCHR(st.st_mode),
             "[write_file_atomic] '{}' is not a regular file (a directory, FIFO, socket or block "
             "device) and is never replaced",
             path);
    return write_through(path, write);
  }
  const std::string tmp = path + ".tmp." + std::to_string((long long)::getpid());
  try {
    {
      std::vector<char> buf(1 << 20);  // declared first: it must outlive the stream's destructor
      std::ofstream out;
      out.rdbuf()->pubsetbuf(buf.data(), (std::streamsize)buf.size());
      out.open(tmp, std::ios::binary | std::ios::trunc);
      MG_CHECK(out.is_open(), "[write_file_atomic] cannot create '{}' (for '{}'): {}", tmp, path, std::strerror(errno));
      write(out);
      out.flush();
      MG_CHECK(out.good(), "[write_file_atomic] writing '{}' (for '{}') failed: {}", tmp, path, std::strerror(errno));
      out.close();
      MG_CHECK(!out.fail(), "[write_file_atomic] closing '{}' (for '{}') failed: {}", tmp, path, std::strerror(errno));
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
