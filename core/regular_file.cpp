#include "core/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace mg {

const char* file_kind_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

RegularOpen open_regular(const std::string& path) {
  RegularOpen r;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    r.stat_errno = errno;
    return r;
  }
  if (!S_ISREG(st.st_mode)) {
    r.mode = st.st_mode;
    return r;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    r.open_errno = errno;
    return r;
  }
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    r.mode = st.st_mode;
    return r;
  }
  r.fd = fd;
  return r;
}

RegularFile::RegularFile(const std::string& path, const std::string& op) : path_(path), op_(op) {
  const RegularOpen r = open_regular(path);
  if (r.stat_errno || r.open_errno)
    MG_THROW("{} cannot read '{}': {}", op, path, std::strerror(r.stat_errno ? r.stat_errno : r.open_errno));
  MG_CHECK(r.fd >= 0, "{} '{}' is {}, not a regular file: only a regular file can be read", op, path,
           file_kind_name(r.mode));
  fd_ = r.fd;
  struct stat st {};
  ::fstat(fd_, &st);
  size_ = (uint64_t)st.st_size;
}

RegularFile::~RegularFile() { ::close(fd_); }

bool RegularFile::read_at(uint64_t offset, void* dst, size_t n) const {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, p, n, (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got, offset += (uint64_t)got, n -= (size_t)got;
  }
  return true;
}

std::string RegularFile::read_all() const {
  std::string text(size_, '\0');
  MG_CHECK(read_at(0, text.data(), text.size()), "{} reading '{}' failed (the file was cut short while reading?)", op_,
           path_);
  return text;
}

}  // namespace mg
