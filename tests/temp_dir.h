// A fresh folder under the system temp dir for one test, removed at its end: the one temporary
// folder of the test suite.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace mg::test {

struct TempDir {
  std::filesystem::path path;
  // mg_test_<name>_<pid>_<n>: unique within a process too (n counts), so cases never share a folder.
  explicit TempDir(const std::string& name = "tmp") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("mg_test_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& f) const { return (path / f).string(); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Writes `content` (any contiguous container of bytes or chars) to `name`; returns its path.
  template <class Bytes>
  std::string file(const std::string& name, const Bytes& content) const {
    const std::string p = file(name);
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(content.data()), (std::streamsize)content.size());
    if (!f.good()) throw std::runtime_error("cannot write " + p);
    return p;
  }
};

}  // namespace mg::test
