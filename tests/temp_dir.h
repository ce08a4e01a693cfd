// A folder under the system temp dir, made empty at the start of a test and removed at its end.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace mg::test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("mg_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

}  // namespace mg::test
