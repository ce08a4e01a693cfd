// The Mamba language model, exactly the official architecture and initialisation (docs/design.md#the-mamba-block),
// with Hugging Face's parameter names so checkpoints load in transformers' MambaForCausalLM.
#pragma once
#include <mutex>
#include <string>
#include <vector>

#include "core/parallel.h"
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
  // The number of parameters (as a double: an estimate for memory bounds that cannot overflow).
  double num_parameters() const;
  // A lower bound of the bytes a forward without autograd over `tokens` tokens (in one batch) needs
  // beside the parameters: one layer's in_proj output and the float32 logits.
  double forward_bytes(double tokens) const;

  // "tiny" (tests, ~80k parameters), "small" (d_model 256, 4 layers), "base" (d_model 512, 8 layers).
  static MambaConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();

  // config.json in Hugging Face's format (docs/design.md#checkpoints-and-the-run-folder), and back.
  std::string to_json() const;
  static MambaConfig from_json(const std::string& text, const std::string& source);
};

// Recurrent state of one layer: what the layer needs of the past to go on one token at a time.
struct LayerState {
  Tensor conv;  // (b, d_inner, d_conv - 1): the conv's last d_conv - 1 inputs, oldest first
  Tensor ssm;   // (b, d_inner, d_state): the selective scan's state
};

class MambaMixer : public Module {
 public:
  MambaMixer(const MambaConfig& cfg, Generator& gen);
  // (b, l, d_model) -> (b, l, d_model), from `initial_state` when given (else zeros). With
  // `final_state`, also the state after the last position (the conv's last inputs and the scan's last
  // state), from which step() continues (the prefill) or the next window starts (carried state). Both
  // states are differentiable: a sequence cut in pieces gives the values and gradients of one call.
  Tensor forward(const Tensor& x, LayerState* final_state = nullptr, const LayerState* initial_state = nullptr) const;
  // One token per sequence: (b, d_model) -> (b, d_model), updating `state` in place with the fused
  // step ops (causal_conv1d_update_, selective_state_update_). No autograd.
  Tensor step(const Tensor& x, LayerState& state) const;
  // The same step written with primitive ops only (the reference the tests compare step() with).
  // Replaces state.conv and state.ssm with new tensors.
  Tensor step_composed(const Tensor& x, LayerState& state) const;

  std::shared_ptr<Linear> in_proj, x_proj, dt_proj, out_proj;
  Tensor conv_weight, conv_bias;  // (d_inner, 1, d_conv), (d_inner)
  Tensor A_log, D;                // (d_inner, d_state), (d_inner)
  MambaConfig cfg;

 private:
  // A = -exp(A_log) for step(), computed again only when A_log changed (its storage or version):
  // decoding would otherwise spend d_inner * d_state exponentials per layer and token on it.
  Tensor decay_for_step() const;
  mutable std::mutex a_mutex_;
  mutable Tensor a_cache_;
  mutable const void* a_cache_storage_ = nullptr;
  mutable uint64_t a_cache_version_ = 0;
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
  // The same, starting from `initial` (one LayerState per layer, batch b; empty: zeros) and setting
  // `final` to the states after the last token (differentiable; detach them to carry them into the
  // next window without backpropagating into this one).
  Tensor loss(const Tensor& tokens, const Tensor& targets, const std::vector<LayerState>& initial,
              std::vector<LayerState>& final) const;

  // Recurrent inference: a fresh (zero) state for `batch` sequences (on the model's device), and one
  // token per sequence (int64 (b,), on the model's device) -> logits (b, padded_vocab). Costs
  // O(layers * d_inner * d_state) per token.
  std::vector<LayerState> initial_state(int64_t batch) const;
  Tensor step(const Tensor& tokens, std::vector<LayerState>& state) const;
  // How step() uses threads on the CPU for 2 to 16 sequences: one thread for all rows, or the rows
  // split across the threads (each thread runs the whole step for its rows: one fork and join per
  // token instead of one per op). kAuto (the default) times both now and then and keeps the faster
  // (core/parallel.h, SplitChooser); the results are bit-identical either way.
  SplitChooser& step_threads() const { return *step_split_; }
  // The prompt through the parallel forward (the fused scan): tokens (b, l) -> the logits of the last
  // position (b, padded_vocab), and `state` set to the state after it, ready for step(). The same
  // result as step() over the prompt from initial_state, up to float rounding. No autograd.
  Tensor prefill(const Tensor& tokens, std::vector<LayerState>& state) const;

  const MambaConfig& config() const { return cfg_; }

  std::shared_ptr<Embedding> embeddings;
  std::vector<std::shared_ptr<MambaBlock>> layers;
  std::shared_ptr<RMSNorm> norm_f;

 private:
  // The residual stream after the last layer (b, l, d_model), before norm_f; fills `states` when given.
  Tensor backbone(const Tensor& tokens, std::vector<LayerState>* states,
                  const std::vector<LayerState>* initial = nullptr) const;
  void check_tokens(const Tensor& tokens, int64_t dims, const char* op) const;
  // norm_f then the tied head: hidden (b, l, d_model) -> logits (b, l, vocab).
  Tensor head(const Tensor& hidden) const;
  Tensor step_rows(const Tensor& tokens, std::vector<LayerState>& state) const;  // step() on one thread
  MambaConfig cfg_;
  std::shared_ptr<SplitChooser> step_split_ = std::make_shared<SplitChooser>();
};

}  // namespace mg
