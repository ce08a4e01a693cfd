// A tiny character model on any text file: read the bytes, train a small MambaLM for a few steps
// with the trainer's own step (train_step: loss, backward, clip, AdamW), then sample a continuation.
// The path a user takes to build a model of their own on the framework. Usage:
//   mambagrad_example_char_model FILE [STEPS]
// Exits 1 unless the loss went down.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/bytes.h"
#include "data/dataset.h"
#include "models/mamba.h"
#include "train/generate.h"
#include "train/optim.h"
#include "train/train_step.h"

using namespace mg;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [STEPS]  (any text file, e.g. README.md)\n", argv[0]);
    return 2;
  }
  int steps = 30;
  if (argc > 2) {  // a whole positive number, or the usage
    char* end = nullptr;
    const long v = std::strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || v < 1 || v > 1000000) {
      std::fprintf(stderr, "%s: STEPS must be an integer from 1 to 1000000, got '%s'\n", argv[0], argv[2]);
      return 2;
    }
    steps = int(v);
  }
  try {
    ByteDataset text(read_byte_file(argv[1]), argv[1]);
    MambaConfig cfg = MambaConfig::preset("tiny");
    cfg.n_layer = 1;
    MambaLM model(cfg, /*seed=*/0);
    AdamW opt(make_param_groups(model, 0.1), 3e-3);
    Generator gen(1);
    double first = 0, last = 0;
    for (int step = 0; step < steps; ++step) {
      Batch b = text.sample(/*batch=*/8, /*seq_len=*/64, gen);
      const StepResult r = train_step(model, opt, b, /*clip=*/1.0);
      last = r.loss;
      if (step == 0) first = last;
      if (step % 10 == 0) std::printf("step %3d  loss %.3f nats/byte\n", step, last);
    }
    std::printf("loss %.3f -> %.3f after %d steps of %lld parameters\n", first, last, steps,
                (long long)model.num_parameters());
    SampleOptions so;
    so.bytes = 80;
    std::printf("sample: %s\n", generate(model, "The ", so).c_str());
    return last < first ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
