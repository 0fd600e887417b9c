// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_SIDE_TUNING_HPP
#define PEFT_POLICIES_SIDE_TUNING_HPP

/// @file side_tuning.hpp
/// Side-tuning (Zhang et al., "Side-Tuning: A Baseline for Network Adaptation via Additive
/// Side Networks", ECCV 2020; reference code jozhang97/side-tuning `dea3456`,
/// `tlkit/models/sidetune_architecture.py:GenericSidetuneNetwork`,
/// `tlkit/models/merge_operators.py:Alpha`).
///
/// A small trainable side network reads the frozen encoder's embedding output `h0` and its
/// output is blended with the frozen encoder output `base`:
///
///     out = α · base + (1 − α) · side(h0)
///
/// As in the reference, α weights the **base** and, in the learned mode, is the sigmoid of
/// one trainable scalar logit `a` initialised to 0 (α = 0.5; reference `alpha_kwargs`
/// `init_value`, default 0.0). The frozen encoder is never back-propagated into:
/// `lowest_layer(L)` returns `L`, so `encoder::backward` runs no layer backward at all, and
/// the gradient handed back by the hook is that of the encoder output (α · dout), which the
/// encoder then returns untouched.
///
/// Cached encoder outputs: since nothing below the blend is trained, a trainer may run the
/// encoder once per example, in evaluation mode, and reuse `h0` and `base` every epoch
/// through `blend()` / `blend_backward()` (see `side_tuning::encode` and
/// `side_tuning_cache`). This is what the reference does too: its base network is an
/// `EvalOnlyModel` (`tlkit/models/basic_models.py`: `train()` forces `eval()` and
/// `requires_grad = False` when `eval_only`, the setting of every side-tuning config), and
/// `use_baked_encoding=True` feeds a pre-computed base encoding instead of running the base.
///
/// Departures from the reference, all stated here and in the README:
///  - The side network is ours: the released code has no NLP side network (its `nlp/`
///    folder is not in the published repository). Two kinds are offered: a per-token MLP
///    over `h0` (`Linear(E, d) → act → dropout → Linear(d, H)`) and a one-layer post-LN
///    Transformer over `h0` (`Linear(E, d)`, self-attention with the batch's padding mask,
///    FFN, `Linear(d, H)`). Its linears use PyTorch's default `nn.Linear` initialisation
///    (U(±1/√fan_in) for weight and bias), LayerNorms start at γ = 1, β = 0, as a side
///    network built fresh in the reference would; initialising the side network from a
///    checkpoint (`side_weights_path`) or a distilled copy of the base is not provided.
///  - `alpha_mode::fixed` blends with a constant α (the reference's `alpha_blend=False`
///    is the constant 0.5). `alpha_mode::schedule` is the **paper-described** curriculum
///    (not in the released code, METHODS.md §13.12): α decays linearly from `start` to
///    `end` over `steps` training steps (`set_step`), then stays at `end`.
///  - The reference's optional GroupNorm on the blended encoding (`normalize_pre_transfer`,
///    vision only) and the `concat` merge are not provided.
///  - In the hook path (`encoder::forward` with this policy) in train mode the encoder runs
///    its own dropout, unlike the reference's eval-only base; for reference-faithful
///    training use the cached path, whose encoder output is always computed in eval mode.
///  - α is in the no-weight-decay group (`param_group::bias`), as the reference trains it
///    with weight decay 0 (`scripts/train_transfer.py`).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../core/batch.hpp"
#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../ops/dropout.hpp"
#include "../ops/layer_norm.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Architecture of the side network.
enum class side_network_kind { mlp, transformer };
/// How the blend weight α on the base is obtained.
enum class alpha_mode { learned, fixed, schedule };

inline const char* to_string(side_network_kind k) noexcept {
  return k == side_network_kind::mlp ? "mlp" : "transformer";
}
inline const char* to_string(alpha_mode m) noexcept {
  switch (m) {
    case alpha_mode::learned: return "learned";
    case alpha_mode::fixed: return "fixed";
    case alpha_mode::schedule: return "schedule";
  }
  return "?";
}

/// The paper-described α curriculum (not in the released code): α on the base goes
/// linearly from `start` to `end` over `steps` training steps and then stays at `end`.
struct alpha_schedule {
  double start = 1.0;  ///< α at step 0 (1: trust the base, the side gets no weight yet)
  double end = 0.0;    ///< α from step `steps` on (0: the side dominates, "asymptotic consistency")
  index steps = 1000;  ///< length of the decay, in optimizer steps

  /// α at optimizer step `step` (>= 0).
  double at(index step) const {
    if (step >= steps) return end;
    const double f = static_cast<double>(step) / static_cast<double>(steps);
    return start + (end - start) * f;
  }
};

/// Hyper-parameters of side-tuning (defaults: the reference's α handling; the side network
/// sizes are ours, see the file comment).
struct side_tuning_config {
  side_network_kind side = side_network_kind::mlp;
  index side_hidden = 64;         ///< MLP hidden width, or the side Transformer's model width
  index side_heads = 4;           ///< side Transformer: attention heads (must divide side_hidden)
  index side_intermediate = 256;  ///< side Transformer: FFN inner width
  activation side_activation = activation::relu;
  double dropout = 0.0;           ///< side network dropout in train mode (reference side nets: none)
  double layer_norm_eps = 1e-12;  ///< side Transformer LayerNorm epsilon
  alpha_mode alpha = alpha_mode::learned;
  double alpha_init = 0.0;   ///< learned: initial logit a (α = σ(a)); reference init_value 0.0
  double alpha_fixed = 0.5;  ///< fixed: the blend weight α on the base, in [0, 1]
  alpha_schedule schedule;   ///< schedule: the curriculum
};

/// Frozen-encoder results a side-tuning trainer reuses: the embedding output and the
/// encoder output of one batch, both computed in evaluation mode.
template <typename Scalar>
struct cached_encoding {
  matrix<Scalar> h0;    ///< [B*T x E] embedding output
  matrix<Scalar> base;  ///< [B*T x H] encoder output
};

namespace detail {
inline const char* side_activation_name(activation a) noexcept {
  switch (a) {
    case activation::relu: return "relu";
    case activation::gelu_erf: return "gelu";
    case activation::gelu_tanh: return "gelu_new";
  }
  return "?";
}
}  // namespace detail

/// Side-tuning policy: a trainable side network blended with the frozen encoder output.
/// Implements the encoder-output hook only; the encoder never runs a backward pass for it.
/// @tparam Scalar float or double
template <typename Scalar = float>
class side_tuning {
  static_assert(is_supported_scalar_v<Scalar>, "peft::side_tuning: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  using vec = vector<Scalar>;
  static constexpr const char* peft_type = "SIDE_TUNING";
  /// Prefix of every checkpoint key.
  static constexpr const char* key_prefix = "side_tuning.";

  /// What a recorded forward pass keeps for the backward pass.
  struct tape_type {
    index batch_size = 0, time = 0;
    Scalar alpha = 0;  ///< α used by the forward pass
    mat base;          ///< learned α only: the encoder output before blending
    mat side;          ///< side network output
    mat h0;            ///< side network input
    // MLP
    mat u, g, drop1;
    // Transformer
    mat x, q, k, v, ctx, drop_attn, x1, drop_ffn, x2;
    ops::attention_cache<Scalar> attn;
    ops::layer_norm_cache<Scalar> norm1, norm2;
    bool recorded() const noexcept { return side.size() != 0; }
  };

  /// Builds the side network for an encoder of shape @p shape, initialised as described in
  /// the file comment from @p seed.
  /// @throws invalid_argument naming the config field that is out of range, or the shape field
  side_tuning(const encoder_shape& shape, const side_tuning_config& cfg = {}, std::uint64_t seed = 0)
      : m_shape(shape), m_cfg(cfg) {
    validate();
    build(seed);
  }

  const side_tuning_config& config() const noexcept { return m_cfg; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  index num_parameters() const noexcept { return m_params.size(); }
  /// Trainable parameters as a fraction of the frozen backbone's (0 when unknown).
  double backbone_share() const noexcept {
    return m_shape.backbone_parameters > 0
               ? static_cast<double>(num_parameters()) / static_cast<double>(m_shape.backbone_parameters)
               : 0.0;
  }

  /// The encoder never runs a backward pass: every layer is below the lowest trainable one.
  index lowest_layer(index num_layers) const noexcept { return num_layers; }

  /// Current blend weight α on the base (learned: σ(a); fixed: the constant; schedule:
  /// the curriculum at the current step).
  Scalar alpha() const;
  /// Sets the optimizer step the α schedule reads (stored in every mode, used by `schedule`).
  /// @throws invalid_argument for a negative step
  void set_step(index step) {
    if (step < 0)
      throw invalid_argument(detail::expected_got("side_tuning::set_step", "step (>= 0)", 0, step));
    m_step = step;
  }
  index step() const noexcept { return m_step; }

  // --- encoder hook ---------------------------------------------------------------------

  /// Encoder-output hook: `h = α·h + (1 − α)·side(h0)`. Reads the padding mask from
  /// `ctx.input` (side Transformer) and follows `ctx.run_mode` for the side network's dropout.
  void on_encoder_output(const mat& h0, mat& h, const hook_context& ctx, tape_type& t) const;

  /// Backward of the encoder-output hook: accumulates the side network's and α's gradients
  /// and turns `dh` into the gradient of the encoder output, α·dh.
  void on_encoder_output_backward(mat& dh, const tape_type& t) { dh = run_backward(dh, t, nullptr); }

  // --- cached path ----------------------------------------------------------------------

  /// Side network and blend from cached encoder results: `α·base_h + (1 − α)·side(h0)`.
  /// Gives the same output as the hook inside `encoder::forward` with the same `h0`/`base_h`.
  /// @param base_h  [B*T x H] frozen encoder output (eval mode, e.g. from `encode`)
  /// @param h0      [B*T x E] embedding output of the same batch
  /// @param b       the batch (its mask; ids are not read)
  /// @param m       train mode turns on the side network's dropout (needs @p gen when > 0)
  /// @param t       when non-null, records what `blend_backward` needs
  /// @throws invalid_argument for mismatched shapes or a missing generator
  mat blend(const mat& base_h, const mat& h0, const batch& b, mode m = mode::eval, rng* gen = nullptr,
            tape_type* t = nullptr) const;

  /// Backward of `blend`: accumulates the parameter gradients and returns the gradient of
  /// `base_h` (α·d_out). With @p d_h0 non-null also writes the gradient of `h0` through the
  /// side network (the encoder path never needs it).
  /// Assumes `blend` (or the hook) recorded @p t with an unchanged policy.
  mat blend_backward(const mat& d_out, const tape_type& t, mat* d_h0 = nullptr) {
    return run_backward(d_out, t, d_h0);
  }

  /// Runs @p enc once on @p b in evaluation mode and returns its embedding output and
  /// encoder output, ready for `blend`. (The reference freezes its base in eval mode too.)
  /// @tparam Encoder a `peft::encoder<Arch, Scalar>`
  template <typename Encoder>
  static cached_encoding<Scalar> encode(const Encoder& enc, const batch& b);

  // --- checkpoints ----------------------------------------------------------------------

  /// Everything needed to rebuild this policy (not its values).
  nlohmann::json config_json() const;

  /// Rebuilds a policy (with freshly initialised values) from `config_json()` output.
  /// Missing hyper-parameters take their defaults; the encoder-shape fields are required.
  /// @throws invalid_argument naming the field when the method or the encoder shape does not
  ///   match, or a field has the wrong type or an invalid value
  static side_tuning from_config(const nlohmann::json& j, const encoder_shape& shape);

private:
  // Block positions in m_params (-1 when absent).
  enum blk : int {
    b_alpha,
    // MLP
    b_fc1_w,
    b_fc1_b,
    b_fc2_w,
    b_fc2_b,
    // Transformer
    b_in_w,
    b_in_b,
    b_q_w,
    b_q_b,
    b_k_w,
    b_k_b,
    b_v_w,
    b_v_b,
    b_o_w,
    b_o_b,
    b_ln1_g,
    b_ln1_b,
    b_ff1_w,
    b_ff1_b,
    b_ff2_w,
    b_ff2_b,
    b_ln2_g,
    b_ln2_b,
    b_out_w,
    b_out_b,
    num_blk
  };

  void validate() const;

  /// Adds a linear's weight and bias blocks, PyTorch default init U(±1/√fan_in).
  void add_linear(int w, int b, const std::string& name, index out, index in, rng& gen);
  void add_norm(int g, int b, const std::string& name, index d) {
    m_blk[g] = m_params.add(key_prefix + name + ".weight", d, 1, param_group::norm);
    m_blk[b] = m_params.add(key_prefix + name + ".bias", d, 1, param_group::norm);
    m_params.value(m_blk[g]).setOnes();
  }

  void build(std::uint64_t seed);

  void check_rows(const mat& h0, const mat& base, index rows, const char* where) const;

  Eigen::Map<const mat> W(int b) const { return m_params.value(m_blk[b]); }
  vec bias(int b) const { return m_params.value(m_blk[b]); }

  /// y = x W^T + b for the linear whose blocks are (w, b).
  void lin(const mat& x, int w, int b, mat& y) const {
    y.resize(x.rows(), W(w).rows());
    y.noalias() = x * W(w).transpose();
    y.rowwise() += bias(b).transpose();
  }
  /// Accumulates the weight and bias gradients of a linear; writes dx = dy W when asked.
  void lin_back(const mat& x, const mat& dy, int w, int b, mat* dx, bool accumulate);

  void dropout_mask(index rows, index cols, mode m, rng* gen, mat& mask) const;

  /// Side network forward into t (always filled; `t` is a scratch tape when not recording).
  void side_forward(const mat& h0, const batch& b, mode m, rng* gen, tape_type& t) const;

  /// Side network backward from d(side); writes d(h0) when asked.
  void side_backward(const mat& ds, const tape_type& t, mat* d_h0);

  mat run_forward(const mat& base, const mat& h0, const batch& b, mode m, rng* gen, tape_type* rec) const;

  mat run_backward(const mat& d_out, const tape_type& t, mat* d_h0);

  encoder_shape m_shape;
  side_tuning_config m_cfg;
  parameter_store<Scalar> m_params;
  index m_blk[num_blk];
  index m_alpha_block = -1;
  index m_step = 0;
};

template <typename Scalar>
Scalar side_tuning<Scalar>::alpha() const {
  switch (m_cfg.alpha) {
    case alpha_mode::learned: {
      const Scalar a = m_params.value(m_alpha_block)(0, 0);
      return Scalar(1) / (Scalar(1) + std::exp(-a));
    }
    case alpha_mode::fixed: return static_cast<Scalar>(m_cfg.alpha_fixed);
    case alpha_mode::schedule: return static_cast<Scalar>(m_cfg.schedule.at(m_step));
  }
  return Scalar(0);
}

template <typename Scalar>
void side_tuning<Scalar>::on_encoder_output(const mat& h0, mat& h, const hook_context& ctx,
                                            tape_type& t) const {
  const char* where = "side_tuning::on_encoder_output";
  if (!ctx.input)
    throw invalid_argument(std::string(where) + ": hook_context input batch expected, got null");
  check_rows(h0, h, ctx.input->rows(), where);
  if (ctx.input->mask.rows() != ctx.batch_size || ctx.input->mask.cols() != ctx.time)
    throw invalid_argument(std::string(where) + ": batch mask shape does not match the context [" +
                           std::to_string(ctx.batch_size) + ", " + std::to_string(ctx.time) + "]");
  h = run_forward(h, h0, *ctx.input, ctx.run_mode, ctx.gen, ctx.record ? &t : nullptr);
}

template <typename Scalar>
matrix<Scalar> side_tuning<Scalar>::blend(const mat& base_h, const mat& h0, const batch& b, mode m, rng* gen,
                                          tape_type* t) const {
  const char* where = "side_tuning::blend";
  if (b.mask.rows() != b.size() || b.mask.cols() != b.time())
    throw invalid_argument(std::string(where) + ": batch mask shape expected [" + std::to_string(b.size()) +
                           ", " + std::to_string(b.time()) + "], got [" + std::to_string(b.mask.rows()) +
                           ", " + std::to_string(b.mask.cols()) + "]");
  check_rows(h0, base_h, b.rows(), where);
  return run_forward(base_h, h0, b, m, gen, t);
}

template <typename Scalar>
template <typename Encoder>
cached_encoding<Scalar> side_tuning<Scalar>::encode(const Encoder& enc, const batch& b) {
  static_assert(std::is_same_v<typename Encoder::scalar_type, Scalar>,
                "peft::side_tuning::encode: the encoder's scalar_type must equal the policy's Scalar");
  cached_encoding<Scalar> c;
  c.base = enc.forward(b);  // validates the batch
  c.h0 = enc.embed(b);
  return c;
}

template <typename Scalar>
nlohmann::json side_tuning<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["side_network"] = to_string(m_cfg.side);
  j["side_hidden_size"] = m_cfg.side_hidden;
  j["side_num_heads"] = m_cfg.side_heads;
  j["side_intermediate_size"] = m_cfg.side_intermediate;
  j["side_activation"] = detail::side_activation_name(m_cfg.side_activation);
  j["side_dropout"] = m_cfg.dropout;
  j["side_layer_norm_eps"] = m_cfg.layer_norm_eps;
  j["alpha_mode"] = to_string(m_cfg.alpha);
  j["alpha_init"] = m_cfg.alpha_init;
  j["alpha_fixed"] = m_cfg.alpha_fixed;
  j["alpha_schedule"] = {
      {"start", m_cfg.schedule.start}, {"end", m_cfg.schedule.end}, {"steps", m_cfg.schedule.steps}};
  j["schedule_step"] = m_step;
  j["model_type"] = m_shape.model_type;
  j["num_layers"] = m_shape.num_layers;
  j["hidden_size"] = m_shape.hidden_size;
  j["embedding_size"] = m_shape.embedding_size;
  return j;
}

template <typename Scalar>
side_tuning<Scalar> side_tuning<Scalar>::from_config(const nlohmann::json& j, const encoder_shape& shape) {
  const std::string where = "side_tuning::from_config";
  check_config_header(j, peft_type, shape, where);
  // Fields absent from a checkpoint keep their defaults (the config grew after the first saves).
  auto get_string = [&](const char* key, const std::string& def) {
    return config_field_or<std::string>(j, key, def, where);
  };
  auto get_int = [&](const nlohmann::json& obj, const char* key, index def, const std::string& at) {
    return config_field_or<index>(obj, key, def, at);
  };
  auto get_double = [&](const nlohmann::json& obj, const char* key, double def, const std::string& at) {
    return config_field_or<double>(obj, key, def, at);
  };
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
  };

  side_tuning_config c;
  const std::string kind = get_string("side_network", to_string(c.side));
  if (kind == "mlp") {
    c.side = side_network_kind::mlp;
  } else if (kind == "transformer") {
    c.side = side_network_kind::transformer;
  } else {
    throw invalid_argument(where + ": field 'side_network' expected \"mlp\" or \"transformer\", got \"" +
                           kind + "\"");
  }
  c.side_hidden = get_int(j, "side_hidden_size", c.side_hidden, where);
  c.side_heads = get_int(j, "side_num_heads", c.side_heads, where);
  c.side_intermediate = get_int(j, "side_intermediate_size", c.side_intermediate, where);
  const std::string act = get_string("side_activation", detail::side_activation_name(c.side_activation));
  if (act == "relu") {
    c.side_activation = activation::relu;
  } else if (act == "gelu") {
    c.side_activation = activation::gelu_erf;
  } else if (act == "gelu_new") {
    c.side_activation = activation::gelu_tanh;
  } else {
    throw invalid_argument(
        where + ": field 'side_activation' expected \"relu\", \"gelu\" or \"gelu_new\", got \"" + act + "\"");
  }
  c.dropout = get_double(j, "side_dropout", c.dropout, where);
  c.layer_norm_eps = get_double(j, "side_layer_norm_eps", c.layer_norm_eps, where);
  const std::string am = get_string("alpha_mode", to_string(c.alpha));
  if (am == "learned") {
    c.alpha = alpha_mode::learned;
  } else if (am == "fixed") {
    c.alpha = alpha_mode::fixed;
  } else if (am == "schedule") {
    c.alpha = alpha_mode::schedule;
  } else {
    throw invalid_argument(
        where + ": field 'alpha_mode' expected \"learned\", \"fixed\" or \"schedule\", got \"" + am + "\"");
  }
  c.alpha_init = get_double(j, "alpha_init", c.alpha_init, where);
  c.alpha_fixed = get_double(j, "alpha_fixed", c.alpha_fixed, where);
  if (const auto* s = field("alpha_schedule")) {
    if (!s->is_object())
      throw invalid_argument(where + ": field 'alpha_schedule' expected an object, got " + s->dump());
    c.schedule.start = get_double(*s, "start", c.schedule.start, where + ": alpha_schedule");
    c.schedule.end = get_double(*s, "end", c.schedule.end, where + ": alpha_schedule");
    c.schedule.steps = get_int(*s, "steps", c.schedule.steps, where + ": alpha_schedule");
  }
  const index step = get_int(j, "schedule_step", 0, where);
  if (step < 0)
    throw invalid_argument(where + ": field 'schedule_step' expected >= 0, got " + std::to_string(step));
  side_tuning p(shape, c, 0);
  p.m_step = step;
  return p;
}

template <typename Scalar>
void side_tuning<Scalar>::validate() const {
  const char* where = "side_tuning::side_tuning";
  auto fail = [&](const std::string& what) { throw invalid_argument(std::string(where) + ": " + what); };
  if (m_shape.num_layers <= 0)
    fail("encoder shape num_layers expected > 0, got " + std::to_string(m_shape.num_layers));
  if (m_shape.hidden_size <= 0)
    fail("encoder shape hidden_size expected > 0, got " + std::to_string(m_shape.hidden_size));
  if (m_shape.embedding_size <= 0)
    fail("encoder shape embedding_size expected > 0, got " + std::to_string(m_shape.embedding_size));
  const auto& c = m_cfg;
  if (c.side != side_network_kind::mlp && c.side != side_network_kind::transformer)
    fail("config side expected mlp or transformer, got " + std::to_string(static_cast<int>(c.side)));
  if (c.side_hidden <= 0) fail("config side_hidden expected > 0, got " + std::to_string(c.side_hidden));
  if (c.side == side_network_kind::transformer) {
    if (c.side_heads <= 0) fail("config side_heads expected > 0, got " + std::to_string(c.side_heads));
    if (c.side_hidden % c.side_heads != 0)
      fail("config side_heads expected a divisor of side_hidden " + std::to_string(c.side_hidden) + ", got " +
           std::to_string(c.side_heads));
    if (c.side_intermediate <= 0)
      fail("config side_intermediate expected > 0, got " + std::to_string(c.side_intermediate));
    if (!(c.layer_norm_eps > 0.0) || !std::isfinite(c.layer_norm_eps))
      fail("config layer_norm_eps expected > 0, got " + std::to_string(c.layer_norm_eps));
  }
  if (c.side_activation != activation::relu && c.side_activation != activation::gelu_erf &&
      c.side_activation != activation::gelu_tanh)
    fail("config side_activation expected relu, gelu_erf or gelu_tanh, got " +
         std::to_string(static_cast<int>(c.side_activation)));
  if (!(c.dropout >= 0.0 && c.dropout < 1.0))
    fail("config dropout expected in [0, 1), got " + std::to_string(c.dropout));
  switch (c.alpha) {
    case alpha_mode::learned:
      if (!std::isfinite(c.alpha_init))
        fail("config alpha_init expected finite, got " + std::to_string(c.alpha_init));
      break;
    case alpha_mode::fixed:
      if (!(c.alpha_fixed >= 0.0 && c.alpha_fixed <= 1.0))
        fail("config alpha_fixed expected in [0, 1], got " + std::to_string(c.alpha_fixed));
      break;
    case alpha_mode::schedule:
      if (!(c.schedule.start >= 0.0 && c.schedule.start <= 1.0))
        fail("config schedule.start expected in [0, 1], got " + std::to_string(c.schedule.start));
      if (!(c.schedule.end >= 0.0 && c.schedule.end <= 1.0))
        fail("config schedule.end expected in [0, 1], got " + std::to_string(c.schedule.end));
      if (c.schedule.steps <= 0)
        fail("config schedule.steps expected > 0, got " + std::to_string(c.schedule.steps));
      break;
    default:
      fail("config alpha expected learned, fixed or schedule, got " +
           std::to_string(static_cast<int>(c.alpha)));
  }
}

template <typename Scalar>
void side_tuning<Scalar>::add_linear(int w, int b, const std::string& name, index out, index in, rng& gen) {
  m_blk[w] = m_params.add(key_prefix + name + ".weight", out, in, param_group::weight);
  m_blk[b] = m_params.add(key_prefix + name + ".bias", out, 1, param_group::bias);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  auto W = m_params.value(m_blk[w]);
  for (index i = 0; i < W.size(); ++i) W.data()[i] = static_cast<Scalar>((2.0 * gen.uniform() - 1.0) * bound);
  auto B = m_params.value(m_blk[b]);
  for (index i = 0; i < B.size(); ++i) B.data()[i] = static_cast<Scalar>((2.0 * gen.uniform() - 1.0) * bound);
}

template <typename Scalar>
void side_tuning<Scalar>::build(std::uint64_t seed) {
  for (auto& i : m_blk) i = -1;
  rng gen(seed);
  const index E = m_shape.embedding_size, H = m_shape.hidden_size, d = m_cfg.side_hidden;
  if (m_cfg.alpha == alpha_mode::learned) {
    m_alpha_block = m_params.add(std::string(key_prefix) + "alpha", 1, 1, param_group::bias);
    m_blk[b_alpha] = m_alpha_block;
    m_params.value(m_alpha_block)(0, 0) = static_cast<Scalar>(m_cfg.alpha_init);
  }
  if (m_cfg.side == side_network_kind::mlp) {
    add_linear(b_fc1_w, b_fc1_b, "side.mlp.fc1", d, E, gen);
    add_linear(b_fc2_w, b_fc2_b, "side.mlp.fc2", H, d, gen);
  } else {
    const std::string t = "side.transformer.";
    add_linear(b_in_w, b_in_b, t + "input", d, E, gen);
    add_linear(b_q_w, b_q_b, t + "layer.attention.self.query", d, d, gen);
    add_linear(b_k_w, b_k_b, t + "layer.attention.self.key", d, d, gen);
    add_linear(b_v_w, b_v_b, t + "layer.attention.self.value", d, d, gen);
    add_linear(b_o_w, b_o_b, t + "layer.attention.output.dense", d, d, gen);
    add_norm(b_ln1_g, b_ln1_b, t + "layer.attention.output.LayerNorm", d);
    add_linear(b_ff1_w, b_ff1_b, t + "layer.intermediate.dense", m_cfg.side_intermediate, d, gen);
    add_linear(b_ff2_w, b_ff2_b, t + "layer.output.dense", d, m_cfg.side_intermediate, gen);
    add_norm(b_ln2_g, b_ln2_b, t + "layer.output.LayerNorm", d);
    add_linear(b_out_w, b_out_b, t + "output", H, d, gen);
  }
}

template <typename Scalar>
void side_tuning<Scalar>::check_rows(const mat& h0, const mat& base, index rows, const char* where) const {
  if (h0.rows() != rows || h0.cols() != m_shape.embedding_size)
    throw invalid_argument(std::string(where) + ": h0 shape expected [" + std::to_string(rows) + ", " +
                           std::to_string(m_shape.embedding_size) + "], got [" + std::to_string(h0.rows()) +
                           ", " + std::to_string(h0.cols()) + "]");
  if (base.rows() != rows || base.cols() != m_shape.hidden_size)
    throw invalid_argument(std::string(where) + ": encoder output shape expected [" + std::to_string(rows) +
                           ", " + std::to_string(m_shape.hidden_size) + "], got [" +
                           std::to_string(base.rows()) + ", " + std::to_string(base.cols()) + "]");
}

template <typename Scalar>
void side_tuning<Scalar>::lin_back(const mat& x, const mat& dy, int w, int b, mat* dx, bool accumulate) {
  auto gw = m_params.grad(m_blk[w]);
  gw.noalias() += dy.transpose() * x;
  m_params.grad(m_blk[b]) += dy.colwise().sum().transpose();
  if (dx) {
    if (accumulate) {
      dx->noalias() += dy * W(w);
    } else {
      dx->resize(dy.rows(), W(w).cols());
      dx->noalias() = dy * W(w);
    }
  }
}

template <typename Scalar>
void side_tuning<Scalar>::dropout_mask(index rows, index cols, mode m, rng* gen, mat& mask) const {
  if (m == mode::train && m_cfg.dropout > 0.0) {
    if (!gen)
      throw invalid_argument("side_tuning: train mode with side dropout " + std::to_string(m_cfg.dropout) +
                             " needs a random generator (got null)");
    ops::make_dropout_mask(rows, cols, m_cfg.dropout, *gen, mask);
  } else {
    mask.resize(0, 0);
  }
}

template <typename Scalar>
void side_tuning<Scalar>::side_forward(const mat& h0, const batch& b, mode m, rng* gen, tape_type& t) const {
  const activation act = m_cfg.side_activation;
  if (m_cfg.side == side_network_kind::mlp) {
    lin(h0, b_fc1_w, b_fc1_b, t.u);
    ops::activation_forward(act, t.u, t.g);
    dropout_mask(t.g.rows(), t.g.cols(), m, gen, t.drop1);
    if (t.drop1.size() != 0) t.g.array() *= t.drop1.array();
    lin(t.g, b_fc2_w, b_fc2_b, t.side);
    return;
  }
  const index d = m_cfg.side_hidden;
  lin(h0, b_in_w, b_in_b, t.x);
  lin(t.x, b_q_w, b_q_b, t.q);
  lin(t.x, b_k_w, b_k_b, t.k);
  lin(t.x, b_v_w, b_v_b, t.v);
  const ops::attention_shape shape{b.size(), b.time(), m_cfg.side_heads, 0};
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(d / m_cfg.side_heads));
  const bool drop = m == mode::train && m_cfg.dropout > 0.0;
  if (drop && !gen)
    throw invalid_argument("side_tuning: train mode with side dropout " + std::to_string(m_cfg.dropout) +
                           " needs a random generator (got null)");
  ops::attention_forward(shape, t.q, t.k, t.v, nullptr, nullptr, b.mask, scale, drop ? m_cfg.dropout : 0.0,
                         drop ? gen : nullptr, t.ctx, &t.attn);
  mat a;
  lin(t.ctx, b_o_w, b_o_b, a);
  dropout_mask(a.rows(), a.cols(), m, gen, t.drop_attn);
  if (t.drop_attn.size() != 0) a.array() *= t.drop_attn.array();
  a += t.x;
  const vec g1 = bias(b_ln1_g), be1 = bias(b_ln1_b);
  ops::layer_norm_forward(a, g1, be1, m_cfg.layer_norm_eps, t.x1, &t.norm1);
  lin(t.x1, b_ff1_w, b_ff1_b, t.u);
  ops::activation_forward(act, t.u, t.g);
  mat f;
  lin(t.g, b_ff2_w, b_ff2_b, f);
  dropout_mask(f.rows(), f.cols(), m, gen, t.drop_ffn);
  if (t.drop_ffn.size() != 0) f.array() *= t.drop_ffn.array();
  f += t.x1;
  const vec g2 = bias(b_ln2_g), be2 = bias(b_ln2_b);
  ops::layer_norm_forward(f, g2, be2, m_cfg.layer_norm_eps, t.x2, &t.norm2);
  lin(t.x2, b_out_w, b_out_b, t.side);
}

template <typename Scalar>
void side_tuning<Scalar>::side_backward(const mat& ds, const tape_type& t, mat* d_h0) {
  const activation act = m_cfg.side_activation;
  if (m_cfg.side == side_network_kind::mlp) {
    mat dg;
    lin_back(t.g, ds, b_fc2_w, b_fc2_b, &dg, false);
    if (t.drop1.size() != 0) dg.array() *= t.drop1.array();
    ops::activation_backward(act, t.u, dg);
    lin_back(t.h0, dg, b_fc1_w, b_fc1_b, d_h0, false);
    return;
  }
  mat dx2;
  lin_back(t.x2, ds, b_out_w, b_out_b, &dx2, false);
  // LayerNorm 2 (its gamma and beta are trainable here).
  mat dz2;
  {
    vec dg = vec::Zero(m_cfg.side_hidden), db = vec::Zero(m_cfg.side_hidden);
    ops::layer_norm_backward(dx2, bias(b_ln2_g), t.norm2, dz2, &dg, &db);
    m_params.grad(m_blk[b_ln2_g]) += dg;
    m_params.grad(m_blk[b_ln2_b]) += db;
  }
  mat df = dz2;
  if (t.drop_ffn.size() != 0) df.array() *= t.drop_ffn.array();
  mat dg;
  lin_back(t.g, df, b_ff2_w, b_ff2_b, &dg, false);
  ops::activation_backward(act, t.u, dg);
  mat dx1 = dz2;
  lin_back(t.x1, dg, b_ff1_w, b_ff1_b, &dx1, true);
  mat dz1;
  {
    vec dgam = vec::Zero(m_cfg.side_hidden), db = vec::Zero(m_cfg.side_hidden);
    ops::layer_norm_backward(dx1, bias(b_ln1_g), t.norm1, dz1, &dgam, &db);
    m_params.grad(m_blk[b_ln1_g]) += dgam;
    m_params.grad(m_blk[b_ln1_b]) += db;
  }
  mat da = dz1;
  if (t.drop_attn.size() != 0) da.array() *= t.drop_attn.array();
  mat dctx;
  lin_back(t.ctx, da, b_o_w, b_o_b, &dctx, false);
  const ops::attention_shape shape{t.batch_size, t.time, m_cfg.side_heads, 0};
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(m_cfg.side_hidden / m_cfg.side_heads));
  mat dq, dk, dv;
  ops::attention_backward(shape, dctx, t.q, t.k, t.v, nullptr, nullptr, t.attn, scale, dq, dk, dv, nullptr,
                          nullptr);
  mat dx = dz1;
  lin_back(t.x, dq, b_q_w, b_q_b, &dx, true);
  lin_back(t.x, dk, b_k_w, b_k_b, &dx, true);
  lin_back(t.x, dv, b_v_w, b_v_b, &dx, true);
  lin_back(t.h0, dx, b_in_w, b_in_b, d_h0, false);
}

template <typename Scalar>
matrix<Scalar> side_tuning<Scalar>::run_forward(const mat& base, const mat& h0, const batch& b, mode m,
                                                rng* gen, tape_type* rec) const {
  tape_type scratch;
  tape_type& t = rec ? *rec : scratch;
  t = tape_type{};
  t.batch_size = b.size();
  t.time = b.time();
  t.alpha = alpha();
  if (rec) t.h0 = h0;  // only the backward pass reads it
  side_forward(h0, b, m, gen, t);
  const Scalar a = t.alpha;
  mat out = a * base + (Scalar(1) - a) * t.side;
  if (rec && m_cfg.alpha == alpha_mode::learned) t.base = base;
  return out;
}

template <typename Scalar>
matrix<Scalar> side_tuning<Scalar>::run_backward(const mat& d_out, const tape_type& t, mat* d_h0) {
  const char* where = "side_tuning::backward";
  if (!t.recorded())
    throw invalid_argument(std::string(where) + ": tape is empty (was the forward pass called with a tape?)");
  if (d_out.rows() != t.side.rows() || d_out.cols() != t.side.cols())
    throw invalid_argument(std::string(where) + ": gradient shape expected [" +
                           std::to_string(t.side.rows()) + ", " + std::to_string(t.side.cols()) + "], got [" +
                           std::to_string(d_out.rows()) + ", " + std::to_string(d_out.cols()) + "]");
  const Scalar a = t.alpha;
  if (m_cfg.alpha == alpha_mode::learned) {
    // d out / d logit = σ'(logit) (base - side) = α (1 - α) (base - side)
    const Scalar s = (d_out.array() * (t.base.array() - t.side.array())).sum();
    m_params.grad(m_alpha_block)(0, 0) += a * (Scalar(1) - a) * s;
  }
  const mat ds = (Scalar(1) - a) * d_out;
  side_backward(ds, t, d_h0);
  return a * d_out;
}

/// Per-example store of frozen-encoder results for side-tuning: encode each training
/// example once (evaluation mode) and assemble any batch of them later, every epoch.
/// Entries keep the real tokens' rows only; assembled batches have zero rows at padding.
template <typename Scalar = float>
class side_tuning_cache {
public:
  using mat = matrix<Scalar>;

  /// Runs @p enc on @p b in evaluation mode and stores sequence `i` under `ids[i]`
  /// (replacing an earlier entry with that id).
  /// @throws invalid_argument when `ids` does not have one id per sequence
  template <typename Encoder>
  void add(const Encoder& enc, const batch& b, const std::vector<std::int64_t>& ids) {
    if (static_cast<index>(ids.size()) != b.size())
      throw invalid_argument(detail::expected_got("side_tuning_cache::add", "ids", b.size(), ids.size()));
    const auto c = side_tuning<Scalar>::encode(enc, b);
    const index T = b.time();
    for (index i = 0; i < b.size(); ++i) {
      entry e;
      const index len = b.length(i);
      e.h0.resize(len, c.h0.cols());
      e.base.resize(len, c.base.cols());
      index r = 0;
      for (index t = 0; t < T; ++t) {
        if (!b.mask(i, t)) continue;
        e.h0.row(r) = c.h0.row(i * T + t);
        e.base.row(r) = c.base.row(i * T + t);
        ++r;
      }
      m_entries[ids[static_cast<std::size_t>(i)]] = std::move(e);
    }
  }

  bool contains(std::int64_t id) const { return m_entries.count(id) != 0; }
  std::size_t size() const noexcept { return m_entries.size(); }
  void clear() noexcept { m_entries.clear(); }

  /// Assembles the cached results of examples `ids` laid out as batch @p b (whose sequence
  /// `i` must be example `ids[i]`, with the same number of real tokens).
  /// @throws invalid_argument naming the id that is missing or whose length differs
  cached_encoding<Scalar> gather(const batch& b, const std::vector<std::int64_t>& ids) const {
    const char* where = "side_tuning_cache::gather";
    if (static_cast<index>(ids.size()) != b.size())
      throw invalid_argument(detail::expected_got(where, "ids", b.size(), ids.size()));
    if (m_entries.empty()) throw invalid_argument(std::string(where) + ": cache is empty");
    const auto& any = m_entries.begin()->second;
    const index T = b.time();
    cached_encoding<Scalar> c;
    c.h0 = mat::Zero(b.rows(), any.h0.cols());
    c.base = mat::Zero(b.rows(), any.base.cols());
    for (index i = 0; i < b.size(); ++i) {
      const auto id = ids[static_cast<std::size_t>(i)];
      auto it = m_entries.find(id);
      if (it == m_entries.end())
        throw invalid_argument(std::string(where) + ": example id " + std::to_string(id) +
                               " not in the cache");
      const auto& e = it->second;
      if (e.h0.rows() != b.length(i))
        throw invalid_argument(std::string(where) + ": example id " + std::to_string(id) +
                               " length expected " + std::to_string(e.h0.rows()) + " (cached), got " +
                               std::to_string(b.length(i)));
      index r = 0;
      for (index t = 0; t < T; ++t) {
        if (!b.mask(i, t)) continue;
        c.h0.row(i * T + t) = e.h0.row(r);
        c.base.row(i * T + t) = e.base.row(r);
        ++r;
      }
    }
    return c;
  }

private:
  struct entry {
    mat h0, base;
  };
  std::unordered_map<std::int64_t, entry> m_entries;
};

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_SIDE_TUNING
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_SIDE_TUNING_HPP
