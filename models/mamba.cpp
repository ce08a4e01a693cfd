#include "models/mamba.h"

#include "core/format.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>

#include "introspect/anomaly.h"
#include "autograd/grad_mode.h"
#include "core/checked.h"
#include "core/memory_limit.h"

namespace mg {

// ---- config ----

void MambaConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    MG_CHECK(v >= 1, "[config] {} must be at least 1, got {}", name, v);
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("n_layer", n_layer);
  positive("d_state", d_state);
  positive("d_conv", d_conv);
  positive("expand", expand);
  MG_CHECK(dt_rank >= 0, "[config] dt_rank must be 0 (auto: ceil(d_model / 16)) or positive, got {}", dt_rank);
  MG_CHECK(norm_eps > 0, "[config] norm_eps must be positive, got {}", norm_eps);
  // The sizes the model is built from must fit in int64 (each tensor's shape is checked again when made).
  const int64_t di = checked_mul(expand, d_model, "config", "d_inner = expand * d_model");
  checked_mul(2, di, "config", "in_proj's output size 2 * d_inner");
  checked_add(d_model, 15, "config", "d_model + 15 (for the automatic dt_rank)");
  checked_add(rank(), checked_mul(2, d_state, "config", "2 * d_state"), "config",
              "x_proj's output size dt_rank + 2 * d_state");
  checked_add(vocab_size, 7, "config", "vocab_size + 7 (for the padded vocabulary)");
}

std::vector<std::string> MambaConfig::preset_names() { return {"tiny", "small", "base"}; }

MambaConfig MambaConfig::preset(const std::string& name) {
  MambaConfig c;
  if (name == "tiny") {
    c.d_model = 64, c.n_layer = 2;
  } else if (name == "small") {
    c.d_model = 256, c.n_layer = 4;
  } else if (name == "base") {
    c.d_model = 512, c.n_layer = 8;
  } else {
    MG_THROW("[config] unknown preset '{}' (valid: {})", name, mg::join(preset_names(), ", "));
  }
  return c;
}

std::string MambaConfig::to_json() const {
  nlohmann::ordered_json j;
  j["model_type"] = "mamba";
  j["architectures"] = {"MambaForCausalLM"};
  j["vocab_size"] = padded_vocab();
  j["hidden_size"] = d_model;
  j["intermediate_size"] = d_inner();
  j["state_size"] = d_state;
  j["num_hidden_layers"] = n_layer;
  j["expand"] = expand;
  j["conv_kernel"] = d_conv;
  j["time_step_rank"] = rank();
  j["use_bias"] = false;
  j["use_conv_bias"] = true;
  j["layer_norm_epsilon"] = norm_eps;
  j["residual_in_fp32"] = true;
  j["tie_word_embeddings"] = true;
  j["mambagrad_vocab_size"] = vocab_size;  // the unpadded vocabulary
  return j.dump(2) + "\n";
}

namespace {

// config.json's fields, each read and checked once: errors name the file and the field, with the valid
// values. Sizes are exact integers (64.5 and 2^63 are refused, not truncated or wrapped).
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  const nlohmann::json& at(const char* key) const {
    MG_CHECK(j_.contains(key), "[config] {} has no \"{}\"", source_, key);
    return j_.at(key);
  }

  // An integer from lo to kMaxSize (exact: doubles hold every integer in that range).
  int64_t size(const char* key, int64_t lo) const {
    const nlohmann::json& v = at(key);
    const double d = v.is_number() ? v.get<double>() : std::nan("");
    MG_CHECK(d == std::floor(d) && d >= (double)lo && d <= (double)kMaxSize,
             "[config] \"{}\" in {} must be an integer from {} to {}, got {}", key, source_, lo, kMaxSize, v.dump());
    return (int64_t)d;
  }

  // A number in (0, 1) that stays so in float32 (the norms compute in float32).
  double epsilon(const char* key) const {
    const nlohmann::json& v = at(key);
    const double d = v.is_number() ? v.get<double>() : std::nan("");
    const float f = (float)d;
    MG_CHECK(v.is_number() && std::isfinite(f) && f > 0 && f < 1,
             "[config] \"{}\" in {} must be a number between 0 and 1 (exclusive) that float32 holds, such as 1e-5; "
             "got {}",
             key, source_, v.dump());
    return d;
  }

  // A field of Hugging Face's MambaConfig that this implementation supports with one value only: absent,
  // or that value (anything else would load a different model without a word).
  void fixed(const char* key, const nlohmann::json& supported, const char* meaning) const {
    if (!j_.contains(key) || j_.at(key) == supported) return;
    MG_THROW("[config] \"{}\" in {} is {}, which this implementation does not support: it supports only {} ({})", key,
             source_, j_.at(key).dump(), supported.dump(), meaning);
  }

  static constexpr int64_t kMaxSize = (int64_t(1) << 31) - 1;

 private:
  const nlohmann::json& j_;
  const std::string& source_;
};

}  // namespace

double MambaConfig::num_parameters() const {
  const double d = (double)d_model, di = (double)d_inner(), n = (double)d_state, r = (double)rank();
  const double layer =
      d * 2 * di + di * ((double)d_conv + 1) + di * (r + 2 * n) + (r + 1) * di + di * n + di + di * d + d;
  return (double)padded_vocab() * d + (double)n_layer * layer + d;
}

double MambaConfig::forward_bytes(double tokens) const {
  return 4 * tokens * ((double)padded_vocab() + 2 * (double)d_inner() + (double)d_model);
}

MambaConfig MambaConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    MG_THROW("[config] {} is not valid JSON: {}", source, e.what());
  }
  MG_CHECK(j.is_object(), "[config] {} is not a JSON object", source);
  const ConfigReader r(j, source);
  r.fixed("model_type", "mamba", "a Mamba model");
  r.fixed("use_bias", false, "in_proj and out_proj without bias");
  r.fixed("use_conv_bias", true, "the depthwise conv with a bias");
  r.fixed("tie_word_embeddings", true, "the LM head tied to the embeddings");
  r.fixed("hidden_act", "silu", "SiLU activations");
  MambaConfig c;
  c.d_model = r.size("hidden_size", 1);
  c.n_layer = r.size("num_hidden_layers", 1);
  c.d_state = r.size("state_size", 1);
  c.d_conv = r.size("conv_kernel", 1);
  c.expand = r.size("expand", 1);
  // Hugging Face writes the automatic rank as its value; "auto" is accepted as well.
  c.dt_rank = r.at("time_step_rank") == "auto" ? 0 : r.size("time_step_rank", 1);
  c.norm_eps = r.epsilon("layer_norm_epsilon");
  c.vocab_size = r.size(j.contains("mambagrad_vocab_size") ? "mambagrad_vocab_size" : "vocab_size", 1);
  if (j.contains("intermediate_size"))
    MG_CHECK(r.size("intermediate_size", 1) == c.d_inner(),
             "[config] \"intermediate_size\" in {} is {}, but expand {} * hidden_size {} is {}: this implementation "
             "supports only intermediate_size = expand * hidden_size",
             source, j.at("intermediate_size").dump(), c.expand, c.d_model, c.d_inner());
  c.validate();
  check_fits_in_memory(c.num_parameters() * 4, "config",
                       mg::format("the model of {} ({:.3g} float32 parameters: hidden_size {}, num_hidden_layers {}, "
                                  "state_size {}, expand {}, vocab_size {})",
                                  source, c.num_parameters(), c.d_model, c.n_layer, c.d_state, c.expand, c.vocab_size));
  return c;
}

// ---- mixer ----

MambaMixer::MambaMixer(const MambaConfig& c, Generator& gen) : cfg(c) {
  const int64_t di = c.d_inner(), n = c.d_state, R = c.rank(), k = c.d_conv;
  in_proj = register_module("in_proj", std::make_shared<Linear>(c.d_model, 2 * di, false, gen));
  // Depthwise Conv1d default init: fan_in = k (one input channel per group).
  const double cb = 1.0 / std::sqrt((double)k);
  conv_weight = register_parameter("conv1d.weight", rand({di, 1, k}, DType::f32, &gen, -cb, cb), true);
  conv_bias = register_parameter("conv1d.bias", rand({di}, DType::f32, &gen, -cb, cb), false);
  x_proj = register_module("x_proj", std::make_shared<Linear>(di, R + 2 * n, false, gen));
  dt_proj = register_module("dt_proj", std::make_shared<Linear>(R, di, true, gen));
  {
    NoGradGuard ng;
    const double s = 1.0 / std::sqrt((double)R);  // dt_init "random", dt_scale 1
    dt_proj->weight.copy_(rand({di, R}, DType::f32, &gen, -s, s));
    // dt = exp(U(ln 1e-3, ln 1e-1)) clamped >= 1e-4; the bias is its inverse softplus.
    Tensor u = rand({di}, DType::f64, &gen);
    std::vector<double> bias(di);
    auto uv = u.to_vector<double>();
    for (int64_t i = 0; i < di; ++i) {
      double dt = std::exp(uv[i] * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3));
      dt = std::max(dt, 1e-4);
      bias[i] = dt + std::log(-std::expm1(-dt));
    }
    dt_proj->bias.copy_(from_vector<double>(bias, {di}));
  }
  std::vector<float> alog(di * n);
  for (int64_t c2 = 0; c2 < di; ++c2)
    for (int64_t s = 0; s < n; ++s) alog[c2 * n + s] = (float)std::log((double)(s + 1));  // real S4D init
  A_log = register_parameter("A_log", from_vector<float>(alog, {di, n}), false);
  D = register_parameter("D", ones({di}), false);
  out_proj = register_module("out_proj", std::make_shared<Linear>(di, c.d_model, false, gen));
  {
    NoGradGuard ng;
    out_proj->weight.mul_(1.0 / std::sqrt((double)c.n_layer));
  }
}

Tensor MambaMixer::forward(const Tensor& x, LayerState* final_state, const LayerState* initial_state) const {
  const int64_t di = cfg.d_inner(), n = cfg.d_state, R = cfg.rank(), k = cfg.d_conv;
  Tensor xz;
  {
    ModulePathGuard path("in_proj");
    xz = in_proj->forward(x);  // (b, l, 2 di)
  }
  auto xs = split(xz, {di, di}, -1);
  // The conv's state is its last k - 1 inputs (b, di, k - 1); the scan's its last h (b, di, n).
  // The conv reads the x half of xz in place (rows 2 di apart), the scan the z half and x_dbl's B and C:
  // no copies. The conv's final state is gathered only when asked for (training does not).
  const Tensor conv_w = conv_weight.reshape({di, k}), conv_init = initial_state ? initial_state->conv : Tensor();
  ConvResult conv;
  if (final_state)
    conv = causal_conv1d_with_state(xs[0], conv_w, conv_bias, /*silu=*/true, conv_init);
  else
    conv.y = causal_conv1d(xs[0], conv_w, conv_bias, /*silu=*/true, conv_init);
  Tensor xc = conv.y;
  Tensor x_dbl;
  {
    ModulePathGuard path("x_proj");
    x_dbl = x_proj->forward(xc);  // (b, l, R + 2n)
  }
  auto p = split(x_dbl, {R, n, n}, -1);
  Tensor delta;
  {
    ModulePathGuard path("dt_proj");
    delta = linear(p[0], dt_proj->weight);  // (b, l, di); the bias goes in as delta_bias
  }
  Tensor A = neg(exp(A_log));
  ScanResult r = selective_scan(xc, delta, A, p[1], p[2], D, xs[1], dt_proj->bias,
                                /*delta_softplus=*/true, /*return_last_state=*/final_state != nullptr,
                                initial_state ? initial_state->ssm : Tensor());
  if (final_state) final_state->conv = conv.final_state, final_state->ssm = r.last_state;
  ModulePathGuard path("out_proj");
  return out_proj->forward(r.y);
}

Tensor MambaMixer::step_composed(const Tensor& x, LayerState& st) const {
  NoGradGuard ng;
  const int64_t di = cfg.d_inner(), n = cfg.d_state, R = cfg.rank(), k = cfg.d_conv;
  Tensor xz = in_proj->forward(x);  // (b, 2 di)
  Tensor xin = narrow(xz, 1, 0, di), z = narrow(xz, 1, di, di);
  Tensor window = cat({st.conv, unsqueeze(xin, 2)}, 2);                                   // (b, di, k), oldest first
  st.conv = contiguous(narrow(window, 2, 1, k - 1));                                      // drop the oldest input
  Tensor xc = silu(add(sum(mul(window, conv_weight.reshape({di, k})), {2}), conv_bias));  // (b, di)
  Tensor x_dbl = x_proj->forward(xc);                                                     // (b, R + 2n)
  Tensor delta = linear(narrow(x_dbl, 1, 0, R), dt_proj->weight);                         // (b, di)
  Tensor Bv = unsqueeze(narrow(x_dbl, 1, R, n), 1), Cv = unsqueeze(narrow(x_dbl, 1, R + n, n), 1);  // (b, 1, n)
  Tensor dt = softplus(add(delta, dt_proj->bias));                                                  // (b, di)
  Tensor dA = exp(mul(unsqueeze(dt, 2), neg(exp(A_log))));                                          // (b, di, n)
  st.ssm = add(mul(dA, st.ssm), mul(unsqueeze(mul(dt, xc), 2), Bv));                                // (b, di, n)
  Tensor y = add(sum(mul(st.ssm, Cv), {2}), mul(D, xc));                                            // (b, di)
  return out_proj->forward(mul(y, silu(z)));
}

Tensor MambaMixer::decay_for_step() const {
  std::lock_guard<std::mutex> lock(a_mutex_);
  const void* storage = A_log.storage().get();
  const uint64_t version = A_log.storage()->version();
  if (!a_cache_.defined() || a_cache_storage_ != storage || a_cache_version_ != version ||
      a_cache_.device() != A_log.device()) {
    a_cache_ = neg(exp(A_log.detach()));
    a_cache_storage_ = storage, a_cache_version_ = version;
  }
  return a_cache_;
}

Tensor MambaMixer::step(const Tensor& x, LayerState& st) const {
  NoGradGuard ng;
  const int64_t di = cfg.d_inner(), n = cfg.d_state, R = cfg.rank(), k = cfg.d_conv, b = x.size(0);
  Tensor xz = in_proj->forward(x);  // (b, 2 di); x and z are column ranges of it, read in place
  Tensor xc = Tensor::empty({b, di}, x.dtype(), x.device());
  causal_conv1d_update_(st.conv, narrow(xz, 1, 0, di), conv_weight.reshape({di, k}), conv_bias, /*silu=*/true, xc);
  Tensor x_dbl = x_proj->forward(xc);                              // (b, R + 2n)
  Tensor delta = linear(narrow(x_dbl, 1, 0, R), dt_proj->weight);  // (b, di); the bias goes in as dt_bias
  Tensor y = Tensor::empty({b, di}, x.dtype(), x.device());
  selective_state_update_(st.ssm, xc, delta, decay_for_step(), narrow(x_dbl, 1, R, n), narrow(x_dbl, 1, R + n, n), D,
                          narrow(xz, 1, di, di), dt_proj->bias, /*dt_softplus=*/true, y);
  return out_proj->forward(y);
}

// ---- the language model ----

MambaBlock::MambaBlock(const MambaConfig& cfg, Generator& gen) {
  mixer = register_module("mixer", std::make_shared<MambaMixer>(cfg, gen));
  norm = register_module("norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
}

MambaLM::MambaLM(const MambaConfig& cfg, uint64_t seed) : cfg_(cfg) {
  cfg.validate();
  Generator gen(seed);
  embeddings =
      register_module("backbone.embeddings", std::make_shared<Embedding>(cfg.padded_vocab(), cfg.d_model, 0.02, gen));
  for (int64_t i = 0; i < cfg.n_layer; ++i)
    layers.push_back(register_module(mg::format("backbone.layers.{}", i), std::make_shared<MambaBlock>(cfg, gen)));
  norm_f = register_module("backbone.norm_f", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
}

void MambaLM::check_tokens(const Tensor& tokens, int64_t dims, const char* op) const {
  MG_CHECK(tokens.dim() == dims && tokens.dtype() == DType::i64, "[{}] tokens must be int64 {}, got {} {}", op,
           dims == 1 ? "(batch,)" : "(batch, length)", tokens.dtype(), tokens.shape());
  MG_CHECK(tokens.device() == embeddings->weight.device(),
           "[{}] tokens are on {} but the model is on {} (copy them with .to(device))", op, tokens.device(),
           embeddings->weight.device());
}

Tensor MambaLM::backbone(const Tensor& tokens, std::vector<LayerState>* states,
                         const std::vector<LayerState>* initial) const {
  if (initial && initial->empty()) initial = nullptr;
  if (initial)
    for (size_t i = 0; i < initial->size(); ++i) {
      const LayerState& s = (*initial)[i];
      const Shape conv{tokens.size(0), cfg_.d_inner(), cfg_.d_conv - 1},
          ssm{tokens.size(0), cfg_.d_inner(), cfg_.d_state};
      MG_CHECK((int64_t)initial->size() == cfg_.n_layer && s.conv.shape() == conv && s.ssm.shape() == ssm,
               "[mamba] the initial state must hold {} layers of conv {} and ssm {} (batch {}); got {} layers, layer "
               "{}: conv {}, ssm {}",
               cfg_.n_layer, conv, ssm, tokens.size(0), initial->size(), i, s.conv.shape(), s.ssm.shape());
    }
  // The module paths are pushed only under anomaly mode (introspect/anomaly.h), for its messages.
  ModulePathGuard backbone_path("backbone");
  Tensor h;
  {
    ModulePathGuard path("embeddings");
    h = embeddings->forward(tokens);  // (b, l, d_model)
  }
  Tensor residual;  // kept in float32, as residual_in_fp32
  if (states) states->resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    ModulePathGuard layer_path("layers", (int64_t)i);
    residual = residual.defined() ? add(residual, h) : h;
    Tensor normed;
    {
      ModulePathGuard path("norm");
      normed = layers[i]->norm->forward(residual);
    }
    ModulePathGuard path("mixer");
    h = layers[i]->mixer->forward(normed, states ? &(*states)[i] : nullptr, initial ? &(*initial)[i] : nullptr);
  }
  return residual.defined() ? add(residual, h) : h;
}

Tensor MambaLM::head(const Tensor& hidden) const {
  Tensor normed;
  {
    ModulePathGuard path("backbone.norm_f");
    normed = norm_f->forward(hidden);
  }
  ModulePathGuard path("lm_head");
  return linear(normed, embeddings->weight);  // tied head: (b, l, vocab)
}

Tensor MambaLM::forward(const Tensor& tokens) const {
  check_tokens(tokens, 2, "mamba");
  return head(backbone(tokens, nullptr));
}

Tensor MambaLM::loss(const Tensor& tokens, const Tensor& targets) const {
  Tensor logits = forward(tokens);
  return cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(targets, {-1}));
}
Tensor MambaLM::loss(const Tensor& tokens, const Tensor& targets, const std::vector<LayerState>& initial,
                     std::vector<LayerState>& final) const {
  check_tokens(tokens, 2, "mamba");
  Tensor logits = head(backbone(tokens, &final, &initial));
  return cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(targets, {-1}));
}

std::vector<LayerState> MambaLM::initial_state(int64_t batch) const {
  std::vector<LayerState> s;
  for (int64_t i = 0; i < cfg_.n_layer; ++i)
    s.push_back({zeros({batch, cfg_.d_inner(), cfg_.d_conv - 1}, DType::f32, device()),
                 zeros({batch, cfg_.d_inner(), cfg_.d_state}, DType::f32, device())});
  return s;
}

Tensor MambaLM::prefill(const Tensor& tokens, std::vector<LayerState>& state) const {
  check_tokens(tokens, 2, "mamba prefill");
  MG_CHECK(tokens.size(1) >= 1, "[mamba prefill] the prompt must hold at least one token, got shape {}",
           tokens.shape());
  NoGradGuard ng;
  Tensor res = backbone(tokens, &state);
  Tensor last = contiguous(narrow(res, 1, res.size(1) - 1, 1)).reshape({res.size(0), res.size(2)});  // (b, d_model)
  return linear(norm_f->forward(last), embeddings->weight);
}

Tensor MambaLM::step(const Tensor& tokens, std::vector<LayerState>& state) const {
  check_tokens(tokens, 1, "mamba step");
  MG_CHECK((int64_t)state.size() == cfg_.n_layer && state[0].ssm.size(0) == tokens.size(0),
           "[mamba step] state is for {} layers and batch {}, but the model has {} layers and the batch is {}",
           state.size(), state.empty() ? 0 : state[0].ssm.size(0), cfg_.n_layer, tokens.size(0));
  // Rows split across threads only where the matmul computes each row on its own (ops answers), so
  // splitting changes no bit.
  const int64_t b = tokens.size(0), parts = std::min<int64_t>(num_threads(), b);
  if (parts < 2 || !matmul_rows_independent(device(), b)) return step_rows(tokens, state);
  const bool split = step_split_->next();
  const auto t0 = std::chrono::steady_clock::now();
  Tensor logits;
  if (!split) {
    logits = step_rows(tokens, state);
  } else {
    std::vector<Tensor> part_logits(parts);
    std::vector<std::exception_ptr> error(parts);
    parallel_for(parts, int64_t(1) << 40, [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p) {
        try {
          const int64_t r0 = b * p / parts, r1 = b * (p + 1) / parts;
          std::vector<LayerState> rows;
          for (const LayerState& s : state)
            rows.push_back({narrow(s.conv, 0, r0, r1 - r0), narrow(s.ssm, 0, r0, r1 - r0)});
          part_logits[p] = step_rows(narrow(tokens, 0, r0, r1 - r0), rows);
        } catch (...) {
          error[p] = std::current_exception();
        }
      }
    });
    for (auto& e : error)
      if (e) std::rethrow_exception(e);
    logits = cat(part_logits, 0);
  }
  step_split_->record(split, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return logits;
}

Tensor MambaLM::step_rows(const Tensor& tokens, std::vector<LayerState>& state) const {
  NoGradGuard ng;                          // per thread
  Tensor h = embeddings->forward(tokens);  // (b, d_model)
  Tensor residual;
  for (size_t i = 0; i < layers.size(); ++i) {
    residual = residual.defined() ? add(residual, h) : h;
    h = layers[i]->mixer->step(layers[i]->norm->forward(residual), state[i]);
  }
  residual = residual.defined() ? add(residual, h) : h;
  return linear(norm_f->forward(residual), embeddings->weight);
}

}  // namespace mg
