// Text formatting for the whole library: mg::format and mg::print take fmt's format strings (checked at
// compile time, as fmt::format's are) but hand the arguments, type-erased, to one function compiled
// once, in core/format.cpp. fmt is used as a header-only library, and calling fmt::format itself makes
// every file that does so compile fmt's whole formatting engine again (about 1 MB of code per file, 20x
// the compile time of the rest of a small file, and worse under the sanitizers); these wrappers leave
// each file only the few lines that pack its arguments.
//     std::string s = mg::format("[matmul] inner dimensions differ: {} @ {}", a.shape(), b.shape());
//     mg::print(stderr, "{} steps\n", n);
// Types with an fmt::formatter (Shape, Tensor, Device, DType: core/shape.h, core/tensor.h) format as
// with fmt.
#pragma once
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace mg {

// The fmt::formatter of a type with str(), which it formats as (Shape, Tensor, Device):
//   template <> struct fmt::formatter<mg::Shape> : mg::StrFormatter<mg::Shape> {};
template <class T>
struct StrFormatter : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const T& v, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(v.str(), ctx);
  }
};

std::string vformat(fmt::string_view format_str, fmt::format_args args);

// `s` as one word of a POSIX shell command line: as it is when it holds only characters no shell treats
// specially (letters, digits and _ - . / + , : = @ %), else in single quotes (a ' inside as '\''), so that
// the commands that messages suggest can be pasted whatever a path holds (spaces, $, quotes, newlines).
std::string shell_word(std::string_view s);
void vprint(std::FILE* f, fmt::string_view format_str, fmt::format_args args);

template <class... Args>
std::string format(fmt::format_string<Args...> format_str, Args&&... args) {
  return mg::vformat(format_str, fmt::make_format_args(args...));
}

template <class... Args>
void print(std::FILE* f, fmt::format_string<Args...> format_str, Args&&... args) {
  mg::vprint(f, format_str, fmt::make_format_args(args...));
}

template <class... Args>
void print(fmt::format_string<Args...> format_str, Args&&... args) {
  mg::vprint(stdout, format_str, fmt::make_format_args(args...));
}

// The elements of a range, each formatted with "{}", between `sep`s (as fmt::join, which would bring
// the engine back into the caller's file).
template <class Range>
std::string join(const Range& range, std::string_view sep) {
  std::string s;
  bool first = true;
  for (const auto& x : range) {
    if (!first) s += sep;
    first = false;
    s += mg::format("{}", x);
  }
  return s;
}

}  // namespace mg
