// `mambagrad graph [--preset tiny] [--n-layer N] [--batch 2] [--seq 16] [--seed 0] [--out graph.dot] [--svg]`: the
// autograd graph of one loss of a freshly initialised model, as Graphviz DOT (introspect/graph_dot.h):
// parameters by name, modules as clusters (the loss is built under AnomalyMode, which records each
// node's module path). --svg also runs `dot -Tsvg` when Graphviz is installed.
#include "core/format.h"

#include <cstdlib>

#include "apps/commands.h"
#include "apps/option_checks.h"
#include "introspect/anomaly.h"
#include "introspect/graph_dot.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/output_file.h"
#include "models/mamba.h"
#include "ops/ops.h"

namespace mg::app {

namespace {

// OUT with .svg for .dot (or .svg added).
std::string svg_path(const std::string& out) {
  const bool dot_ext = out.size() > 4 && out.ends_with(".dot");
  return (dot_ext ? out.substr(0, out.size() - 4) : out) + ".svg";
}

}  // namespace

void add_graph_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string preset = "tiny", out = "graph.dot";
    int64_t batch = 2, seq = 16, n_layer = 0;
    uint64_t seed = 0;
    bool svg = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      app.add_subcommand("graph", "write the autograd graph of one loss as Graphviz DOT (docs/introspection.md)");
  cmd->add_option("--preset", o->preset, "model preset")->capture_default_str();
  cmd->add_option("--n-layer", o->n_layer, "override the preset's number of layers (1: the graph of one Mamba block)")
      ->check(at_least(1));
  cmd->add_option("--batch", o->batch, "batch size")->capture_default_str()->check(at_least(1));
  cmd->add_option("--seq", o->seq, "sequence length")->capture_default_str()->check(at_least(1));
  add_checked(cmd, "--seed", o->seed, "seed of the initialisation and the random tokens", unsigned_integer());
  cmd->add_option("--out", o->out, "output .dot file")->capture_default_str();
  cmd->add_flag("--svg", o->svg, "also write the SVG (OUT with .svg for .dot) with Graphviz's dot (when installed)");
  cmd->callback([o, &run] {
    run = [o] {
      check_output_path(o->out, {"graph", "--out", {}, "", "", OutputKind::Dot});
      if (o->svg) check_output_path(svg_path(o->out), {"graph", "--out (its .svg)", {o->out}, "", "", OutputKind::Svg});
      MambaConfig config = MambaConfig::preset(o->preset);
      if (o->n_layer > 0) config.n_layer = o->n_layer;
      MambaLM model(config, o->seed);
      Generator gen(o->seed + 1);
      Tensor tokens = randint(0, 256, {o->batch, o->seq}, &gen), targets = randint(0, 256, {o->batch, o->seq}, &gen);
      Tensor loss;
      {
        AnomalyMode modules;  // records each node's module path (and checks the forward for NaN/inf)
        loss = model.loss(tokens, targets);
      }
      std::map<const TensorImpl*, std::string> names;
      for (const auto& p : model.named_parameters()) names[p.tensor.impl_ptr().get()] = p.name;
      const std::string dot = autograd_graph_dot(loss, names);
      write_file_atomic(o->out, dot);
      mg::print("wrote {}\n", o->out);
      if (o->svg) {
        if (std::system("command -v dot >/dev/null 2>&1") != 0) {
          mg::print(stderr,
                    "graph: --svg needs Graphviz's `dot`, which is not installed (e.g. apt-get install "
                    "graphviz); the DOT file {} is written\n",
                    o->out);
          return 1;
        }
        MG_CHECK(o->out.find('\'') == std::string::npos, "[graph] --svg: the path {} holds a quote", o->out);
        const std::string svg = svg_path(o->out);
        MG_CHECK(std::system(mg::format("dot -Tsvg '{}' -o '{}'", o->out, svg).c_str()) == 0,
                 "[graph] dot -Tsvg {} failed", o->out);
        mg::print("wrote {}\n", svg);
      }
      return 0;
    };
  });
}

}  // namespace mg::app
