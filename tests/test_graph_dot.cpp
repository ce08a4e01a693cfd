// autograd_graph_dot (introspect/graph_dot.h): the recorded graph as Graphviz DOT, node for node.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "introspect/anomaly.h"
#include "introspect/graph_dot.h"
#include "models/mamba.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/temp_dir.h"

using namespace mg;
using test::run_cli;

namespace {
std::vector<std::string> lines_with(const std::string& dot, const std::string& part) {
  std::vector<std::string> out;
  std::istringstream in(dot);
  for (std::string l; std::getline(in, l);)
    if (l.find(part) != std::string::npos) out.push_back(l);
  return out;
}
}  // namespace

TEST_CASE("graph: (a*b + a).sum() has exactly its ops, both leaves' AccumulateGrad and the edges between them") {
  Tensor a = from_vector<double>({1, 2}, {2}).requires_grad_(), b = from_vector<double>({3, 4}, {2}).requires_grad_();
  Tensor loss = sum(add(mul(a, b), a));
  const std::string dot = autograd_graph_dot(loss, {{a.impl_ptr().get(), "a"}, {b.impl_ptr().get(), "b"}});
  INFO(dot);
  // Numbered as first seen, depth first from the root: n0 sum, n1 add, n2 mul, n3 AccumulateGrad(a),
  // n4 AccumulateGrad(b). Edges go from an input's node to the node that used it.
  const std::string expected = R"(digraph autograd {
  node [shape=box, style=filled, fillcolor=lightgray, fontname=monospace, fontsize=10];
  n0 [label="sum\n() float64", fillcolor=darkolivegreen1];
  n1 [label="add\n(2,) float64"];
  n2 [label="mul\n(2,) float64"];
  n3 [label="AccumulateGrad"];
  v3 [label="a\n(2,) float64", fillcolor=lightblue];
  v3 -> n3;
  n4 [label="AccumulateGrad"];
  v4 [label="b\n(2,) float64", fillcolor=lightblue];
  v4 -> n4;
  n1 -> n0;
  n2 -> n1;
  n3 -> n1;
  n3 -> n2;
  n4 -> n2;
}
)";
  CHECK(dot == expected);
  check_error([&] { autograd_graph_dot(a); }, {"[graph] the root must be the output of a recorded op"});
}

TEST_CASE("graph: a tiny Mamba's loss names its parameters and groups nodes by module under AnomalyMode") {
  MambaConfig c = MambaConfig::preset("tiny");
  c.n_layer = 1;
  MambaLM m(c, 0);
  Generator g(1);
  Tensor tokens = randint(0, 256, {1, 4}, &g);
  Tensor loss;
  {
    AnomalyMode on;
    loss = m.loss(tokens, tokens);
  }
  std::map<const TensorImpl*, std::string> names;
  for (auto& p : m.named_parameters()) names[p.tensor.impl_ptr().get()] = p.name;
  const std::string dot = autograd_graph_dot(loss, names);
  // Every parameter appears once, by name, as a leaf feeding its AccumulateGrad.
  CHECK(lines_with(dot, "fillcolor=lightblue").size() == m.named_parameters().size());
  CHECK(lines_with(dot, "label=\"backbone.layers.0.mixer.A_log\\n(128, 16) float32\"").size() == 1);
  CHECK(lines_with(dot, "label=\"backbone.layers.0.mixer\"").size() == 1);
  CHECK(lines_with(dot, "label=\"backbone.layers.0.mixer.in_proj\"").size() == 1);
  CHECK(lines_with(dot, "label=\"selective_scan\\n(1, 4, 128) float32\"").size() == 1);
}

TEST_CASE("graph CLI: writes the DOT of a tiny loss, and --svg needs Graphviz and says so when it is missing") {
  test::TempDir d("graph");
  const std::string out = (d / "g.dot");
  auto r = run_cli({"graph", "--preset", "tiny", "--batch", "1", "--seq", "4", "--out", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const std::string dot = read_bytes(out);
  CHECK(dot.rfind("digraph autograd {", 0) == 0);
  CHECK(dot.find("label=\"backbone.layers.1.mixer\"") != std::string::npos);
  const bool have_dot = std::system("command -v dot >/dev/null 2>&1") == 0;
  r = run_cli({"graph", "--preset", "tiny", "--batch", "1", "--seq", "4", "--out", out, "--svg"});
  if (have_dot) {
    CHECK(r.exit_code == 0);
    CHECK(read_bytes(d / "g.svg").find("<svg") != std::string::npos);
  } else {
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("needs Graphviz's `dot`, which is not installed") != std::string::npos);
  }
}

TEST_CASE("graph CLI: --n-layer 1 draws one Mamba block (one scan, one conv), the tiny preset two") {
  test::TempDir d("graph_layers");
  auto count = [](const std::string& dot, const std::string& what) {
    size_t n = 0;
    for (size_t p = dot.find(what); p != std::string::npos; p = dot.find(what, p + 1)) ++n;
    return n;
  };
  auto r =
      run_cli({"graph", "--preset", "tiny", "--n-layer", "1", "--batch", "1", "--seq", "4", "--out", d / "one.dot"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const std::string one = read_bytes(d / "one.dot");
  CHECK(count(one, "label=\"selective_scan\\n") == 1);
  CHECK(count(one, "label=\"causal_conv1d\\n") == 1);
  CHECK(one.find("backbone.layers.1") == std::string::npos);
  r = run_cli({"graph", "--preset", "tiny", "--batch", "1", "--seq", "4", "--out", d / "two.dot"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count(read_bytes(d / "two.dot"), "label=\"selective_scan\\n") == 2);
  r = run_cli({"graph", "--n-layer", "0", "--out", d / "zero.dot"});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("--n-layer") != std::string::npos);
}
