#include "core/op_kind.h"

#include <algorithm>
#include <deque>
#include <mutex>

#include "core/error.h"
#include "core/unary_ops.h"

namespace mg {

const std::vector<std::string_view>& library_op_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> v(kAllOpNames.begin(), kAllOpNames.end());
    v.insert(v.end(), kUnaryOpNames.begin(), kUnaryOpNames.end());
    return v;
  }();
  return names;
}

bool is_library_op_name(std::string_view name) {
  const auto& names = library_op_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string OpKind::input_name(size_t i) const {
  std::string_view rest = inputs_;
  for (size_t k = 0; !rest.empty(); ++k) {
    const size_t space = rest.find(' ');
    const std::string_view name = rest.substr(0, space);
    if (name.ends_with("...")) return std::string(name.substr(0, name.size() - 3)) + "[" + std::to_string(i - k) + "]";
    if (k == i) return std::string(name);
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  }
  return {};
}

OpKind OpKind::custom(std::string_view name) {
  const bool valid = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == ':' || c == '-';
  });
  MG_CHECK(valid,
           "[custom op] the name '{}' is not valid: give 1 to 64 letters, digits, '_', '.', ':' or '-' (e.g. "
           "'my_softsign')",
           name);
  MG_CHECK(!is_library_op_name(name) && name != "AccumulateGrad",
           "[custom op] the name '{}' is taken by the library's own op; give the op a name of its own (e.g. 'my_{}')",
           name, name);
  // Interned: a node, a profiler event or a memory report row may hold the name for the program's life.
  static std::mutex mu;
  static std::deque<std::string> names;
  std::lock_guard lock(mu);
  auto it = std::find(names.begin(), names.end(), name);
  const std::string& kept = it != names.end() ? *it : names.emplace_back(name);
  return OpKind(std::string_view(kept), std::string_view(), -1);
}

}  // namespace mg
