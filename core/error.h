// Errors. User errors throw mg::Error with a message that names the op, shows the shapes, dtypes
// and devices involved and says what would be valid:
//     MG_CHECK(a.size(-1) == b.size(-2), "[matmul] inner dimensions differ: {} @ {}", a.shape(), b.shape());
// Broken internal invariants use MG_ASSERT, which adds file and line.
#pragma once
#include "core/format.h"

#include <stdexcept>
#include <string>

namespace mg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace mg

#define MG_THROW(...) throw ::mg::Error(::mg::format(__VA_ARGS__))

#define MG_CHECK(cond, ...)             \
  do {                                  \
    if (!(cond)) MG_THROW(__VA_ARGS__); \
  } while (0)

#define MG_ASSERT(cond)                                                                                             \
  do {                                                                                                              \
    if (!(cond))                                                                                                    \
      throw ::mg::Error(::mg::format("internal error: assertion '{}' failed at {}:{}", #cond, __FILE__, __LINE__)); \
  } while (0)
