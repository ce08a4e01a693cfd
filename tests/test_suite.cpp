// The test suite itself: every test case name is one CTest entry. CTest splits a test name at `;`
// (a CMake list separator), and each half then asks doctest for a case that does not exist; a case
// that skips must say "SKIPPED:" in capitals, the pattern CMakeLists.txt gives CTest. (CTest also fails
// any entry that runs no case, through FAIL_REGULAR_EXPRESSION on doctest's summary.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct NamedCase {
  std::string file;
  int line = 0;
  std::string name;
};

// The string literal that opens at `text[i]` (a '"'), with escapes kept as written.
std::string literal_at(const std::string& text, size_t i) {
  std::string s;
  for (size_t j = i + 1; j < text.size() && text[j] != '"'; ++j) {
    if (text[j] == '\\' && j + 1 < text.size()) s += text[j++];
    s += text[j];
  }
  return s;
}

// Every TEST_CASE("...") of tests/*.cpp (a hand parse: <regex> draws false warnings from GCC 12 in
// sanitizer builds). The macro name is spelled in two pieces so that this file does not list itself.
std::vector<NamedCase> test_case_names() {
  const std::string macro = std::string("TEST_") + "CASE(\"";
  std::vector<NamedCase> out;
  for (const auto& entry : fs::directory_iterator(fs::path(MG_SOURCE_DIR) / "tests")) {
    if (entry.path().extension() != ".cpp") continue;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    for (size_t i = text.find(macro); i != std::string::npos; i = text.find(macro, i + 1)) {
      const int line = 1 + (int)std::count(text.begin(), text.begin() + (std::ptrdiff_t)i, '\n');
      out.push_back({entry.path().filename().string(), line, literal_at(text, i + macro.size() - 1)});
    }
  }
  return out;
}

}  // namespace

TEST_CASE("tests: no test case name holds a semicolon, and every name is unique") {
  const std::vector<NamedCase> cases = test_case_names();
  CHECK(cases.size() > 100);  // the scan found the suite
  std::set<std::string> seen;
  for (const NamedCase& c : cases) {
    INFO(c.file << ":" << c.line << ": \"" << c.name << "\"");
    CHECK_MESSAGE(c.name.find(';') == std::string::npos, "CTest would split this name at ';' and run nothing");
    CHECK_MESSAGE(seen.insert(c.name).second, "two test cases share this name");
  }
}

TEST_CASE("tests: a case that skips says SKIPPED: in capitals, the pattern CTest looks for") {
  // Any spelling but the capital one would report a skipped case as passed.
  for (const auto& entry : fs::directory_iterator(fs::path(MG_SOURCE_DIR) / "tests")) {
    if (entry.path().extension() != ".cpp" && entry.path().extension() != ".h") continue;
    if (entry.path().filename() == "test_suite.cpp") continue;  // this file spells the wrong pattern
    std::ifstream in(entry.path());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::string lower = line;
      for (char& ch : lower) ch = (char)std::tolower((unsigned char)ch);
      for (size_t i = lower.find("\"skipped:"); i != std::string::npos; i = lower.find("\"skipped:", i + 1)) {
        INFO(entry.path().filename().string() << ":" << n << ": " << line);
        CHECK(line.compare(i + 1, 8, "SKIPPED:") == 0);
      }
    }
  }
}
