// data/: byte-file readers (raw, gzip, zip), splits, training and evaluation batches.
// Zips and gzips are built here with zlib (deflate + crc32 and hand-written zip headers), written
// to a temporary folder and read back.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "tests/check.h"
#include "tests/temp_dir.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

using mg::test::TempDir;

namespace {

// Text-like bytes (compressible, all byte values present now and then), deterministic in `seed`.
Bytes make_text(size_t n, uint64_t seed = 1) {
  static const char* words[] = {"the ", "mamba ", "state ", "space ", "<page>", "\n", "[[link]] ", "1906 ", "&amp; "};
  mg::Generator g(seed);
  Bytes out;
  while (out.size() < n) {
    uint64_t r = g.next_u64();
    if (r % 50 == 0) {
      out.push_back((uint8_t)(r >> 8));  // an arbitrary byte, 0..255
    } else {
      const char* w = words[(r >> 16) % 9];
      out.insert(out.end(), w, w + std::strlen(w));
    }
  }
  out.resize(n);
  return out;
}

// `in` compressed by zlib at level 6; `window_bits` picks the format (negative: raw deflate; 16 + ...: gzip).
Bytes deflate_with(const Bytes& in, int window_bits) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&zs, (uLong)in.size()) + 64);  // room for a gzip header and trailer
  zs.next_in = const_cast<Bytef*>(in.data()), zs.avail_in = (uInt)in.size();
  zs.next_out = out.data(), zs.avail_out = (uInt)out.size();
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

Bytes raw_deflate(const Bytes& in) { return deflate_with(in, -MAX_WBITS); }
Bytes gzip(const Bytes& in) { return deflate_with(in, 16 + MAX_WBITS); }

uint32_t crc_of(const Bytes& b) { return (uint32_t)crc32(crc32(0, Z_NULL, 0), b.data(), (uInt)b.size()); }

void put16(Bytes& b, uint32_t v) { b.push_back(v & 0xff), b.push_back((v >> 8) & 0xff); }
void put32(Bytes& b, uint32_t v) { put16(b, v & 0xffff), put16(b, v >> 16); }

struct Member {
  std::string name;
  Bytes data;
  int method = 8;  // 0 stored, 8 deflate
};

// Where things landed in a built zip, so tests can damage them.
struct ZipLayout {
  std::vector<size_t> data_offset, data_size, cd_crc_offset;
};

// A zip as `zip -X` writes it: local headers + data, central directory, end record.
Bytes make_zip(const std::vector<Member>& members, ZipLayout* layout = nullptr) {
  Bytes z, cd;
  for (const Member& m : members) {
    Bytes comp = m.method == 8 ? raw_deflate(m.data) : m.data;
    uint32_t crc = crc_of(m.data), local = (uint32_t)z.size();
    put32(z, 0x04034b50), put16(z, 20), put16(z, 0), put16(z, (uint32_t)m.method), put16(z, 0), put16(z, 0x21);
    put32(z, crc), put32(z, (uint32_t)comp.size()), put32(z, (uint32_t)m.data.size());
    put16(z, (uint32_t)m.name.size()), put16(z, 0);
    z.insert(z.end(), m.name.begin(), m.name.end());
    if (layout) layout->data_offset.push_back(z.size()), layout->data_size.push_back(comp.size());
    z.insert(z.end(), comp.begin(), comp.end());

    put32(cd, 0x02014b50), put16(cd, 0x0314), put16(cd, 20), put16(cd, 0), put16(cd, (uint32_t)m.method);
    put16(cd, 0), put16(cd, 0x21);
    if (layout) layout->cd_crc_offset.push_back(cd.size());  // relative to the directory for now
    put32(cd, crc), put32(cd, (uint32_t)comp.size()), put32(cd, (uint32_t)m.data.size());
    put16(cd, (uint32_t)m.name.size()), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
    put32(cd, 0100644u << 16), put32(cd, local);
    cd.insert(cd.end(), m.name.begin(), m.name.end());
  }
  uint32_t cd_offset = (uint32_t)z.size();
  if (layout)
    for (auto& o : layout->cd_crc_offset) o += cd_offset;
  z.insert(z.end(), cd.begin(), cd.end());
  put32(z, 0x06054b50), put16(z, 0), put16(z, 0), put16(z, (uint32_t)members.size()),
      put16(z, (uint32_t)members.size());
  put32(z, (uint32_t)cd.size()), put32(z, cd_offset), put16(z, 0);
  return z;
}

// The error message read_byte_file(path) throws ("" when it does not throw).
std::string read_error(const std::string& path) {
  try {
    mg::read_byte_file(path);
  } catch (const mg::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- a small MD5 (RFC 1321), to check the real enwik8 sample ----
std::string md5_hex(const uint8_t* msg, size_t len) {
  static const uint32_t K[64] = {
      0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
      0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
      0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
      0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
      0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
      0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
      0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
      0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
  static const int R[64] = {7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
                            14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
                            4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
  uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
  Bytes m(msg, msg + len);
  m.push_back(0x80);
  while (m.size() % 64 != 56) m.push_back(0);
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; ++i) m.push_back((uint8_t)(bits >> (8 * i)));
  auto rotl = [](uint32_t x, int c) { return (x << c) | (x >> (32 - c)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[16];
    for (int i = 0; i < 16; ++i)
      w[i] = m[off + 4 * i] | m[off + 4 * i + 1] << 8 | m[off + 4 * i + 2] << 16 | (uint32_t)m[off + 4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      if (i < 16)
        f = (b & c) | (~b & d), g = i;
      else if (i < 32)
        f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
      else if (i < 48)
        f = b ^ c ^ d, g = (3 * i + 5) % 16;
      else
        f = c ^ (b | ~d), g = (7 * i) % 16;
      uint32_t t = d;
      d = c, c = b;
      b = b + rotl(a + f + K[i] + w[g], R[i]);
      a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d;
  }
  std::string hex;
  for (uint32_t v : h)
    for (int i = 0; i < 4; ++i) hex += mg::format("{:02x}", (v >> (8 * i)) & 0xff);
  return hex;
}

std::vector<int64_t> row(const mg::Tensor& t, int64_t r) {
  std::vector<int64_t> all = t.to_vector<int64_t>();
  int64_t l = t.size(1);
  return std::vector<int64_t>(all.begin() + r * l, all.begin() + (r + 1) * l);
}

std::vector<int64_t> slice_of(const Bytes& b, size_t start, size_t len) {
  return std::vector<int64_t>(b.begin() + start, b.begin() + start + len);
}

}  // namespace

TEST_CASE("data: md5 helper matches RFC 1321 vectors") {
  std::string abc = "abc", empty;
  CHECK(md5_hex((const uint8_t*)empty.data(), 0) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex((const uint8_t*)abc.data(), 3) == "900150983cd24fb0d6963f7d28e17f72");
  std::string longer = "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
  CHECK(md5_hex((const uint8_t*)longer.data(), longer.size()) == "57edf4a22be3c955ac49da2e2107b67a");
}

TEST_CASE("data: raw file is read byte for byte, whatever its name (but .zip and .gz)") {
  TempDir dir;
  Bytes text = make_text(70000, 3);
  CHECK(mg::read_byte_file(dir.file("notes.txt", text)) == text);
  CHECK(mg::read_byte_file(dir.file("looks.zip.txt", text)) == text);
  CHECK(mg::read_byte_file(dir.file("gz", text)) == text);
  Bytes every_byte;
  for (int i = 0; i < 256; ++i) every_byte.push_back((uint8_t)(255 - i));
  CHECK(mg::read_byte_file(dir.file("bytes.bin", every_byte)) == every_byte);
  Bytes one = {'x'};
  CHECK(mg::read_byte_file(dir.file("one", one)) == one);
}

TEST_CASE("data: gzip files are detected by magic and inflated") {
  TempDir dir;
  Bytes text = make_text(300000, 4);
  Bytes gz = gzip(text);
  REQUIRE(gz.size() < text.size() / 2);
  CHECK(mg::read_byte_file(dir.file("data.gz", gz)) == text);
  CHECK(mg::read_byte_file(dir.file("no_extension", gz)) == text);

  SUBCASE("written with gzopen/gzwrite") {
    std::string p = (dir.path / "gzw.gz").string();
    gzFile f = gzopen(p.c_str(), "wb9");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, text.data(), (unsigned)text.size()) == (int)text.size());
    REQUIRE(gzclose(f) == Z_OK);
    CHECK(mg::read_byte_file(p) == text);
  }
  SUBCASE("concatenated gzip members are read one after another, as gzip does") {
    Bytes a = make_text(1000, 5), b = make_text(2000, 6);
    Bytes both = gzip(a), gb = gzip(b);
    both.insert(both.end(), gb.begin(), gb.end());
    Bytes expect = a;
    expect.insert(expect.end(), b.begin(), b.end());
    CHECK(mg::read_byte_file(dir.file("two.gz", both)) == expect);
  }
}

TEST_CASE("data: zip members, deflated and stored") {
  TempDir dir;
  Bytes text = make_text(200000, 7), other = make_text(5000, 8);

  SUBCASE("the member named enwik8 is chosen among several") {
    Bytes z = make_zip({{"readme.txt", other, 8}, {"enwik8", text, 8}, {"dir/", {}, 0}});
    CHECK(mg::read_byte_file(dir.file("enwik8.zip", z)) == text);
  }
  SUBCASE("the only member is chosen whatever its name") {
    Bytes z = make_zip({{"corpus.txt", text, 8}});
    CHECK(mg::read_byte_file(dir.file("corpus.zip", z)) == text);
  }
  SUBCASE("stored (method 0) member") {
    Bytes z = make_zip({{"enwik8", text, 0}});
    CHECK(mg::read_byte_file(dir.file("stored.zip", z)) == text);
  }
  SUBCASE("detected by magic, not by name") {
    Bytes z = make_zip({{"enwik8", text, 8}});
    CHECK(mg::read_byte_file(dir.file("enwik8.raw", z)) == text);
  }
  SUBCASE("several members, none named enwik8: an error listing them") {
    Bytes z = make_zip({{"a.txt", text, 8}, {"b.txt", other, 8}});
    std::string msg = read_error(dir.file("two.zip", z));
    CHECK(contains(msg, "two.zip"));
    CHECK(contains(msg, "'a.txt'"));
    CHECK(contains(msg, "'b.txt'"));
    CHECK(contains(msg, "enwik8"));
  }
  SUBCASE("an unsupported compression method is named") {
    ZipLayout lay;
    Bytes z2 = make_zip({{"enwik8", text, 0}}, &lay);
    z2[lay.cd_crc_offset[0] - 6] = 12;  // central directory method -> bzip2
    std::string msg = read_error(dir.file("bz.zip", z2));
    CHECK(contains(msg, "method 12"));
    CHECK(contains(msg, "bzip2"));
  }
}

namespace {

// read_byte_file of `bytes`, saved as `name`, fails with a message that names the file and holds each of
// `parts`.
void check_read_error(const TempDir& dir, const std::string& name, const Bytes& bytes,
                      const std::vector<std::string>& parts) {
  const std::string msg = read_error(dir.file(name, bytes));
  INFO(msg);
  CHECK(contains(msg, name));
  for (const auto& p : parts) CHECK_MESSAGE(contains(msg, p), p);
}

// The same for `bytes` cut short after each of `keeps` bytes (a partial download).
void check_cut_short(const TempDir& dir, const std::string& name, const Bytes& bytes, const std::vector<size_t>& keeps,
                     const std::string& part) {
  for (size_t keep : keeps) {
    CAPTURE(keep);
    check_read_error(dir, name, Bytes(bytes.begin(), bytes.begin() + keep), {part});
  }
}

}  // namespace

TEST_CASE("data: a missing, empty or folder path gives a clear error") {
  TempDir dir;
  // A missing file: the message names it and gives the download command.
  const std::string p = (dir.path / "enwik8.zip").string();
  const std::string msg = read_error(p);
  CHECK(contains(msg, p));
  CHECK(contains(msg, "does not exist"));
  CHECK(contains(msg, "curl -LO http://mattmahoney.net/dc/enwik8.zip"));
  CHECK(contains(read_error(dir.path.string()), "is a directory"));
  check_read_error(dir, "empty.txt", Bytes{}, {"is empty"});
  // A link to nothing says so, rather than "does not exist" beside a name that ls shows.
  const std::string link = (dir.path / "broken.txt").string();
  std::filesystem::create_symlink("nowhere.txt", link);
  const std::string broken = read_error(link);
  CHECK(contains(broken, "'" + link + "' is a symbolic link to 'nowhere.txt', which does not exist"));
  CHECK(!contains(broken, "curl"));
}

TEST_CASE("data: a damaged zip gives a clear error naming the file") {
  TempDir dir;
  const Bytes text = make_text(200000, 9);
  const Bytes z = make_zip({{"enwik8", text, 8}});
  check_cut_short(dir, "cut.zip", z, {z.size() / 2, z.size() - 1, (size_t)4, (size_t)30}, "truncated");
  Bytes badcd = z;
  const size_t eocd = z.size() - 22;
  badcd[eocd + 16] = 0xff, badcd[eocd + 17] = 0xff, badcd[eocd + 18] = 0xff;  // central directory offset
  check_read_error(dir, "badcd.zip", badcd, {"central directory", "past the end"});
  ZipLayout lay;
  Bytes corrupt = make_zip({{"enwik8", text, 8}}, &lay);
  corrupt[lay.data_offset[0]] = 0x07;  // final block of the reserved block type 3
  check_read_error(dir, "corrupt.zip", corrupt, {"member 'enwik8' of", "corrupt deflate data", "invalid block type"});
  Bytes crc = z;  // the same layout as `corrupt`
  crc[lay.cd_crc_offset[0]] ^= 0x01;
  check_read_error(dir, "crc.zip", crc, {"CRC-32 mismatch"});
  ZipLayout stored_lay;
  Bytes stored = make_zip({{"enwik8", text, 0}}, &stored_lay);
  stored[stored_lay.data_offset[0] + 1000] ^= 0x20;  // a stored member whose data changed
  check_read_error(dir, "crc0.zip", stored, {"CRC-32 mismatch"});
  check_read_error(dir, "emptymember.zip", make_zip({{"enwik8", {}, 0}}), {"is empty"});
}

TEST_CASE("data: a deflate stream cut short inside a complete zip is named truncated") {
  TempDir dir;
  const Bytes text = make_text(200000, 9);
  // A zip whose member data ends mid-stream although its headers are consistent.
  Bytes comp = raw_deflate(text);
  Bytes half(comp.begin(), comp.begin() + comp.size() / 2);
  // Store the half stream, then relabel the member as deflate of `text`: method 8, its crc and size.
  ZipLayout lay;
  Bytes z = make_zip({{"enwik8", half, 0}}, &lay);
  size_t c = lay.cd_crc_offset[0];
  z[c - 6] = 8;
  uint32_t crc = crc_of(text), usize = (uint32_t)text.size();
  for (int i = 0; i < 4; ++i) z[c + i] = (uint8_t)(crc >> (8 * i)), z[c + 8 + i] = (uint8_t)(usize >> (8 * i));
  check_read_error(dir, "short.zip", z, {"truncated", "deflate data ends"});
}

TEST_CASE("data: a damaged gzip gives a clear error naming the file") {
  TempDir dir;
  const Bytes gz = gzip(make_text(200000, 9));
  check_cut_short(dir, "cut.gz", gz, {gz.size() / 2, gz.size() - 4, (size_t)2, (size_t)10}, "truncated gzip");
  Bytes crc = gz;
  crc[crc.size() - 8] ^= 0x01;  // the trailer's CRC-32
  check_read_error(dir, "crc.gz", crc, {"CRC-32 mismatch"});
  Bytes bad = gz;
  bad[10] = 0x07;  // first deflate block header after the 10-byte gzip header: reserved type
  check_read_error(dir, "bad.gz", bad, {"corrupt gzip"});
  Bytes junk = gz;
  junk.push_back('x');
  check_read_error(dir, "junk.gz", junk, {"trailing garbage"});
}

TEST_CASE("data: a split shorter than one window is an error") {
  mg::ByteDataset ds(Bytes(10, 'a'), "validation");
  mg::Generator g(1);
  std::string msg;
  try {
    ds.sample(2, 10, g);
  } catch (const mg::Error& e) {
    msg = e.what();
  }
  CHECK(contains(msg, "validation split has 10 bytes, shorter than one window"));
  CHECK(contains(msg, "seq_len + 1 = 11"));
  CHECK_THROWS_AS(ds.num_eval_batches(1, 10), mg::Error);
  CHECK_NOTHROW(ds.sample(2, 9, g));
  CHECK(ds.num_eval_batches(1, 9) == 1);
  // a max_bytes cap that leaves less than a window
  try {
    ds.eval_batch(0, 1, 5, 4);
    FAIL("no error");
  } catch (const mg::Error& e) {
    CHECK(contains(e.what(), "(its first 4 bytes, as many as asked for)"));
    CHECK(contains(e.what(), "seq_len + 1 = 6"));
  }
  mg::ByteDataset none;
  CHECK_THROWS_AS(none.sample(1, 1, g), mg::Error);
}

TEST_CASE("data: a file named .zip or .gz must start with that format's signature") {
  TempDir dir;
  Bytes text = make_text(20000, 14);
  Bytes zip = make_zip({{"enwik8", text, 8}}), gz = gzip(text);

  // A zip whose first byte is damaged was trained on as raw bytes.
  Bytes bad_zip = zip;
  bad_zip[0] = 'Q';
  std::string p = dir.file("enwik8.zip", bad_zip);
  CHECK(read_error(p) == "[data] '" + p +
                             "' is named .zip but does not start with a zip signature (PK\\x03\\x04); its first bytes "
                             "are 51 4b 03 04: the file is damaged or not a zip");
  Bytes bad_gz = gz;
  bad_gz[1] = 0x8c;
  p = dir.file("data.gz", bad_gz);
  CHECK(read_error(p) == "[data] '" + p +
                             "' is named .gz but does not start with the gzip signature (\\x1f\\x8b); its first bytes "
                             "are 1f 8c 08 00: the file is damaged or not a gzip file");
  // Any case; a short file shows what it has; text or the other format under the name is refused too.
  CHECK(contains(read_error(dir.file("ENWIK8.ZIP", text)), "is named .zip but does not start with a zip signature"));
  CHECK(contains(read_error(dir.file("notes.Gz", text)), "is named .gz but does not start with the gzip signature"));
  CHECK(contains(read_error(dir.file("two.zip", Bytes{'P', 'K'})), "its first bytes are 50 4b:"));
  CHECK(contains(read_error(dir.file("zip.gz", zip)), "its first bytes are 50 4b 03 04:"));
  CHECK(contains(read_error(dir.file("gz.zip", gz)), "its first bytes are 1f 8b 08 00:"));
  // Named right, they read; an empty zip (PK\x05\x06) is a zip, with its own error.
  CHECK(mg::read_byte_file(dir.file("Corpus.ZIP", zip)) == text);
  CHECK(mg::read_byte_file(dir.file("corpus.GZ", gz)) == text);
  Bytes empty_zip = {'P', 'K', 5, 6};
  empty_zip.resize(22, 0);
  CHECK(contains(read_error(dir.file("empty.zip", empty_zip)), "is a zip with no files in it"));
  // Other names keep the detection by magic bytes: the damaged zip is raw bytes there.
  CHECK(mg::read_byte_file(dir.file("enwik8.raw", bad_zip)) == bad_zip);
  CHECK(mg::read_byte_file(dir.file("enwik8", zip)) == text);
}

TEST_CASE("data: windows and batches whose sizes overflow int64 give clear errors") {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  mg::ByteDataset ds(make_text(2000, 15), "train");
  mg::Generator g(1);
  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const mg::Error& e) {
      return e.what();
    }
    return "";
  };
  auto has_negative_number = [](const std::string& s) {
    for (size_t i = 0; i + 1 < s.size(); ++i)
      if (s[i] == '-' && s[i + 1] >= '0' && s[i + 1] <= '9') return true;
    return false;
  };
  // seq_len = INT64_MAX: seq_len + 1 wrapped to a negative byte count, and the check passed.
  std::string msg = error_of([&] { ds.sample(1, kMax, g); });
  CAPTURE(msg);
  CHECK(msg ==
        "[data] the train split has 2000 bytes, shorter than one window: seq_len (--seq) 9223372036854775807 needs "
        "seq_len + 1 = 9223372036854775808 bytes; use a shorter seq_len or a larger data file");
  msg = error_of([&] { ds.num_eval_batches(4, kMax); });
  CHECK(contains(msg, "seq_len + 1 = 9223372036854775808 bytes"));
  CHECK(!has_negative_number(msg));
  msg = error_of([&] { ds.num_eval_batches(4, kMax, 100); });
  CHECK(contains(msg, "(its first 100 bytes, as many as asked for) has 100 bytes"));
  CHECK(!has_negative_number(msg));
  // batch * seq_len = 2^54 * 1024 = 2^64 tokens: the batch wrapped to an empty tensor that was written to.
  msg = error_of([&] { ds.sample(int64_t(1) << 54, 1024, g); });
  CHECK(msg ==
        "[data] sample: batch * seq_len (the tokens of one batch) overflows int64: 18014398509481984 * 1024 is "
        "out of range (int64 holds at most 9223372036854775807)");
  CHECK(!has_negative_number(msg));
  msg = error_of([&] { ds.num_eval_batches(int64_t(1) << 54, 1024); });
  CHECK(contains(msg, "[data] eval: batch * seq_len (the tokens of one batch) overflows int64"));
  CHECK(!has_negative_number(msg));
  // A huge batch of short windows is one eval batch (w + batch - 1 overflowed).
  CHECK(ds.num_eval_batches(kMax, 1) == 1);
  CHECK(ds.num_eval_batches(kMax - 1, 1) == 1);
  CHECK(ds.eval_batch(0, kMax, 1).inputs.shape() == mg::Shape{1999, 1});
}

TEST_CASE("data: split sizes follow the 90/5/5 protocol") {
  auto check = [](size_t n, size_t tr, size_t va, size_t te) {
    CAPTURE(n);
    Bytes all(n);
    for (size_t i = 0; i < n; ++i) all[i] = (uint8_t)(i * 131 + (i >> 8));
    mg::ByteSplits s = mg::split_bytes(all);
    CHECK(s.train.size() == tr);
    CHECK(s.val.size() == va);
    CHECK(s.test.size() == te);
    Bytes joined = s.train;
    joined.insert(joined.end(), s.val.begin(), s.val.end());
    joined.insert(joined.end(), s.test.begin(), s.test.end());
    CHECK(joined == all);  // in order, nothing lost or repeated
  };
  check(1000, 900, 50, 50);
  check(1001, 900, 50, 51);                              // floor(900.9), floor(950.95)
  check(19, 17, 1, 1);                                   // floor(17.1) = 17, floor(18.05) = 18
  check(10, 9, 0, 1);                                    // floor(9), floor(9.5) = 9
  check(100'000'000, 90'000'000, 5'000'000, 5'000'000);  // enwik8: exactly 90M / 5M / 5M
}

TEST_CASE("data: sample() is reproducible, seeded, uniform, and targets are inputs shifted by one") {
  Bytes text = make_text(5000, 10);
  mg::ByteDataset ds(text, "train");
  const int64_t B = 8, L = 32;
  mg::Generator g1(42), g2(42), g3(43);
  mg::Batch a = ds.sample(B, L, g1), b = ds.sample(B, L, g2), c = ds.sample(B, L, g3);
  CHECK(a.inputs.dtype() == mg::DType::i64);
  CHECK(a.targets.dtype() == mg::DType::i64);
  CHECK(a.inputs.shape() == mg::Shape{B, L});
  CHECK(a.targets.shape() == mg::Shape{B, L});
  CHECK(a.inputs.to_vector<int64_t>() == b.inputs.to_vector<int64_t>());
  CHECK(a.targets.to_vector<int64_t>() == b.targets.to_vector<int64_t>());
  CHECK(a.inputs.to_vector<int64_t>() != c.inputs.to_vector<int64_t>());
  CHECK(g1.offset() == (uint64_t)B);  // the generator moves on by one counter per row
  mg::Batch next = ds.sample(B, L, g1);
  CHECK(next.inputs.to_vector<int64_t>() != a.inputs.to_vector<int64_t>());
  // Restoring the state replays the batch.
  mg::Generator g4(0);
  g4.set_state(42, (uint64_t)B);
  CHECK(ds.sample(B, L, g4).inputs.to_vector<int64_t>() == next.inputs.to_vector<int64_t>());

  // Every row is a window of the text: inputs = text[s, s+L), targets = text[s+1, s+L+1).
  for (int64_t r = 0; r < B; ++r) {
    std::vector<int64_t> in = row(a.inputs, r), tg = row(a.targets, r);
    for (int64_t t = 0; t + 1 < L; ++t) CHECK(tg[t] == in[t + 1]);
    bool found = false;
    for (size_t s = 0; s + L + 1 <= text.size() && !found; ++s)
      found = slice_of(text, s, L) == in && slice_of(text, s + 1, L) == tg;
    CHECK(found);
  }

  // Uniform over all valid starts, including the first and the last: 4 starts for L + 4 bytes.
  Bytes small;
  for (int i = 0; i < L + 4; ++i) small.push_back((uint8_t)i);
  mg::ByteDataset tiny(small, "tiny");
  mg::Generator g(7);
  mg::Batch many = tiny.sample(4000, L, g);
  std::map<int64_t, int> counts;
  std::vector<int64_t> in = many.inputs.to_vector<int64_t>(), tg = many.targets.to_vector<int64_t>();
  for (int64_t r = 0; r < 4000; ++r) {
    counts[in[r * L]]++;
    CHECK(tg[r * L + L - 1] == in[r * L] + L);  // the window is contiguous up to its last target
  }
  CHECK(counts.size() == 4);
  for (auto [start, n] : counts) {
    CAPTURE(start);
    CHECK(start >= 0);
    CHECK(start <= 3);
    CHECK(n > 850);  // expected 1000 each; 850 is about 5 standard deviations away
    CHECK(n < 1150);
  }
}

TEST_CASE("data: eval batches walk the split in order") {
  Bytes text = make_text(1000, 11);
  mg::ByteDataset ds(text, "validation");
  const int64_t B = 4, L = 16;
  // 999 predictable bytes make 62 full windows of 16 targets; the last 7 bytes are dropped.
  CHECK(ds.num_eval_windows(L) == 62);
  CHECK(ds.num_eval_targets(L) == 62 * 16);
  CHECK(ds.num_eval_batches(B, L) == 16);
  int64_t w = 0;
  for (int64_t i = 0; i < ds.num_eval_batches(B, L); ++i) {
    mg::Batch batch = ds.eval_batch(i, B, L);
    CHECK(batch.inputs.size(1) == L);
    CHECK(batch.inputs.size(0) == (i < 15 ? B : 2));  // the last batch holds the 2 remaining windows
    for (int64_t r = 0; r < batch.inputs.size(0); ++r, ++w) {
      CAPTURE(w);
      CHECK(row(batch.inputs, r) == slice_of(text, w * L, L));
      CHECK(row(batch.targets, r) == slice_of(text, w * L + 1, L));
    }
  }
  CHECK(w == 62);
  CHECK_THROWS_AS(ds.eval_batch(16, B, L), mg::Error);
  CHECK_THROWS_AS(ds.eval_batch(-1, B, L), mg::Error);

  // max_bytes caps the walk to the first bytes of the split.
  CHECK(ds.num_eval_windows(L, 100) == 6);  // (100 - 1) / 16
  CHECK(ds.num_eval_batches(B, L, 100) == 2);
  mg::Batch last = ds.eval_batch(1, B, L, 100);
  CHECK(last.inputs.size(0) == 2);
  CHECK(row(last.targets, 1) == slice_of(text, 5 * L + 1, L));
  CHECK(ds.num_eval_windows(L, 1u << 20) == 62);  // a cap above the size changes nothing
  // 64 bytes hold 63 targets: three windows of 16, not four (the fourth would need a 65th byte).
  mg::ByteDataset exact(Bytes(text.begin(), text.begin() + 64), "exact");
  CHECK(exact.num_eval_windows(16) == 3);
  CHECK(exact.num_eval_batches(2, 16) == 2);
  CHECK(row(exact.eval_batch(1, 2, 16).targets, 0) == slice_of(text, 33, 16));
  CHECK_THROWS_AS(exact.eval_batch(2, 2, 16), mg::Error);
  // With seq_len = n - 1 there is exactly one window, covering everything.
  CHECK(ds.num_eval_windows(999) == 1);
  CHECK(row(ds.eval_batch(0, 3, 999).targets, 0) == slice_of(text, 1, 999));
}

TEST_CASE("data: streams cover every byte but the first exactly once, in order, each stream contiguous") {
  Bytes text = make_text(1000, 13);
  mg::ByteDataset ds(text, "test");
  for (auto [B, L, cap] :
       {std::tuple<int64_t, int64_t, int64_t>{4, 16, -1}, {3, 7, -1}, {5, 40, 503}, {1, 999, -1}, {7, 1, 60}}) {
    CAPTURE(B);
    CAPTURE(L);
    CAPTURE(cap);
    const int64_t span = cap < 0 ? 1000 : cap, S = (span - 1) / B;
    CHECK(ds.stream_length(B, cap) == S);
    CHECK(ds.num_stream_windows(B, L, cap) == (S + L - 1) / L);
    // Stream r is the text from byte r S on: its inputs, window after window, are that text, and its
    // targets the same shifted by one.
    std::vector<std::vector<int64_t>> in(B), tg(B);
    for (int64_t w = 0; w < ds.num_stream_windows(B, L, cap); ++w) {
      mg::Batch b = ds.stream_window(w, B, L, cap);
      CHECK(b.inputs.size(0) == B);
      CHECK(b.inputs.size(1) == std::min(L, S - w * L));
      for (int64_t r = 0; r < B; ++r) {
        std::vector<int64_t> ri = row(b.inputs, r), rt = row(b.targets, r);
        in[r].insert(in[r].end(), ri.begin(), ri.end());
        tg[r].insert(tg[r].end(), rt.begin(), rt.end());
      }
    }
    mg::Batch tail = ds.stream_tail(B, cap);
    if ((span - 1) % B == 0) {
      CHECK(!tail.inputs.defined());
    } else {
      REQUIRE(tail.inputs.size(0) == 1);
      std::vector<int64_t> ti = row(tail.inputs, 0), tt = row(tail.targets, 0);
      in[B - 1].insert(in[B - 1].end(), ti.begin(), ti.end());
      tg[B - 1].insert(tg[B - 1].end(), tt.begin(), tt.end());
    }
    std::vector<int64_t> all;
    for (int64_t r = 0; r < B; ++r) {
      CHECK(in[r] == slice_of(text, r * S, (int64_t)in[r].size()));
      CHECK(tg[r] == slice_of(text, r * S + 1, (int64_t)tg[r].size()));
      all.insert(all.end(), tg[r].begin(), tg[r].end());
    }
    CHECK(all == slice_of(text, 1, span - 1));  // every target once, in order
  }
  CHECK_THROWS_AS(ds.stream_window(ds.num_stream_windows(4, 16), 4, 16), mg::Error);
  mg::check_error(
      [&] { ds.stream_length(1000); },
      {"[data] the test split has 1000 bytes: too few for 1000 streams (--batch)", "use a smaller --batch"});
  mg::check_error([&] { ds.stream_length(20, 10); },
                  {"(its first 10 bytes, as many as asked for)", "use a smaller --batch or a larger number of bytes"});
}

// A zip of enwik8's first 4,154,399 bytes, named by MG_ENWIK8_HEAD (skipped when it is not set).
TEST_CASE("data: the real enwik8 sample (a zip of its first 4,154,399 bytes)") {
  const char* env = std::getenv("MG_ENWIK8_HEAD");
  const std::string path = env ? env : "";
  if (path.empty() || !fs::exists(path)) {
    MESSAGE("SKIPPED: set MG_ENWIK8_HEAD to a zip of enwik8's first 4,154,399 bytes to run this case");
    return;
  }
  Bytes data = mg::read_byte_file(path);
  REQUIRE(data.size() == 4'154'399);
  CHECK(std::string(data.begin(), data.begin() + 10) == "<mediawiki");
  CHECK(md5_hex(data.data(), 1'000'000) == "83a2cefd8ca00049e0445542dabd25a0");

  mg::ByteDatasets d = mg::load_byte_datasets(path);
  CHECK(d.train.size() == 3'738'959);  // floor(0.9 * 4,154,399)
  CHECK(d.val.size() == 207'720);      // floor(0.95 n) - floor(0.9 n) = 3,946,679 - 3,738,959
  CHECK(d.test.size() == 207'720);
  CHECK(d.val.name() == "validation");
  CHECK(d.train.bytes()[0] == '<');
  CHECK(d.val.bytes()[0] == data[3'738'959]);
}

TEST_CASE("data: damaged zips and gzips throw mg::Error, never crash") {
  // Every truncation and many random byte changes of small archives: each decode returns bytes or
  // throws mg::Error (run under the sanitizers, this also checks every read is in bounds). In memory,
  // through decode_byte_file, which read_byte_file calls after reading the file.
  Bytes text = make_text(3000, 12);
  std::vector<std::pair<std::string, Bytes>> archives = {
      {"z.zip", make_zip({{"enwik8", text, 8}})},
      {"s.zip", make_zip({{"readme", make_text(100, 13), 0}, {"enwik8", text, 0}})},
      {"g.gz", gzip(text)}};
  mg::Generator g(99);
  int errors = 0, reads = 0;
  for (auto& [name, good] : archives) {
    CAPTURE(name);
    auto attempt = [&](const Bytes& damaged) {
      try {
        Bytes got = mg::decode_byte_file(damaged, name);
        ++reads;
      } catch (const mg::Error&) {
        ++errors;
      } catch (const std::exception& e) {
        FAIL("not an mg::Error: " << e.what());
      }
    };
    for (size_t keep = 0; keep < good.size(); ++keep) attempt(Bytes(good.begin(), good.begin() + keep));
    for (int trial = 0; trial < 300; ++trial) {
      Bytes bad = good;
      int flips = 1 + (int)(g.next_u64() % 3);
      for (int f = 0; f < flips; ++f) bad[g.next_u64() % bad.size()] ^= (uint8_t)(1 + g.next_u64() % 255);
      attempt(bad);
    }
  }
  CHECK(errors > 0);
  MESSAGE("damaged archives: " << errors << " errors, " << reads << " reads");
}
