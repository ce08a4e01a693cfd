// Tests for io/: safetensors files (round trips, bytes identical to Python's safetensors, every kind
// of bad file) and atomic file replacement.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "core/error.h"
#include "tests/check.h"
#include "tests/temp_dir.h"

using namespace mg;
namespace fs = std::filesystem;
using mg::test::TempDir;

namespace {

// A safetensors file from a header text and a data section (the length prefix is computed).
std::string st_file(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

Tensor leaf(const std::vector<double>& v, DType dt = DType::f64) {
  Tensor t = from_vector<double>(v, Shape{(int64_t)v.size()}).to(dt);
  t.requires_grad_();
  return t;
}

}  // namespace

TEST_CASE("io: safetensors round trip of f32, f64, i64, 0-dim, empty and strided tensors") {
  TempDir dir;
  Tensor f32 = from_vector<float>({1.5f, -2.25f, 3.0f, 0.125f, -0.0f, 1e-30f}, Shape{2, 3});
  Tensor f64 = from_vector<double>({std::numbers::pi, -1e300, 0.0, 5e-324}, Shape{4});
  Tensor i64 = from_vector<int64_t>({INT64_MIN, -1, 0, INT64_MAX}, Shape{2, 2});
  Tensor scalar = scalar_tensor(-7.5, DType::f32);
  Tensor empty = zeros({0, 5}, DType::f64);
  Tensor strided = from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3}).transpose(0, 1);  // (3, 2), not contiguous
  Tensor with_grad = leaf({1.0, 2.0});
  std::string path = dir.file("model.safetensors");
  save_safetensors(path,
                   {{"backbone.f32", f32},
                    {"f64", f64},
                    {"i64", i64},
                    {"scalar", scalar},
                    {"empty", empty},
                    {"strided", strided},
                    {"param", with_grad}},
                   {{"format", "pt"}, {"step", "1200"}});
  CHECK(temp_files_in(dir.path).empty());
  SafetensorsFile f = read_safetensors(path);
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"step", "1200"}});
  REQUIRE(f.tensors.size() == 7);
  auto m = load_safetensors_map(path);
  CHECK(m.at("backbone.f32").shape() == Shape{2, 3});
  CHECK(m.at("backbone.f32").to_vector<float>() == f32.to_vector<float>());
  CHECK(std::signbit(m.at("backbone.f32").to_vector<float>()[4]));
  CHECK(m.at("f64").to_vector<double>() == f64.to_vector<double>());
  CHECK(m.at("i64").dtype() == DType::i64);
  CHECK(m.at("i64").to_vector<int64_t>() == i64.to_vector<int64_t>());
  CHECK(m.at("scalar").dim() == 0);
  CHECK(m.at("scalar").item() == -7.5);
  CHECK(m.at("empty").shape() == Shape{0, 5});
  CHECK(m.at("empty").dtype() == DType::f64);
  CHECK(m.at("strided").shape() == Shape{3, 2});
  CHECK(m.at("strided").to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK(!m.at("param").requires_grad());
  CHECK(m.at("param").to_vector<double>() == std::vector<double>{1.0, 2.0});
  // File order: int64 first, then float64, then float32, by name within a dtype.
  std::vector<std::string> order;
  for (const auto& [name, t] : f.tensors) order.push_back(name);
  CHECK(order == std::vector<std::string>{"i64", "empty", "f64", "param", "backbone.f32", "scalar", "strided"});
  // An empty metadata map writes no __metadata__.
  save_safetensors(path, {{"x", f32}}, {});
  CHECK(read_safetensors(path).metadata.empty());
  CHECK(read_bytes(path).find("__metadata__") == std::string::npos);
}

TEST_CASE("io: safetensors bytes are identical to Python safetensors") {
  // Generated once with safetensors 0.8.0 (pip install safetensors numpy):
  //   from safetensors.numpy import save
  //   save({"b": np.array([1.5, -2.0, 3.25], np.float32).reshape(1, 3), "a": np.array([7, -1], np.int64),
  //         "c": np.array(0.5, np.float64), "e": np.zeros((0, 2), np.float32)}, metadata={"format": "pt"})
  static const unsigned char kPython[] = {
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61, 0x64, 0x61, 0x74,
      0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x22, 0x3a, 0x22, 0x70, 0x74, 0x22,
      0x7d, 0x2c, 0x22, 0x61, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36, 0x34,
      0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61,
      0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22,
      0x63, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x22,
      0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
      0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c, 0x32, 0x34, 0x5d, 0x7d, 0x2c, 0x22, 0x62, 0x22, 0x3a,
      0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61,
      0x70, 0x65, 0x22, 0x3a, 0x5b, 0x31, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
      0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x32, 0x34, 0x2c, 0x33, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x65, 0x22, 0x3a,
      0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61,
      0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
      0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x33, 0x36, 0x2c, 0x33, 0x36, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x07, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0xe0, 0x3f, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x50, 0x40,
  };
  const std::string expected(reinterpret_cast<const char*>(kPython), sizeof(kPython));
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"b", from_vector<float>({1.5f, -2.0f, 3.25f}, Shape{1, 3})},
                          {"a", from_vector<int64_t>({7, -1}, Shape{2})},
                          {"c", scalar_tensor(0.5, DType::f64)},
                          {"e", zeros({0, 2})}});
  std::string ours = read_bytes(path);
  CHECK(ours.size() == expected.size());
  CHECK(ours == expected);
  // Header length prefix: 256, and 8 + 256 is a multiple of 8 (two padding spaces).
  CHECK(ours.substr(0, 8) == std::string("\x00\x01\x00\x00\x00\x00\x00\x00", 8));
  CHECK(ours.substr(8 + 254, 2) == "  ");

  // And Python's file loads.
  std::string py = dir.file("py.safetensors");
  write_bytes(py, expected);
  auto m = load_safetensors_map(py);
  CHECK(m.at("a").to_vector<int64_t>() == std::vector<int64_t>{7, -1});
  CHECK(m.at("b").shape() == Shape{1, 3});
  CHECK(m.at("b").to_vector<float>() == std::vector<float>{1.5f, -2.0f, 3.25f});
  CHECK(m.at("c").item() == 0.5);
  CHECK(m.at("e").shape() == Shape{0, 2});
}

TEST_CASE("io: safetensors loading rejects every kind of bad file with a clear message") {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  auto expect_bad = [&](const std::string& bytes, std::vector<std::string> parts) {
    write_bytes(path, bytes);
    parts.push_back(path);
    parts.push_back("[load_safetensors]");
    check_error([&] { load_safetensors(path); }, parts);
    check_error([&] { read_safetensors_metadata(path); }, parts);  // the same header checks, no data read
  };
  const std::string f32x2 = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  // A correct file, for reference.
  write_bytes(path, st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2));
  CHECK(load_safetensors(path)[0].second.to_vector<float>() == std::vector<float>{1.0f, 2.0f});

  check_error([&] { load_safetensors(dir.file("missing.safetensors")); }, {"cannot read", "missing.safetensors"});
  // A FIFO with no writer is refused before any open that would wait for one.
  const std::string fifo = dir.file("fifo.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_error([&] { load_safetensors(fifo); },
              {"[load_safetensors]", fifo, "is a FIFO (named pipe), not a regular file"});
  check_error([&] { load_safetensors(dir.path.string()); }, {"[load_safetensors]", "is a directory"});
  check_error([&] { read_safetensors_metadata(fifo); }, {"[load_safetensors]", fifo, "is a FIFO"});
  expect_bad("abc", {"too short"});
  expect_bad(std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10), {"bad header length"});
  expect_bad(std::string("\x40\x00\x00\x00\x00\x00\x00\x00{}", 10), {"bad header length", "truncated"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", f32x2), {"malformed JSON"});
  expect_bad(st_file(R"(["x"])", ""), {"does not start with '{'"});
  expect_bad(
      st_file(
          R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
          f32x2),
      {"names 'x' twice"});
  // Nested keys may repeat names of tensors.
  write_bytes(path,
              st_file(R"({"__metadata__":{"x":"1"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2));
  CHECK(read_safetensors(path).metadata.at("x") == "1");
  CHECK(read_safetensors_metadata(path) == std::map<std::string, std::string>{{"x", "1"}});
  expect_bad(st_file(R"({"x":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "unsupported dtype 'BF16'"});
  expect_bad(st_file(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", f32x2), {"tensor 'x'", "missing \"dtype\""});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "not a non-negative integer"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "size mismatch", "needs 12 bytes"});
  // Shapes whose element or byte count overflows int64 (a zero size does not excuse the others).
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "shape [4611686018427387904,4]: the product of its sizes overflows int64"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", ""),
             {"tensor 'x'", "the product of its sizes overflows int64"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,8]}})", f32x2),
             {"tensor 'x'", "its byte count overflows int64: 2305843009213693952 * 4"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", f32x2),
             {"tensor 'x'", "out of range"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", f32x2), {"tensor 'x'", "end before"});
  expect_bad(
      st_file(
          R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          f32x2 + f32x2),
      {"tensor 'y'", "overlap tensor 'x'"});
  expect_bad(
      st_file(
          R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          f32x2 + std::string(4, '\0')),
      {"tensor 'y'", "leave bytes [4, 8)"});
  expect_bad(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2 + "junk"),
             {"do not cover the data"});
  expect_bad(st_file(R"({"__metadata__":{"step":5},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2),
             {"__metadata__", "not a string"});

  // A good file cut short.
  save_safetensors(path, {{"w", zeros({4, 4})}});
  std::string good = read_bytes(path);
  expect_bad(good.substr(0, good.size() - 4), {"tensor 'w'", "out of range", "truncated"});
}

TEST_CASE("io: save_safetensors rejects bad names and leaves no partial file") {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  check_error([&] { save_safetensors(path, {{"a", zeros({1})}, {"a", zeros({2})}}); }, {"'a' appears twice", path});
  check_error([&] { save_safetensors(path, {{"__metadata__", zeros({1})}}); }, {"reserved"});
  check_error([&] { save_safetensors(path, {{"", zeros({1})}}); }, {"empty name"});
  check_error([&] { save_safetensors(path, {{"u", Tensor()}}); }, {"'u' is undefined"});
  CHECK(!fs::exists(path));
  CHECK(temp_files_in(dir.path).empty());
}

// ================================================================ atomic files

TEST_CASE("io: write_file_atomic replaces the file, or keeps the old one when the writer throws") {
  TempDir dir;
  std::string path = dir.file("state.bin");
  write_file_atomic(path, std::string_view("first version"));
  CHECK(read_bytes(path) == "first version");
  CHECK(temp_files_in(dir.path).empty());
  write_file_atomic(path, [](std::ostream& out) { out << "second"; });
  CHECK(read_bytes(path) == "second");
  CHECK(temp_files_in(dir.path).empty());

  // The writer fails half-way: the old content survives and the temporary is gone.
  bool wrote_partial = false;
  CHECK_THROWS_AS(write_file_atomic(path,
                                    [&](std::ostream& out) {
                                      out << "half of the third ver";
                                      out.flush();
                                      wrote_partial = !temp_files_in(dir.path).empty();
                                      throw std::runtime_error("interrupted");
                                    }),
                  std::runtime_error);
  CHECK(wrote_partial);  // the partial data really went to a temporary beside the target
  CHECK(read_bytes(path) == "second");
  CHECK(temp_files_in(dir.path).empty());

  check_error([&] { write_file_atomic(dir.file("no/such/dir/x"), std::string_view("x")); },
              {"cannot create", "no/such/dir/x"});
}

// ================================================================ metrics
