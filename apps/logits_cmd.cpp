// `mambagrad logits --run DIR --input FILE --out OUT.safetensors [--bytes N] [--device D]`: the full forward of a
// trained run's model over the first N bytes of a file, as one sequence, written as safetensors
// {"tokens": int64 (1, N), "logits": float32 (1, N, vocab)} (vocab: the model's padded vocabulary,
// as in config.json). For cross-checks against other implementations, such as Hugging Face
// transformers' MambaForCausalLM (tests/reference/compare_transformers.py).
#include "core/format.h"

#include "apps/commands.h"
#include "apps/device_option.h"
#include "apps/option_checks.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/memory_limit.h"
#include "data/bytes.h"
#include "train/run_folder.h"
#include "io/output_file.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace mg::app {

void add_logits_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string run_dir, input, out, device = "cpu";
    int64_t bytes = 256;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("logits", "write a run's logits over the first bytes of a file (safetensors)");
  cmd->add_option("--run", o->run_dir, "run folder")->required();
  cmd->add_option("--input", o->input, "byte file (a zip or gzip is decoded, anything else is read raw)")->required();
  cmd->add_option("--out", o->out, "output .safetensors file")->required();
  cmd->add_option("--bytes", o->bytes, "sequence length: the first N bytes of the file")
      ->capture_default_str()
      ->check(at_least(1));
  add_device_option(cmd, o->device, "run the forward on this device (the file is written from a host copy)");
  cmd->callback([o, &run] {
    run = [o] {
      // An output never replaces a device, a file it reads (the input, the run's training data) or a run's own
      // files (io/output_file.h).
      const std::optional<TrainOptions> recorded = find_run_options(o->run_dir);
      // In a folder of a model alone (no run, so no run files to refuse), the model files it loads too.
      std::vector<std::string> reads{o->input};
      if (!recorded) reads.insert(reads.end(), {o->run_dir + "/" + kModelFile, o->run_dir + "/" + kConfigFile});
      check_output_path(o->out, {"logits", "--out", reads, "", recorded ? recorded->data : "", OutputKind::Logits});
      const Device device = resolve_device(o->device, "logits");
      auto model = load_model(o->run_dir, device);
      check_fits_in_memory(model->config().forward_bytes((double)o->bytes), "logits",
                           mg::format("the forward over --bytes {} (logits of (1, {}, {}) float32)", o->bytes, o->bytes,
                                      model->config().padded_vocab()),
                           "; use a smaller --bytes");
      std::vector<uint8_t> data = read_byte_file(o->input, "--input");
      MG_CHECK((int64_t)data.size() >= o->bytes, "[logits] {} has {} bytes, fewer than --bytes {}", o->input,
               data.size(), o->bytes);
      std::vector<int64_t> toks(data.begin(), data.begin() + o->bytes);
      Tensor tokens = from_vector<int64_t>(toks, {1, o->bytes});
      Tensor logits;
      {
        NoGradGuard ng;
        logits = model->forward(tokens.to(device));  // (1, N, padded vocab), float32, on `device`
      }
      save_safetensors(o->out, {{"tokens", tokens}, {"logits", logits}});
      mg::print("wrote {}: tokens (1, {}), logits (1, {}, {})\n", o->out, o->bytes, o->bytes, logits.size(-1));
      return 0;
    };
  });
}

}  // namespace mg::app
