#include "data/bytes.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/memory_limit.h"
#include "core/regular_file.h"

namespace mg {
namespace {

// zlib counts in uInt (32 bits); larger buffers are fed in pieces of at most this.
constexpr size_t kZChunk = size_t(1) << 30;

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }

// The one rule for data files (core/regular_file.h): a regular file, opened without blocking. Returns the
// open descriptor.
int open_regular_file(const std::string& path, const std::string& option) {
  const std::string name = option.empty() ? std::string("a data file") : option;
  MG_CHECK(!path.empty(), "[data] {} is an empty path: name a byte file (raw, gzip or zip)", name);
  const RegularOpen r = open_regular(path);
  struct stat link {};
  if (r.stat_errno == ENOENT && ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    std::error_code ec;
    MG_THROW("[data] {} '{}' is a symbolic link to '{}', which does not exist", name, path,
             std::filesystem::read_symlink(path, ec).string());
  }
  if (r.stat_errno == ENOENT && !option.empty() && option != "--data")  // logits --input: no training hint
    MG_THROW("[data] {} '{}' does not exist", option, path);
  if (r.stat_errno == ENOENT)
    MG_THROW(
        "[data] '{}' does not exist. To train on enwik8, download it into the current folder with:\n    {}\n"
        "(or pass any text file: raw, gzip or zip)",
        path, kEnwik8DownloadCommand);
  if (r.stat_errno) MG_THROW("[data] cannot read '{}': {}", path, std::strerror(r.stat_errno));
  if (r.open_errno) MG_THROW("[data] cannot open '{}': {}", path, std::strerror(r.open_errno));
  MG_CHECK(r.fd >= 0, "[data] '{}' is {}: {} must be a regular file (raw bytes, gzip or zip), e.g. enwik8.zip", path,
           file_kind_name(r.mode), name);
  return r.fd;
}

std::vector<uint8_t> read_whole_file(const std::string& path, const std::string& option) {
  const int fd = open_regular_file(path, option);
  std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* f) {
    ::close(*f);
    delete f;
  });
  struct stat st {};
  ::fstat(fd, &st);
  const uint64_t limit = memory_limit_bytes();
  check_fits_in_memory((double)st.st_size, "data", mg::format("'{}' ({} bytes)", path, (uint64_t)st.st_size),
                       "; enwik8 is 100 MB");
  std::vector<uint8_t> out((size_t)st.st_size + 1);  // one byte more to see whether the file grew
  size_t n = 0;
  for (;;) {
    if (n == out.size()) {
      MG_CHECK(out.size() < limit, "[data] '{}' grew past this machine's memory ({}) while being read", path,
               format_bytes((double)limit));
      out.resize(std::min<size_t>(out.size() * 2, limit));
    }
    const ssize_t got = ::read(fd, out.data() + n, out.size() - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) MG_THROW("[data] error while reading '{}': {}", path, std::strerror(errno));
    if (got == 0) break;
    n += (size_t)got;
  }
  out.resize(n);
  return out;
}

const char* zip_method_name(int method) {
  switch (method) {
    case 1:
      return "shrink";
    case 6:
      return "implode";
    case 9:
      return "deflate64";
    case 12:
      return "bzip2";
    case 14:
      return "lzma";
    case 93:
      return "zstd";
    case 95:
      return "xz";
    case 99:
      return "AES encryption";
    default:
      return "unknown";
  }
}

struct ZipEntry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local_offset = 0;
};

// The central directory's entries. Zip64 sizes and offsets are followed; multi-disk archives are not.
std::vector<ZipEntry> read_central_directory(const std::vector<uint8_t>& z, const std::string& path) {
  const size_t n = z.size();
  const uint8_t* b = z.data();
  // The end-of-central-directory record (22 bytes plus a comment of up to 65535) closes the archive.
  size_t eocd = SIZE_MAX;
  if (n >= 22) {
    size_t lowest = n - 22 > 65535 ? n - 22 - 65535 : 0;
    for (size_t off = n - 22 + 1; off-- > lowest;) {
      if (le32(b + off) == 0x06054b50 && off + 22 + le16(b + off + 20) == n) {
        eocd = off;
        break;
      }
    }
  }
  MG_CHECK(eocd != SIZE_MAX,
           "[data] '{}' is a truncated or corrupt zip: it has no end-of-central-directory record ({} bytes; "
           "a partial download? enwik8.zip is 36,445,475 bytes)",
           path, n);
  uint32_t disk = le16(b + eocd + 4), cd_disk = le16(b + eocd + 6);
  uint64_t count = le16(b + eocd + 10);
  uint64_t cd_size = le32(b + eocd + 12), cd_offset = le32(b + eocd + 16);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {  // zip64
    MG_CHECK(eocd >= 20 && le32(b + eocd - 20) == 0x07064b50,
             "[data] '{}' is a corrupt zip: zip64 sizes without a zip64 end-of-central-directory locator", path);
    uint64_t rec = le64(b + eocd - 20 + 8);
    MG_CHECK(rec <= n && n - rec >= 56 && le32(b + rec) == 0x06064b50,
             "[data] '{}' is a corrupt zip: bad zip64 end-of-central-directory record", path);
    disk = le32(b + rec + 16), cd_disk = le32(b + rec + 20);
    count = le64(b + rec + 32), cd_size = le64(b + rec + 40), cd_offset = le64(b + rec + 48);
  }
  MG_CHECK(disk == 0 && cd_disk == 0, "[data] '{}' is part of a multi-disk (spanned) zip, which is not supported",
           path);
  MG_CHECK(cd_offset <= n && cd_size <= n - cd_offset,
           "[data] '{}' is a truncated or corrupt zip: its central directory ({} bytes at offset {}) lies past the "
           "end of the file ({} bytes)",
           path, cd_size, cd_offset, n);
  std::vector<ZipEntry> entries;
  size_t p = (size_t)cd_offset, end = (size_t)(cd_offset + cd_size);
  for (uint64_t i = 0; i < count; ++i) {
    MG_CHECK(end - p >= 46 && le32(b + p) == 0x02014b50,
             "[data] '{}' is a corrupt zip: central directory entry {} of {} is damaged (offset {})", path, i, count,
             p);
    ZipEntry e;
    e.flags = le16(b + p + 8), e.method = le16(b + p + 10), e.crc = le32(b + p + 16);
    e.csize = le32(b + p + 20), e.usize = le32(b + p + 24);
    size_t name_len = le16(b + p + 28), extra_len = le16(b + p + 30), comment_len = le16(b + p + 32);
    e.local_offset = le32(b + p + 42);
    MG_CHECK(end - p - 46 >= name_len + extra_len + comment_len,
             "[data] '{}' is a corrupt zip: central directory entry {} of {} runs past the directory", path, i, count);
    e.name.assign((const char*)b + p + 46, name_len);
    // Zip64 extra field (id 1): the 64-bit values of the fields that hold 0xFFFFFFFF, in this order.
    const uint8_t* x = b + p + 46 + name_len;
    for (size_t q = 0; q + 4 <= extra_len;) {
      uint16_t id = le16(x + q), len = le16(x + q + 2);
      if (q + 4 + len > extra_len) break;
      if (id == 1) {
        const uint8_t* v = x + q + 4;
        size_t left = len;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          MG_CHECK(left >= 8, "[data] '{}' is a corrupt zip: short zip64 field for member '{}'", path, e.name);
          field = le64(v), v += 8, left -= 8;
        };
        take(e.usize), take(e.csize), take(e.local_offset);
      }
      q += 4 + len;
    }
    entries.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

// Raw deflate `in` into exactly `out.size()` bytes.
void inflate_raw(const uint8_t* in, size_t in_len, std::vector<uint8_t>& out, const std::string& what) {
  z_stream zs{};
  MG_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, "[data] zlib could not start inflating {}", what);
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, &inflateEnd);
  uint8_t* o = out.data();
  size_t out_left = out.size();
  uint8_t probe = 0;  // a one-byte buffer to find out whether the data inflates to more than declared
  for (;;) {
    uInt ai = (uInt)std::min(in_len, kZChunk), ao = (uInt)std::min(out_left, kZChunk);
    zs.next_in = const_cast<Bytef*>(in), zs.avail_in = ai;
    bool probing = ao == 0;
    zs.next_out = probing ? &probe : o, zs.avail_out = probing ? 1 : ao;
    int ret = inflate(&zs, Z_NO_FLUSH);
    size_t used = ai - zs.avail_in, made = (probing ? 1 : ao) - zs.avail_out;
    in += used, in_len -= used;
    MG_CHECK(!(probing && made > 0), "[data] {} inflates to more than the {} bytes the zip declares (corrupt zip)",
             what, out.size());
    if (!probing) o += made, out_left -= made;
    if (ret == Z_STREAM_END) break;
    if (ret == Z_DATA_ERROR)
      MG_THROW("[data] {} has corrupt deflate data ({}) after {} of {} bytes", what, zs.msg ? zs.msg : "invalid data",
               out.size() - out_left, out.size());
    MG_CHECK(ret == Z_OK || ret == Z_BUF_ERROR, "[data] zlib failed ({}) while inflating {}", ret, what);
    if (used == 0 && made == 0)  // no progress possible: the compressed data ran out
      MG_THROW("[data] {} is truncated: its deflate data ends after {} of {} bytes", what, out.size() - out_left,
               out.size());
  }
  MG_CHECK(out_left == 0, "[data] {} inflates to {} bytes but the zip declares {} (corrupt zip)", what,
           out.size() - out_left, out.size());
}

}  // namespace

std::vector<uint8_t> unzip_member(const std::vector<uint8_t>& z, const std::string& path, const std::string& member) {
  std::vector<ZipEntry> entries = read_central_directory(z, path);
  std::vector<const ZipEntry*> files;
  for (const ZipEntry& e : entries)
    if (e.name.empty() || e.name.back() != '/') files.push_back(&e);
  MG_CHECK(!files.empty(), "[data] '{}' is a zip with no files in it", path);
  const ZipEntry* pick = nullptr;
  for (const ZipEntry* e : files)
    if (e->name == member) pick = e;
  if (!pick && files.size() == 1) pick = files[0];
  if (!pick) {
    std::string names;
    for (size_t i = 0; i < files.size() && i < 10; ++i) names += (i ? ", '" : "'") + files[i]->name + "'";
    if (files.size() > 10) names += ", ...";
    MG_THROW("[data] '{}' holds {} files and none is named '{}' ({}); put one file in the zip, or name it '{}'", path,
             files.size(), member, names, member);
  }
  const ZipEntry& e = *pick;
  const std::string what = mg::format("member '{}' of '{}'", e.name, path);
  MG_CHECK(!(e.flags & 1), "[data] {} is encrypted, which is not supported", what);
  MG_CHECK(e.method == 0 || e.method == 8,
           "[data] {} uses compression method {} ({}); only stored (0) and deflate (8) are supported — "
           "re-zip it with plain deflate, or gzip it",
           what, e.method, zip_method_name(e.method));

  const size_t n = z.size();
  const uint8_t* b = z.data();
  MG_CHECK(e.local_offset <= n && n - e.local_offset >= 30 && le32(b + e.local_offset) == 0x04034b50,
           "[data] '{}' is a corrupt zip: no local file header for member '{}' at offset {}", path, e.name,
           e.local_offset);
  size_t data = (size_t)e.local_offset + 30 + le16(b + e.local_offset + 26) + le16(b + e.local_offset + 28);
  MG_CHECK(data <= n && e.csize <= n - data,
           "[data] '{}' is a truncated or corrupt zip: member '{}' needs {} bytes of data at offset {} but the "
           "file has {} bytes",
           path, e.name, e.csize, data, n);
  MG_CHECK(e.usize > 0, "[data] {} is empty (0 bytes)", what);
  // Deflate expands at most 1032:1, so a larger declared size is damage (and must not be allocated).
  MG_CHECK(e.usize / 1032 <= e.csize + 1,
           "[data] {} declares {} bytes from {} compressed bytes, which deflate cannot produce (corrupt zip)", what,
           e.usize, e.csize);

  check_fits_in_memory((double)e.usize, "data", mg::format("{} ({} bytes decoded)", what, e.usize),
                       "; enwik8 is 100 MB");
  std::vector<uint8_t> out;
  if (e.method == 0) {
    MG_CHECK(e.csize == e.usize, "[data] {} is stored uncompressed but its sizes differ ({} vs {}): corrupt zip", what,
             e.csize, e.usize);
    out.assign(b + data, b + data + e.usize);
  } else {
    out.resize((size_t)e.usize);
    inflate_raw(b + data, (size_t)e.csize, out, what);
  }
  uint32_t crc = crc32_bytes(out.data(), out.size());
  MG_CHECK(crc == e.crc,
           "[data] CRC-32 mismatch in {}: the zip records {:08x} but the data gives {:08x} (the file is corrupt)", what,
           e.crc, crc);
  return out;
}

std::vector<uint8_t> gunzip_bytes(const std::vector<uint8_t>& gz, const std::string& path) {
  z_stream zs{};
  MG_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "[data] zlib could not start reading gzip file '{}'", path);
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, &inflateEnd);
  std::vector<uint8_t> out;
  // The trailer's ISIZE (length mod 2^32) is a first guess of the size; it is only trusted within 16x of
  // the compressed size, so a damaged trailer cannot make this reserve gigabytes.
  if (gz.size() >= 18) out.reserve(std::min<size_t>(le32(gz.data() + gz.size() - 4), gz.size() * 16));
  const uint8_t* in = gz.data();
  size_t in_len = gz.size();
  const uint64_t limit = memory_limit_bytes();
  for (;;) {
    // The decoded size is known only at the end: a gzip bomb is stopped when it passes the memory bound.
    MG_CHECK(out.size() < limit,
             "[data] gzip file '{}' decompresses to more than this machine's memory ({}): refused before it is "
             "all decoded (enwik8 is 100 MB)",
             path, format_bytes((double)limit));
    const size_t kOut = std::clamp<size_t>(out.capacity() - out.size(), size_t(1) << 16, size_t(1) << 24);
    size_t old = out.size();
    out.resize(old + kOut);
    uInt ai = (uInt)std::min(in_len, kZChunk);
    zs.next_in = const_cast<Bytef*>(in), zs.avail_in = ai;
    zs.next_out = out.data() + old, zs.avail_out = (uInt)kOut;
    int ret = inflate(&zs, Z_NO_FLUSH);
    size_t used = ai - zs.avail_in, made = kOut - zs.avail_out;
    in += used, in_len -= used;
    out.resize(old + made);
    if (ret == Z_STREAM_END) {
      if (in_len == 0) break;
      if (in_len >= 2 && in[0] == 0x1f && in[1] == 0x8b) {  // another gzip member follows: read it too
        inflateReset(&zs);
        continue;
      }
      MG_CHECK(std::all_of(in, in + in_len, [](uint8_t c) { return c == 0; }),
               "[data] '{}' has {} bytes of trailing garbage after its gzip data (corrupt gzip)", path, in_len);
      break;
    }
    if (ret == Z_DATA_ERROR) {
      std::string msg = zs.msg ? zs.msg : "invalid data";
      if (msg == "incorrect data check")
        MG_THROW(
            "[data] CRC-32 mismatch in gzip file '{}': the data does not match the recorded checksum (the "
            "file is corrupt)",
            path);
      MG_THROW("[data] '{}' is a corrupt gzip file ({}) after {} bytes of output", path, msg, out.size());
    }
    MG_CHECK(ret == Z_OK || ret == Z_BUF_ERROR, "[data] zlib failed ({}) while reading gzip file '{}'", ret, path);
    if (used == 0 && made == 0)
      MG_THROW(
          "[data] '{}' is a truncated gzip file: it ends before the end of its compressed stream (after {} "
          "bytes of output)",
          path, out.size());
  }
  MG_CHECK(!out.empty(), "[data] gzip file '{}' decompresses to 0 bytes (empty)", path);
  return out;
}

uint32_t crc32_bytes(const void* data, size_t n) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const size_t k = std::min(n, kZChunk);
    crc = crc32(crc, p, (uInt)k);
    p += k, n -= k;
  }
  return (uint32_t)crc;
}

std::vector<uint8_t> read_byte_file(const std::string& path, const std::string& option) {
  try {
    return decode_byte_file(read_whole_file(path, option), path);
  } catch (const std::bad_alloc&) {  // under the bound, but the memory was not there
    MG_THROW("[data] ran out of memory while reading and decoding '{}' (this machine's memory: {})", path,
             format_bytes((double)memory_limit_bytes()));
  }
}

namespace {

bool ends_with_nocase(const std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower((unsigned char)s[s.size() - suffix.size() + i]) != suffix[i]) return false;
  return true;
}

// "50 4b 03 04": the first (up to 4) bytes, for messages.
std::string first_bytes_hex(const std::vector<uint8_t>& raw) {
  std::string out;
  for (size_t i = 0; i < raw.size() && i < 4; ++i) out += mg::format("{}{:02x}", i ? " " : "", raw[i]);
  return out;
}

}  // namespace

std::vector<uint8_t> decode_byte_file(std::vector<uint8_t> raw, const std::string& path) {
  MG_CHECK(!raw.empty(), "[data] '{}' is empty (0 bytes); a data file needs at least one window of bytes", path);
  const bool zip_magic = raw.size() >= 4 && raw[0] == 'P' && raw[1] == 'K' &&
                         ((raw[2] == 3 && raw[3] == 4) || (raw[2] == 5 && raw[3] == 6));  // 5 6: an empty zip
  const bool gzip_magic = raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
  // A name that promises an archive must be kept: a damaged archive is never read as raw bytes.
  if (ends_with_nocase(path, ".zip") && !zip_magic)
    MG_THROW(
        "[data] '{}' is named .zip but does not start with a zip signature (PK\\x03\\x04); its first bytes are {}: the "
        "file is damaged or not a zip",
        path, first_bytes_hex(raw));
  if (ends_with_nocase(path, ".gz") && !gzip_magic)
    MG_THROW(
        "[data] '{}' is named .gz but does not start with the gzip signature (\\x1f\\x8b); its first bytes are {}: "
        "the file is damaged or not a gzip file",
        path, first_bytes_hex(raw));
  if (zip_magic) return unzip_member(raw, path);
  if (gzip_magic) return gunzip_bytes(raw, path);
  return raw;
}

}  // namespace mg
