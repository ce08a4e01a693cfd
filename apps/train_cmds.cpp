// `mambagrad train`, `eval` and `generate`: thin wrappers over train/trainer.h. Each takes
// `--device cpu|cuda|cuda:N`, checked before any work (apps/device_option.h).
#include <cstdio>

#include "apps/commands.h"
#include "apps/device_option.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace mg::app {

void add_train_command(CLI::App& app, Run& run) {
  auto o = std::make_shared<TrainOptions>();
  struct Over {
    int64_t d_model = 0, n_layer = 0, d_state = 0, d_conv = 0, expand = 0, dt_rank = -1;
    std::string resume, device = "cpu";
    bool quiet = false;
  };
  auto ov = std::make_shared<Over>();
  auto* cmd = app.add_subcommand("train", "train a Mamba LM on enwik8 or any byte file");
  cmd->add_option("--data", o->data, "enwik8.zip, a .gz file or any byte file");
  cmd->add_option("--out", o->out, "run folder (checkpoints, metrics.jsonl, curves.svg)")->capture_default_str();
  cmd->add_option("--preset", o->preset, "tiny, small or base")->capture_default_str();
  cmd->add_option("--d-model", ov->d_model, "override the preset's d_model");
  cmd->add_option("--n-layer", ov->n_layer, "override the number of layers");
  cmd->add_option("--d-state", ov->d_state, "override the SSM state size");
  cmd->add_option("--d-conv", ov->d_conv, "override the conv width");
  cmd->add_option("--expand", ov->expand, "override d_inner / d_model");
  cmd->add_option("--dt-rank", ov->dt_rank, "override dt_rank (0: ceil(d_model / 16))");
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq", o->seq, "bytes per sequence")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "linear warm-up steps (-1: min(100, steps / 10))")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay on matrices")->capture_default_str();
  cmd->add_option("--clip", o->clip, "global gradient-norm clip")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "validation and checkpoint every K steps")->capture_default_str();
  cmd->add_option("--eval-bytes", o->eval_bytes, "validation bytes per evaluation (-1: all)")->capture_default_str();
  cmd->add_option("--test-bytes", o->test_bytes, "test bytes at the end (-1: all)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the initialisation and the batches")->capture_default_str();
  cmd->add_option("--resume", ov->resume, "continue the run in this folder");
  cmd->add_option("--stop-at", o->stop_at, "save and stop after this step (continue later with --resume)");
  cmd->add_flag("--quiet", ov->quiet, "no progress output");
  add_device_option(cmd, ov->device, "train on this device (a run may resume on another)");
  cmd->callback([o, ov, cmd, &run] {
    run = [o, ov, cmd] {
      const Device device = resolve_device(ov->device, "train");
      TrainOptions opts = *o;
      bool resume = !ov->resume.empty();
      if (resume) {
        opts = load_run_options(ov->resume);
        opts.out = ov->resume;
        if (cmd->count("--steps")) opts.steps = o->steps;
        if (cmd->count("--eval-every")) opts.eval_every = o->eval_every;
        if (cmd->count("--data")) opts.data = o->data;
      } else {
        MG_CHECK(!opts.data.empty(),
                 "[train] --data is required: a byte file such as enwik8.zip (download it with: curl -LO "
                 "http://mattmahoney.net/dc/enwik8.zip)");
        opts.config = MambaConfig::preset(opts.preset);
        if (ov->d_model) opts.config.d_model = ov->d_model;
        if (ov->n_layer) opts.config.n_layer = ov->n_layer;
        if (ov->d_state) opts.config.d_state = ov->d_state;
        if (ov->d_conv) opts.config.d_conv = ov->d_conv;
        if (ov->expand) opts.config.expand = ov->expand;
        if (ov->dt_rank >= 0) opts.config.dt_rank = ov->dt_rank;
      }
      opts.progress = !ov->quiet;
      opts.stop_at = o->stop_at;
      opts.device = device;
      train(opts, resume);
      return 0;
    };
  });
}

void add_eval_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string run_dir, split = "test", data, device = "cpu";
    int64_t bytes = -1, batch = 16, seq = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("eval", "loss, bits per character and perplexity of a trained run");
  cmd->add_option("--run", o->run_dir, "run folder")->required();
  cmd->add_option("--split", o->split, "train, validation or test")->capture_default_str();
  cmd->add_option("--data", o->data, "byte file (default: the one the run trained on)");
  cmd->add_option("--bytes", o->bytes, "evaluate only the first N bytes of the split (-1: all)")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per batch")->capture_default_str();
  cmd->add_option("--seq", o->seq, "bytes per window (default: the run's)");
  add_device_option(cmd, o->device, "evaluate on this device");
  cmd->callback([o, &run] {
    run = [o] {
      const Device device = resolve_device(o->device, "eval");
      TrainOptions opts = load_run_options(o->run_dir);
      auto model = load_model(o->run_dir, device);
      std::string path = o->data.empty() ? opts.data : o->data;
      ByteSplits s = split_bytes(read_byte_file(path));
      MG_CHECK(o->split == "train" || o->split == "validation" || o->split == "test",
               "[eval] unknown split '{}' (valid: train, validation, test)", o->split);
      ByteDataset set(o->split == "train" ? std::move(s.train) : o->split == "validation" ? std::move(s.val) : std::move(s.test),
                      o->split);
      int64_t seq = o->seq > 0 ? o->seq : opts.seq;
      EvalResult r = evaluate(*model, set, o->batch, seq, o->bytes);
      fmt::print("{} split of {}: {} bytes predicted\nloss {:.4f} nats | bpc {:.4f} | perplexity {:.4f}\n", o->split,
                 path, r.targets, r.loss, r.bpc(), r.perplexity());
      return 0;
    };
  });
}

void add_generate_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string run_dir, prompt, device = "cpu";
    SampleOptions s;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "sample bytes from a trained run with the recurrent step");
  cmd->add_option("--run", o->run_dir, "run folder")->required();
  cmd->add_option("--prompt", o->prompt, "text to start from");
  cmd->add_option("--bytes", o->s.bytes, "bytes to sample")->capture_default_str();
  cmd->add_option("--temperature", o->s.temperature, "0 means greedy")->capture_default_str();
  cmd->add_option("--top-k", o->s.top_k, "sample among the k likeliest bytes (0: all)")->capture_default_str();
  cmd->add_option("--seed", o->s.seed, "sampling seed")->capture_default_str();
  add_device_option(cmd, o->device, "run the model on this device");
  cmd->callback([o, &run] {
    run = [o] {
      const Device device = resolve_device(o->device, "generate");
      auto model = load_model(o->run_dir, device);
      std::fwrite(o->prompt.data(), 1, o->prompt.size(), stdout);
      generate(*model, o->prompt, o->s, [](char c) {
        std::fputc(c, stdout);
        std::fflush(stdout);
      });
      std::fputc('\n', stdout);
      return 0;
    };
  });
}

}  // namespace mg::app
