// Byte-file readers: the whole content of a file as bytes, the tokens of a byte-level LM.
//
// read_byte_file() detects the format by its magic bytes:
//   - "PK\x03\x04": a zip archive (enwik8.zip). The member named `enwik8` is taken, or the only
//     member when there is just one. Stored (method 0) and deflated (method 8) members are
//     supported; the central directory is parsed here, deflate data is inflated with zlib's raw
//     inflate, and the CRC-32 is checked against the zip's.
//   - "\x1f\x8b": a gzip file (concatenated gzip members are read one after another, as gzip does).
//   - anything else: the raw bytes of the file, so any text file can be trained on.
// A name ending in .zip or .gz (in any case) must match: a .zip file must start with "PK\x03\x04" (or
// "PK\x05\x06", an empty zip) and a .gz file with "\x1f\x8b", else it is an error naming the file,
// the signature expected and the bytes found. So a damaged archive is never trained on as raw bytes;
// files with other names (enwik8, notes.txt, data.bin) are told apart by their magic bytes alone.
// Every problem (missing file, empty file, truncated or corrupt archive, CRC mismatch, an
// unsupported zip feature) throws mg::Error naming the file and what is wrong.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mg {

// How to get the standard data set, shown in the error for a missing file.
inline constexpr const char* kEnwik8DownloadCommand = "curl -LO http://mattmahoney.net/dc/enwik8.zip";

// Only a regular file is read (data/bytes.cpp checks it before opening): a FIFO, device or directory is
// refused at once, naming `option` (the command-line option that gave the path, e.g. "--data"). The
// file's size and its decoded size are bounded by the machine's memory (core/memory_limit.h) before
// they are allocated.
std::vector<uint8_t> read_byte_file(const std::string& path, const std::string& option = "");

// zlib's CRC-32 of bytes in memory (the zip checksum; runs record their data's with it).
uint32_t crc32_bytes(const void* data, size_t n);

// The same over a file's content already in memory: detects the format by magic bytes and decodes
// (raw content is returned as is). `path` names the source in errors, and its .zip or .gz ending
// must match the content as above.
std::vector<uint8_t> decode_byte_file(std::vector<uint8_t> content, const std::string& path);

// The decoders on their own, over bytes already in memory; `path` only names the source in
// errors. decode_byte_file() calls these.
std::vector<uint8_t> unzip_member(const std::vector<uint8_t>& zip, const std::string& path,
                                  const std::string& member = "enwik8");
std::vector<uint8_t> gunzip_bytes(const std::vector<uint8_t>& gz, const std::string& path);

}  // namespace mg
