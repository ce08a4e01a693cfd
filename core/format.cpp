// The one file that compiles fmt's formatting engine (see core/format.h).
#include "core/format.h"

namespace mg {

std::string vformat(fmt::string_view format_str, fmt::format_args args) { return fmt::vformat(format_str, args); }

void vprint(std::FILE* f, fmt::string_view format_str, fmt::format_args args) { fmt::vprint(f, format_str, args); }

}  // namespace mg
