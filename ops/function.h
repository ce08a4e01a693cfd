// User-defined differentiable ops, as torch.autograd.Function: the user names the op and writes its
// forward (library ops or a kernel of its own) and its backward. The op records one node under its own
// name, so the tools name it like a built-in op, and the engine checks its gradients like any other.
// examples/custom_op.cpp and docs/internals.md ("7. An op of your own: `Function`") show one whole:
//   struct Square : mg::Function<Square> {
//     static constexpr const char* name = "square";
//     static Tensor forward(FunctionCtx& ctx, const Tensor& x) { ctx.save_for_backward({x}); return mul(x, x); }
//     static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
//       return {mul(grads[0], mul_scalar(ctx.saved()[0], 2.0))};  // saved() throws if x changed in place
//     }
//   };
//   Tensor y = Square::apply(x);  // y.grad_fn()->name() == "square"
// forward runs with grad mode off and returns a Tensor or a std::vector<Tensor> (apply returns the same).
// Its arguments are tensors, lists of tensors (std::vector<Tensor>), optional tensors
// (std::optional<Tensor>: one input, undefined when empty) and other values (backward gets those through
// ctx.saved_data); the node's inputs are the tensors in order, a list's elements in its place (a pointer
// to a tensor, or tensors in another container, do not compile). backward gets one contiguous gradient per
// output (zeros where none came, or for a non-differentiable output), which it must not modify in place
// (checked), and returns one per input, undefined where !ctx.needs_input_grad(i). forward must not modify an
// input that needs a gradient in place (checked). An exception from forward
// or backward is rethrown as mg::Error naming the op and the pass. Every output is a new handle on what
// forward returned, so returning an input, a captured parameter or a cached tensor never rewrites its history.
#pragma once
#include <any>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "core/op_kind.h"

namespace mg {

class FunctionCtx;

// What ctx.saved() returns: the saved tensors in order, whose [] checks its index, so that a backward that
// reads a tensor its forward never saved gets an error naming the op (through apply_function) instead of
// reading past the list.
class SavedTensors : public std::vector<Tensor> {
 public:
  using std::vector<Tensor>::vector;
  const Tensor& operator[](size_t i) const;
  Tensor& operator[](size_t i) { return const_cast<Tensor&>(std::as_const(*this)[i]); }
};

using FunctionForward = std::function<std::vector<Tensor>(FunctionCtx&)>;
using FunctionBackward = std::function<std::vector<Tensor>(FunctionCtx&, const std::vector<Tensor>& grads)>;

class FunctionCtx {
 public:
  explicit FunctionCtx(OpKind op) : op_(op) {}
  OpKind op() const { return op_; }

  // Keeps tensors (inputs, outputs or intermediates) for backward, each with its storage's version:
  // saved() throws, naming the op, when one was modified in place in between, as built-in ops do.
  void save_for_backward(const std::vector<Tensor>& tensors);
  SavedTensors saved() const;

  // Outputs (as returned by forward) that get no gradient, such as indices or masks: they do not
  // require grad, and backward receives zeros for them. Integer outputs are non-differentiable anyway.
  void mark_non_differentiable(const std::vector<Tensor>& outputs);
  bool is_non_differentiable(const Tensor& output) const;

  // Whether tensor input `i` needs a gradient (grad mode on and it requires grad); valid in both passes.
  bool needs_input_grad(size_t i) const { return i < needs_.size() && needs_[i]; }

  // Anything else backward needs: ctx.saved_data["beta"] = beta; std::any_cast<double>(ctx.saved_data["beta"]).
  // Not tensors (a Tensor, a list or an optional one here is refused after forward): save_for_backward.
  std::map<std::string, std::any> saved_data;

 private:
  friend std::vector<Tensor> apply_function(OpKind, const std::vector<Tensor>&, const FunctionForward&,
                                            FunctionBackward);
  OpKind op_;
  std::vector<SavedTensor> saved_;
  std::vector<const TensorImpl*> non_differentiable_;
  std::vector<bool> needs_;
};

// The machinery under Function<>: runs `forward` (grad mode off, inside the op's OpScope), then,
// when an input needs a gradient, records one node of kind `op` over `inputs` whose vjp calls
// `backward`. `op` is OpKind::custom("name") for a user's op, or a library op's kind.
std::vector<Tensor> apply_function(OpKind op, const std::vector<Tensor>& inputs, const FunctionForward& forward,
                                   FunctionBackward backward);

// OpKind::custom(name) for the Function type `type`; throws mg::Error when another Function type already
// has that name (the two would share one kind: one row in the profiler, one set of gradcheck cases).
OpKind function_kind(std::string_view name, const std::type_info& type);

namespace detail {
// Tensors inside another container (std::array, std::span, std::list, a pair or a tuple) would be neither
// inputs nor get gradients: such an argument does not compile. (A struct holding tensors cannot be told
// apart from any other value: pass its tensors as arguments of their own.)
template <class T>
struct holds_tensors : std::false_type {};
template <class T>
requires requires { typename T::value_type; }
struct holds_tensors<T> : std::is_same<std::remove_cv_t<typename T::value_type>, Tensor> {};
template <class A, class B>
struct holds_tensors<std::pair<A, B>>
    : std::bool_constant<std::is_same_v<std::decay_t<A>, Tensor> || std::is_same_v<std::decay_t<B>, Tensor>> {};
template <class... Ts>
struct holds_tensors<std::tuple<Ts...>> : std::bool_constant<(std::is_same_v<std::decay_t<Ts>, Tensor> || ...)> {};

template <class A>
void collect_tensor(std::vector<Tensor>& out, const A& a) {
  using T = std::decay_t<A>;
  static_assert(!std::is_same_v<std::remove_cv_t<std::remove_pointer_t<T>>, Tensor> || !std::is_pointer_v<T>,
                "mg::Function::apply: pass a Tensor (or a std::vector<Tensor>), not a pointer to one: a pointer "
                "would be neither an input nor get a gradient");
  static_assert(
      std::is_same_v<T, std::vector<Tensor>> || std::is_same_v<T, std::optional<Tensor>> || !holds_tensors<T>::value,
      "mg::Function::apply: tensors inside this container would be neither inputs nor get gradients: pass "
      "them as Tensor arguments or in a std::vector<Tensor>");
  if constexpr (std::is_same_v<T, Tensor>)
    out.push_back(a);
  else if constexpr (std::is_same_v<T, std::vector<Tensor>>)
    out.insert(out.end(), a.begin(), a.end());
  else if constexpr (std::is_same_v<T, std::optional<Tensor>>)
    out.push_back(a.value_or(Tensor()));  // one input either way: undefined when empty (as an absent bias)
}
inline std::vector<Tensor> as_vector(Tensor t) { return {std::move(t)}; }
inline std::vector<Tensor> as_vector(std::vector<Tensor> ts) { return ts; }
}  // namespace detail

// The base of a user's op (CRTP): Derived has `static constexpr const char* name`, a static forward
// (FunctionCtx&, its arguments...) and a static backward (FunctionCtx&, const std::vector<Tensor>&).
template <class Derived>
struct Function {
  // The op's kind, its name interned (for gradcheck cases: GradcheckCase{Derived::kind(), ...}).
  static OpKind kind() {
    static const OpKind k = function_kind(Derived::name, typeid(Derived));
    return k;
  }

  template <class... Args>
  static auto apply(const Args&... args) {
    std::vector<Tensor> inputs;
    (detail::collect_tensor(inputs, args), ...);
    using R = decltype(Derived::forward(std::declval<FunctionCtx&>(), args...));
    std::vector<Tensor> out = apply_function(
        kind(), inputs, [&](FunctionCtx& ctx) { return detail::as_vector(Derived::forward(ctx, args...)); },
        [](FunctionCtx& ctx, const std::vector<Tensor>& grads) {
          return detail::as_vector(Derived::backward(ctx, grads));
        });
    if constexpr (std::is_same_v<std::decay_t<R>, Tensor>)
      return out.at(0);
    else
      return out;
  }
};

}  // namespace mg
