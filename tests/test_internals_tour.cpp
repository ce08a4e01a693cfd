// The code of docs/internals.md, compiled and run: each block between TOUR-BEGIN and TOUR-END markers
// must appear verbatim in the doc, and each block the doc quotes from a source file (after a
// "<!-- quoted from FILE -->" line) must appear verbatim in that file. So the tour cannot drift from
// the engine it describes.
#include <doctest/doctest.h>

#include <any>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "ops/function.h"
#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "models/mamba.h"
#include "ops/ops.h"

using namespace mg;

namespace {

// TOUR-BEGIN count_nodes
// Every node reachable from `root`, each counted once by its name, found with an explicit stack
// (the engine's first pass walks the graph the same way).
std::map<std::string, int> count_nodes(const Tensor& root) {
  std::map<std::string, int> kinds;
  std::set<Node*> seen{root.grad_fn().get()};
  std::vector<Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    kinds[std::string(n->name())]++;
    for (const Edge& e : n->next_edges)
      if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  return kinds;
}
// TOUR-END

// TOUR-BEGIN tiny_mamba
void tour_tiny_mamba() {
  MambaConfig cfg = MambaConfig::preset("tiny");
  cfg.n_layer = 1;  // one block shows every kind of node
  MambaLM model(cfg, /*seed=*/0);
  Generator gen(1);
  Tensor tokens = randint(0, 256, {2, 16}, &gen);   // (b, l)
  Tensor targets = randint(0, 256, {2, 16}, &gen);  // (b, l)
  Tensor loss = model.loss(tokens, targets);        // 0-dim, made by cross_entropy's node

  std::map<std::string, int> kinds = count_nodes(loss);
  CHECK(loss.grad_fn()->name() == "cross_entropy");
  CHECK(kinds["AccumulateGrad"] == 12);  // one per parameter
  CHECK(kinds["selective_scan"] == 1);
  CHECK(kinds["causal_conv1d"] == 1);
  CHECK(kinds["rms_norm"] == 2);  // the block's norm and norm_f

  loss.backward();  // run_backward({loss}, {ones like the loss}, false)
  for (auto& [name, p] : model.state_dict()) CHECK(p.grad().defined());
  CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("backward through the graph a second time"), Error);
}
// TOUR-END

// TOUR-BEGIN diamond
void tour_diamond() {
  Tensor x = from_vector<double>({0.5, -1.0}, {2}).requires_grad_();
  Tensor y = exp(x);          // exp's node
  Tensor z = sum(mul(y, y));  // mul's two edges both lead to exp's node
  std::shared_ptr<Node> mul_node = z.grad_fn()->next_edges[0].fn;
  CHECK(mul_node->name() == "mul");
  CHECK(mul_node->next_edges[0].fn == mul_node->next_edges[1].fn);
  z.backward();  // exp runs once, on the sum of both gradients
  std::vector<double> g = x.grad().to_vector<double>();
  CHECK(g[0] == doctest::Approx(2 * std::exp(1.0)));  // d/dx sum(exp(x)^2) = 2 exp(2x)
  CHECK(g[1] == doctest::Approx(2 * std::exp(-2.0)));
}
// TOUR-END

// TOUR-BEGIN saved_version
void tour_saved_version() {
  Tensor w = ones({3}).requires_grad_();
  Tensor a = full({3}, 2.0);
  Tensor y = sum(mul(w, a));  // mul saves a (dw = g * a) at its version, 0
  a.add_(a);                  // in place: a's storage version becomes 1
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("was modified in place after it was saved"), Error);
}
// TOUR-END

// TOUR-BEGIN accumulate_grad
void tour_accumulate_grad() {
  Tensor p = zeros({4}).requires_grad_();
  Edge edge = gradient_edge(p);  // a leaf's edge: its AccumulateGrad node
  CHECK(edge.fn->name() == "AccumulateGrad");
  sum(mul_scalar(p, 3.0)).backward();  // .grad takes the incoming gradient, no copy
  sum(mul_scalar(p, 3.0)).backward();  // a second backward adds into .grad in place
  CHECK(p.grad().to_vector<float>() == std::vector<float>{6, 6, 6, 6});
  {
    NoGradGuard no_grad;  // grad mode off: nothing is recorded
    CHECK(!mul_scalar(p, 3.0).requires_grad());
  }
  CHECK(mul_scalar(p, 3.0).requires_grad());
}
// TOUR-END

// TOUR-BEGIN gradcheck
void tour_gradcheck() {
  Generator gen(2);
  Tensor x = gc_randn({3, 8}, gen, kCPU), w = gc_randn({8}, gen, kCPU);  // float64, requiring grad
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, {x, w});
  CHECK(r.pass);
}
// TOUR-END

// TOUR-BEGIN elementwise
void tour_elementwise() {
  Tensor x = from_vector<double>({-0.5, 0.0, 2.0}, {3}).requires_grad_();
  Tensor y = log1p(x);                    // defined in ops/elementwise.cpp from the entry
  CHECK(y.grad_fn()->name() == "log1p");  // its node, named by the entry
  sum(y).backward();                      // the vjp: g * df(x, y) = g / (1 + x)
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 1.0, 1.0 / 3.0});
  GradcheckSummary s = run_gradcheck({.op = "log1p", .print = false});  // the case the entry generates
  CHECK(s.passed == 1);
  CHECK(s.failed == 0);
}
// TOUR-END

// TOUR-BEGIN custom_op
// swish(x) = x * sigmoid(beta * x), with a backward of its own that recomputes the sigmoid from x.
struct Swish : Function<Swish> {
  static constexpr const char* name = "swish";
  static Tensor forward(FunctionCtx& ctx, const Tensor& x, double beta) {
    ctx.save_for_backward({x});                   // version-checked, like a built-in op's
    ctx.saved_data["beta"] = beta;                // anything else backward needs
    return mul(x, sigmoid(mul_scalar(x, beta)));  // library ops (grad mode is off here) or a kernel
  }
  static std::vector<Tensor> backward(FunctionCtx& ctx, const std::vector<Tensor>& grads) {
    const Tensor x = ctx.saved()[0];
    const double beta = std::any_cast<double>(ctx.saved_data["beta"]);
    const Tensor s = sigmoid(mul_scalar(x, beta));  // d/dx = s + beta x s (1 - s)
    return {mul(grads[0], add(s, mul(mul_scalar(x, beta), mul(s, 1.0 - s))))};
  }
};

void tour_custom_op() {
  Generator gen(3);
  Tensor x = gc_randn({4, 3}, gen, kCPU);  // float64, requiring grad
  Tensor y = Swish::apply(x, 1.5);
  CHECK(y.grad_fn()->name() == "swish");       // one node, under the op's own name
  CHECK(y.grad_fn()->next_edges.size() == 1);  // an edge per tensor argument
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return Swish::apply(in[0], 1.5); }, {x});
  CHECK(r.pass);
}
// TOUR-END

std::string slurp(const std::string& rel) {
  std::ifstream f(std::string(MG_SOURCE_DIR) + "/" + rel);
  REQUIRE_MESSAGE(f.good(), "cannot read " << rel);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("internals tour: the tiny Mamba's graph and its backward") { tour_tiny_mamba(); }
TEST_CASE("internals tour: a node used twice runs once, on the summed gradient") { tour_diamond(); }
TEST_CASE("internals tour: an in-place change to a saved tensor is caught") { tour_saved_version(); }
TEST_CASE("internals tour: AccumulateGrad and grad mode") { tour_accumulate_grad(); }
TEST_CASE("internals tour: gradcheck of rms_norm") { tour_gradcheck(); }
TEST_CASE("internals tour: an elementwise op from its list entry") { tour_elementwise(); }
TEST_CASE("internals tour: an op of the user's own, named and gradchecked") { tour_custom_op(); }

TEST_CASE("internals tour: docs/internals.md shows this file's code verbatim") {
  const std::string self = slurp("tests/test_internals_tour.cpp"), doc = slurp("docs/internals.md");
  // The markers are split so that these lines do not match themselves.
  const std::string begin = std::string("// TOUR-") + "BEGIN ", end = std::string("// TOUR-") + "END";
  int blocks = 0;
  for (size_t b = self.find(begin); b != std::string::npos; b = self.find(begin, b + 1)) {
    const size_t body = self.find('\n', b) + 1, e = self.find(end, body);
    REQUIRE(e != std::string::npos);
    std::string code = self.substr(body, e - body);
    INFO("block " << self.substr(b + begin.size(), body - 1 - b - begin.size()) << " is not in docs/internals.md");
    CHECK(doc.find("```cpp\n" + code + "```") != std::string::npos);
    ++blocks;
  }
  CHECK(blocks == 8);
}

TEST_CASE("internals tour: the code docs/internals.md quotes is in the files it names") {
  const std::string doc = slurp("docs/internals.md"), marker = "<!-- quoted from ";
  int quotes = 0;
  for (size_t m = doc.find(marker); m != std::string::npos; m = doc.find(marker, m + 1)) {
    const size_t name_end = doc.find(" -->", m);
    const std::string file = doc.substr(m + marker.size(), name_end - m - marker.size());
    const size_t open = doc.find("```cpp\n", name_end), close = doc.find("```\n", open + 7);
    REQUIRE(open != std::string::npos);
    REQUIRE(close != std::string::npos);
    const std::string code = doc.substr(open + 7, close - open - 7);
    INFO("docs/internals.md quotes " << file << " but it no longer holds:\n" << code);
    CHECK(slurp(file).find(code) != std::string::npos);
    ++quotes;
  }
  CHECK(quotes >= 3);
}
