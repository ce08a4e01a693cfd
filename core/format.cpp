// The one file that compiles fmt's formatting engine (see core/format.h).
#include "core/format.h"

#include <algorithm>

namespace mg {

std::string vformat(fmt::string_view format_str, fmt::format_args args) { return fmt::vformat(format_str, args); }

void vprint(std::FILE* f, fmt::string_view format_str, fmt::format_args args) { fmt::vprint(f, format_str, args); }

std::string shell_word(std::string_view s) {
  const auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_-./+,:=@%").find(c) != std::string_view::npos;
  };
  if (!s.empty() && std::all_of(s.begin(), s.end(), plain)) return std::string(s);
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace mg
