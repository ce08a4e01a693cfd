// What kind of op made a node: its name and the names of its tensor inputs, carried by the node
// itself. The library's own ops come from its catalogue (an OpId of core/op_list.h converts implicitly,
// and the unary functions of core/unary_ops.h name themselves; their one tensor input is "x"); a user's
// op (ops/function.h) from the name the user gives it, interned once for the life of the program.
// The engine, grad_fn, the graph export, the profiler, the memory report and anomaly messages all read
// the name from here, so a user's op is named like a built-in one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/op_list.h"

namespace mg {

class OpKind {
 public:
  constexpr OpKind(OpId id)  // NOLINT: implicit on purpose
      : name_(op_name(id)), inputs_(kOpInputNames[static_cast<size_t>(id)]), id_(static_cast<int>(id)) {}
  // A library op outside the OpId list whose name has static storage (a string literal); `inputs` its
  // tensor inputs' names, space-separated.
  static constexpr OpKind library(std::string_view static_name, std::string_view inputs = "x") {
    return OpKind(static_name, inputs, -1);
  }
  // A user's op: `name` is checked (letters, digits, '_', '.', ':' or '-', not a built-in op's name),
  // then interned, so that the same name always gives the same kind. Throws mg::Error naming the rule.
  static OpKind custom(std::string_view name);

  constexpr std::string_view name() const { return name_; }
  // The OpId of a listed op, or -1 for any other kind.
  constexpr int id() const { return id_; }
  // The name of tensor input `i` ("delta" for selective_scan's input 1, "xs[2]" for cat's third), or ""
  // where the op names none (a user's op, or past the op's list).
  std::string input_name(size_t i) const;
  constexpr bool operator==(const OpKind& o) const { return name_.data() == o.name_.data() || name_ == o.name_; }

 private:
  constexpr OpKind(std::string_view name, std::string_view inputs, int id) : name_(name), inputs_(inputs), id_(id) {}
  std::string_view name_;
  std::string_view inputs_;
  int id_ = -1;
};

inline std::string_view op_name(const OpKind& k) { return k.name(); }

// The names of the library's own differentiable ops: the OpId list, then the unary list.
const std::vector<std::string_view>& library_op_names();
bool is_library_op_name(std::string_view name);

}  // namespace mg
