// The Mamba language model, exactly the official architecture and initialisation (docs/design.md#the-mamba-block),
// with Hugging Face's parameter names so checkpoints load in transformers' MambaForCausalLM.
#pragma once
#include <string>
#include <vector>

#include "models/layers.h"
#include "ops/ops.h"

namespace mg {

struct MambaConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 256;
  int64_t n_layer = 4;
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0: ceil(d_model / 16)
  double norm_eps = 1e-5;

  int64_t d_inner() const { return expand * d_model; }
  int64_t rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  // Vocabularies other than 256 are padded to a multiple of 8 (rows past the real ones are unused).
  int64_t padded_vocab() const { return (vocab_size + 7) / 8 * 8; }
  void validate() const;  // throws naming the field

  // "tiny" (tests, ~80k parameters), "small" (d_model 256, 4 layers), "base" (d_model 512, 8 layers).
  static MambaConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();

  // config.json in Hugging Face's format (docs/design.md#checkpoints-and-the-run-folder), and back.
  std::string to_json() const;
  static MambaConfig from_json(const std::string& text, const std::string& source);
};

// Recurrent state of one layer for step(): the last d_conv inputs of the conv, and the SSM state.
struct LayerState {
  Tensor conv;  // (b, d_inner, d_conv), oldest first
  Tensor ssm;   // (b, d_inner, d_state)
};

class MambaMixer : public Module {
 public:
  MambaMixer(const MambaConfig& cfg, Generator& gen);
  // (b, l, d_model) -> (b, l, d_model)
  Tensor forward(const Tensor& x) const;
  // One token per sequence: (b, d_model) -> (b, d_model), updating `state`. No autograd. On the CPU
  // a fused loop over the raw data; on other devices step_composed.
  Tensor step(const Tensor& x, LayerState& state) const;
  // The same step written with ops only, so it runs on any device (public for the tests, which
  // compare it with the CPU loop). Replaces state.conv and state.ssm with new tensors.
  Tensor step_composed(const Tensor& x, LayerState& state) const;

  std::shared_ptr<Linear> in_proj, x_proj, dt_proj, out_proj;
  Tensor conv_weight, conv_bias;  // (d_inner, 1, d_conv), (d_inner)
  Tensor A_log, D;                // (d_inner, d_state), (d_inner)
  MambaConfig cfg;
};

class MambaBlock : public Module {
 public:
  MambaBlock(const MambaConfig& cfg, Generator& gen);
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<MambaMixer> mixer;
};

class MambaLM : public Module {
 public:
  // Initialised from `seed` (docs/design.md#initialisation).
  MambaLM(const MambaConfig& cfg, uint64_t seed = 0);
  // tokens (b, l) int64, on the model's device (Module::to) -> logits (b, l, padded_vocab)
  Tensor forward(const Tensor& tokens) const;
  // Mean cross-entropy in nats of predicting `targets` (b, l) from `tokens` (b, l).
  Tensor loss(const Tensor& tokens, const Tensor& targets) const;

  // Recurrent inference: a fresh state for `batch` sequences (on the model's device), and one token
  // per sequence (int64 (b,), on the model's device) -> logits (b, padded_vocab). Costs
  // O(layers * d_inner * d_state) per token.
  std::vector<LayerState> initial_state(int64_t batch) const;
  Tensor step(const Tensor& tokens, std::vector<LayerState>& state) const;

  const MambaConfig& config() const { return cfg_; }

  std::shared_ptr<Embedding> embeddings;
  std::vector<std::shared_ptr<MambaBlock>> layers;
  std::shared_ptr<RMSNorm> norm_f;

 private:
  MambaConfig cfg_;
};

}  // namespace mg
