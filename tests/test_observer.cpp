// The engine's window for tools (autograd/observer.h): an observer hears each op's entry and return,
// each saved tensor, each node record() makes (or does not), backward's start and end and each vjp;
// several may listen at once, and a removed one hears nothing.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "autograd/node.h"
#include "ops/ops.h"
#include "tests/check.h"

using namespace mg;

namespace {

struct Counter : EngineObserver {
  std::map<std::string, int> n;
  std::vector<std::string> ops, nodes, vjps;
  int open_ops = 0, max_open = 0;
  void op_begin(OpKind op, const Tensor* const*, size_t) override {
    ++n["op_begin"], ops.emplace_back(op.name());
    max_open = std::max(max_open, ++open_ops);
  }
  void op_end(OpKind) override { ++n["op_end"], --open_ops; }
  void tensor_saved(const Tensor&, OpKind op) override { ++n["saved " + std::string(op.name())]; }
  void node_created(OpKind op, Node* node, const std::vector<Tensor*>&) override {
    nodes.push_back(std::string(op.name()) + (node ? "" : " (none)"));
  }
  void backward_begin(const std::vector<Tensor>&, const std::vector<Tensor>&) override { ++n["backward_begin"]; }
  void backward_end() override { ++n["backward_end"]; }
  void vjp_begin(const Node& node, const std::vector<Tensor>&) override { vjps.emplace_back(node.name()); }
  void vjp_end(const Node&, const std::vector<Tensor>&) override { ++n["vjp_end"]; }
};

// Removes the observer however the test case ends (a failed REQUIRE must not leave it installed).
struct Installed {
  EngineObserver* o;
  ~Installed() { remove_engine_observer(o); }
};

// Each node reachable from `root`, once (the reference for how many vjps a backward runs).
size_t reachable_nodes(const Tensor& root) {
  std::set<Node*> seen{root.grad_fn().get()};
  std::vector<Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges)
      if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  return seen.size();
}

}  // namespace

TEST_CASE("engine observer: hears ops, saved tensors, nodes, backward and each vjp, while installed") {
  REQUIRE_FALSE(observers::any());
  Counter c, d;
  Installed ic{&c}, id{&d};
  add_engine_observer(&c);
  add_engine_observer(&c);  // once only
  add_engine_observer(&d);
  CHECK(observers::any());
  Tensor x = from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
  Tensor y = from_vector<double>({3.0, 4.0}, {2}).requires_grad_();
  Tensor loss = sum(mul(x, y));
  {
    NoGradGuard off;
    mul(x, y);  // recorded nothing: the observer hears of it with no node
  }
  CHECK(c.n["op_begin"] == c.n["op_end"]);
  CHECK(c.open_ops == 0);
  CHECK(c.ops.size() >= 3);
  CHECK(c.ops[0] == "mul");
  CHECK(c.n["saved mul"] >= 2);  // x and y, for each other's gradient
  // The nodes made are mul's and sum's; the ops sum runs inside (on tensors needing no gradient) and
  // the mul under NoGradGuard made none.
  std::vector<std::string> made;
  for (const std::string& s : c.nodes)
    if (!s.ends_with("(none)")) made.push_back(s);
  CHECK(made == std::vector<std::string>{"mul", "sum"});
  CHECK(c.nodes.back() == "mul (none)");
  const size_t nodes = reachable_nodes(loss);  // sum, mul, and x's and y's AccumulateGrad
  CHECK(nodes == 4);
  loss.backward();
  CHECK(c.n["backward_begin"] == 1);
  CHECK(c.n["backward_end"] == 1);
  CHECK(c.vjps.size() == nodes);
  CHECK(c.vjps.front() == "sum");
  CHECK(c.n["vjp_end"] == (int)nodes);
  CHECK(d.vjps == c.vjps);  // the second observer hears the same
  remove_engine_observer(&c);
  remove_engine_observer(&d);
  CHECK_FALSE(observers::any());
  const auto before = c.n;
  sum(mul(x, y)).backward();
  CHECK(c.n == before);
}

TEST_CASE("engine observer: backward_end comes when a vjp throws") {
  Counter c;
  Installed ic{&c};
  add_engine_observer(&c);
  Tensor x = from_vector<double>({1.0}, {1}).requires_grad_();
  Tensor out = mul_scalar(x, 2.0);
  Tensor bad;
  {
    NoGradGuard off;
    bad = mul_scalar(out, 1.0);
  }
  record(OpKind::custom("throwing_vjp"), {out}, {&bad},
         [](const VjpArgs&) -> std::vector<Tensor> { throw Error("[test] this vjp throws"); });
  check_error([&] { sum(bad).backward(); }, {"[test] this vjp throws"});
  remove_engine_observer(&c);
  CHECK(c.n["backward_begin"] == 1);
  CHECK(c.n["backward_end"] == 1);
  CHECK(c.vjps == std::vector<std::string>{"sum", "throwing_vjp"});
  CHECK(c.n["vjp_end"] == 1);  // sum's; the throwing vjp has none
}
