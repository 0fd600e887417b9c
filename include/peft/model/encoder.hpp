// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_ENCODER_HPP
#define PEFT_MODEL_ENCODER_HPP

/// @file encoder.hpp
/// `encoder<Arch, Scalar>`: the frozen Transformer encoder. Its weights are shared and
/// `const`; a policy (see policy_traits.hpp) plugs into its hook points. The backward pass
/// computes input-gradients only (never a frozen weight's gradient) and stops below the
/// lowest layer the policy trains.
///
/// Numeric faults (see core/numerics.hpp): what a policy injects (`on_embeddings` and
/// `on_layer_input` outputs, `kv_prefix` vectors) and the `h0` given to `forward_embedded`
/// are always checked for NaN/Inf. In check mode (`peft::check_numerics()`) the output of
/// every op of the forward pass and every gradient of the backward pass is checked too, and
/// the first non-finite one throws `peft::numeric_error` naming the layer and the op.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "../core/encoder_shape.hpp"
#include "../core/numerics.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../ops/dropout.hpp"
#include "../ops/layer_norm.hpp"
#include "../ops/linear.hpp"
#include "../policies/policy_traits.hpp"
#include "arch.hpp"
#include "../core/batch.hpp"
#include "tape.hpp"
#include "weights.hpp"

namespace peft {

/// Frozen encoder over shared weights.
/// @tparam Arch   architecture traits: `bert`, `roberta` or `use_lite` (arch.hpp)
/// @tparam Scalar float or double
template <typename Arch, typename Scalar = float>
class encoder {
  static_assert(is_supported_scalar_v<Scalar>, "peft::encoder: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using arch_type = Arch;
  using mat = matrix<Scalar>;
  template <typename Policy>
  using tape_type = encoder_tape<Scalar, Policy>;

  /// @throws invalid_argument when the weights are null or inconsistent with the config
  explicit encoder(shared_weights<Scalar> weights) : m_weights(std::move(weights)) { validate(); }

  const encoder_config& config() const noexcept { return m_weights->config; }
  const encoder_weights<Scalar>& weights() const noexcept { return *m_weights; }
  const shared_weights<Scalar>& shared() const noexcept { return m_weights; }
  index num_layers() const noexcept { return m_weights->config.num_layers; }
  /// Width of the encoder's output.
  index hidden_size() const noexcept { return m_weights->layers.back().output_width(); }
  /// Width of the embedding output, layer 0's input (after ELECTRA's / ALBERT's projection).
  index embedding_size() const noexcept {
    const auto& P = m_weights->embedding_projection;
    return P.empty() ? m_weights->word_embeddings.cols() : P.out_features();
  }
  /// Width of the word embeddings (before a projection).
  index word_embedding_size() const noexcept { return m_weights->word_embeddings.cols(); }
  index max_sequence_length() const noexcept { return config().max_sequence_length(); }

  /// The sizes a policy needs to build its parameters for this encoder.
  encoder_shape shape() const;

  /// Throws invalid_argument unless `b` is a batch this encoder can run. @p virtual_tokens:
  /// `virtual_token_id` is accepted (a policy supplies those embeddings).
  void check_batch(const batch& b, const char* where, bool virtual_tokens = false) const;

  /// Embedding output `[B*T x E]` (word + position (+ segment), normalised for BERT, dropout
  /// in train mode), before the policy's on_embeddings hook.
  template <typename Policy = no_policy<Scalar>>
  mat embed(const batch& b, mode m = mode::eval, rng* gen = nullptr,
            nondeduced_t<encoder_tape<Scalar, Policy>>* t = nullptr) const;

  /// Hidden states `[B*T x H]` (row `b*T + t`) of the frozen encoder, evaluation mode.
  mat forward(const batch& b) const { return forward(b, no_policy<Scalar>{}); }

  /// Forward pass through the policy's hooks.
  /// @param t    when non-null, records what `backward` needs (any mode)
  /// @param gen  random generator for dropout; required in train mode when dropout > 0
  /// @throws invalid_argument for a malformed batch (ids out of range, too long, empty rows)
  template <typename Policy>
  mat forward(const batch& b, const Policy& p, mode m = mode::eval,
              nondeduced_t<encoder_tape<Scalar, Policy>>* t = nullptr, rng* gen = nullptr) const;

  /// Forward pass from a given embedding output `h0` (`[B*T x E]`), e.g. for prompt tuning
  /// or for an input-gradient check. The batch supplies the mask (its ids are not read).
  /// @throws invalid_argument for shapes that do not match the batch
  /// @throws numeric_error if `h0` holds a NaN or an infinity (always checked)
  template <typename Policy>
  mat forward_embedded(const mat& h0, const batch& b, const Policy& p, mode m = mode::eval,
                       nondeduced_t<encoder_tape<Scalar, Policy>>* t = nullptr, rng* gen = nullptr) const;

  /// Backward pass: from the gradient of the encoder output, accumulates the policy's
  /// parameter gradients and returns the gradient with respect to the input of layer
  /// `stop_layer` (for 0: the embedding output, before on_embeddings). Layers below
  /// `stop_layer` are not visited. The default stop is the policy's lowest trainable layer.
  /// Assumes `forward` recorded `t` with the same policy and an unchanged policy state.
  /// In check mode, `d_out`, every intermediate gradient and, when the policy exposes them
  /// through `parameters()`, its parameter gradients are checked for NaN/Inf.
  /// @throws invalid_argument for a tape or gradient that does not match
  /// @throws numeric_error in check mode, naming the first non-finite gradient
  template <typename Policy>
  mat backward(const mat& d_out, Policy& p, const encoder_tape<Scalar, Policy>& t,
               index stop_layer = -1) const;

private:
  /// embed(), with policy @p p's on_input_embeddings hook when @p p is non-null.
  template <typename Policy>
  mat embed_impl(const batch& b, const Policy* p, mode m, rng* gen, encoder_tape<Scalar, Policy>* t) const;

  /// A check-mode site: when check mode is on, throws numeric_error naming
  /// "where: [layer l ]parts..." and the first non-finite entry of @p m. The name is built
  /// only on failure; with check mode off the site costs one relaxed atomic load.
  template <typename Derived, typename... Parts>
  static void check_op(const Eigen::DenseBase<Derived>& m, const char* where, index l,
                       const Parts&... parts) {
    if (check_numerics()) detail::check_finite_lazy(m, [&] { return op_name(where, l, parts...); });
  }

  /// As check_op, but always on (for what a policy injects).
  template <typename Derived, typename... Parts>
  static void check_always(const Eigen::DenseBase<Derived>& m, const char* where, index l,
                           const Parts&... parts) {
    detail::check_finite_lazy(m, [&] { return op_name(where, l, parts...); });
  }

  template <typename... Parts>
  static std::string op_name(const char* where, index l, const Parts&... parts) {
    std::string s = std::string(where) + ": ";
    if (l >= 0) s += "layer " + std::to_string(l) + " ";
    ((s += parts), ...);
    return s;
  }

  static const char* sublayer_name(sublayer sl) noexcept {
    return sl == sublayer::attention ? "attention" : "FFN";
  }

  /// Check mode: a linear map's output, and on failure which of its operands is not finite.
  template <typename Derived>
  static void check_linear_output(index l, linear_id id, const mat& x, const mat& w, bool policy_weight,
                                  const Derived& bias, const mat& y) {
    const detail::non_finite_entry e = detail::first_non_finite(y);
    if (!e.found) return;
    std::string cause;
    detail::non_finite_entry c = detail::first_non_finite(w);
    if (c.found) {
      cause = std::string(policy_weight ? "the effective " : "the frozen ") + peft::to_string(id) +
              " weight holds " + detail::finite_or_not(c.value) + " at row " + std::to_string(c.row) +
              ", column " + std::to_string(c.col);
    } else if ((c = detail::first_non_finite(bias)).found) {
      cause = std::string("the frozen ") + peft::to_string(id) + " bias holds " +
              detail::finite_or_not(c.value) + " at row " + std::to_string(c.row);
    } else if ((c = detail::first_non_finite(x)).found) {
      cause = "its input holds " + detail::finite_or_not(c.value) + " at row " + std::to_string(c.row) +
              ", column " + std::to_string(c.col);
    } else {
      cause = "overflow from finite operands";
    }
    throw numeric_error(
        detail::non_finite_message(op_name("encoder::forward", l, peft::to_string(id), " output"), e) + " (" +
        cause + ")");
  }

  /// Check mode, end of backward: the gradients of the policy's parameters, when the policy
  /// exposes them (`parameters()` returning a parameter_store or a parameter_set).
  template <typename Policy>
  static void check_policy_grads(Policy& p) {
    if constexpr (params_are_store<Policy>::value) {
      detail::check_finite_grads(p.parameters(), "encoder::backward");
    } else if constexpr (params_are_set<Policy>::value) {
      auto set = p.parameters();
      for (std::size_t i = 0; i < set.num_stores(); ++i)
        detail::check_finite_grads(set.store(i), "encoder::backward");
    } else {
      (void)p;
    }
  }

  /// Whether `parameters()` gives a parameter_store (`blocks()`) or a parameter_set (`num_stores()`).
  template <typename P, typename = void>
  struct params_are_store : std::false_type {};
  template <typename P>
  struct params_are_store<P, std::void_t<decltype(std::declval<P&>().parameters().blocks())>>
      : std::true_type {};
  template <typename P, typename = void>
  struct params_are_set : std::false_type {};
  template <typename P>
  struct params_are_set<P, std::void_t<decltype(std::declval<P&>().parameters().num_stores())>>
      : std::true_type {};

  static rng& require_rng(rng* gen, const char* where) {
    if (!gen)
      throw invalid_argument(std::string(where) + ": train mode with dropout needs a random generator (got null)");
    return *gen;
  }

  void validate() const;

public:
  /// MPNet's bucket of the relative position `key - query` (T5's bidirectional scheme): half
  /// the buckets for keys before the query, half for keys after; within each half, exact
  /// buckets for distances below a quarter of the buckets, then logarithmic up to
  /// `max_distance`, computed in float as PyTorch does.
  static index relative_bucket(index key_minus_query, index num_buckets, index max_distance) {
    index n = -key_minus_query;
    const index half = num_buckets / 2, exact = half / 2;
    const index base = n < 0 ? half : 0;
    n = n < 0 ? -n : n;
    if (n < exact) return base + n;
    const float v = std::log(static_cast<float>(n) / static_cast<float>(exact)) /
                    static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(exact))) *
                    static_cast<float>(half - exact);
    return base + std::min<index>(exact + static_cast<index>(v), half - 1);
  }

private:
  /// `[heads*T x T]`: row `h*T + i`, column `j` holds head h's bias for query i and key j.
  mat relative_bias(index T) const {
    const auto& R = m_weights->relative_attention_bias;
    const index H = R.cols();
    mat out(H * T, T);
    for (index i = 0; i < T; ++i)
      for (index j = 0; j < T; ++j) {
        const index k = relative_bucket(j - i, R.rows(), config().relative_attention_max_distance);
        for (index h = 0; h < H; ++h) out(h * T + i, j) = R(k, h);
      }
    return out;
  }

  /// tensor2tensor timing signal: [sin(p * inv), cos(p * inv)] with geometric timescales
  /// from 1 to 1e4 over half the width.
  void add_timing_signal(mat& h, index B, index T, index first = 0) const {
    const index E = h.cols(), half = E / 2;
    const double log_inc = std::log(1.0e4) / static_cast<double>(std::max<index>(half - 1, 1));
    for (index s = 0; s < T; ++s) {
      for (index j = 0; j < half; ++j) {
        const double angle = static_cast<double>(s + first) * std::exp(-static_cast<double>(j) * log_inc);
        const Scalar sn = static_cast<Scalar>(std::sin(angle)), cs = static_cast<Scalar>(std::cos(angle));
        for (index i = 0; i < B; ++i) {
          h(i * T + s, j) += sn;
          h(i * T + s, half + j) += cs;
        }
      }
    }
  }

  template <typename Policy>
  mat run_layers(mat h, const batch& b, const Policy& p, mode m, encoder_tape<Scalar, Policy>* t, rng* gen) const {
    hook_context ctx;
    ctx.run_mode = m;
    static_assert(!is_any_policy_v<Policy>,
                  "peft::encoder::forward: an any_policy has no hooks of its own; call "
                  "policy.visit([&](const auto& p) { return enc.forward(b, p); })");
    ctx.gen = gen;
    ctx.record = t != nullptr;
    ctx.input = &b;
    ctx.batch_size = b.size();
    ctx.time = b.time();
    policy_tape_t<Policy> scratch_policy_tape;
    policy_tape_t<Policy>& pt = t ? t->policy : scratch_policy_tape;
    if (t) {
      t->batch_size = b.size();
      t->time = b.time();
      t->mask = b.mask;
      t->layers.resize(static_cast<std::size_t>(num_layers()));
    }
    // The encoder-output hook (side-tuning) reads the embedding output as the frozen
    // embeddings produce it, before any policy changes it.
    mat h0_local;
    if constexpr (has_on_encoder_output_v<Policy>) (t ? t->h0 : h0_local) = h;
    if constexpr (has_on_embeddings_v<Policy>) {
      p.on_embeddings(h, ctx, pt);
      check_always(h, "encoder::forward", -1, "policy on_embeddings output");
    }
    layer_tape<Scalar> scratch;
    // Layers below record_from share the scratch tape: nothing of theirs outlives the pass.
    const index first_kept = t ? std::clamp<index>(t->record_from, 0, num_layers()) : num_layers();
    for (index l = 0; l < num_layers(); ++l) {
      layer_tape<Scalar>& lt = l >= first_kept ? t->layers[static_cast<std::size_t>(l)] : scratch;
      h = layer_forward(l, std::move(h), b, p, ctx, lt, pt);
    }
    if (!m_weights->final_norm.empty()) {
      ops::layer_norm_forward(h, m_weights->final_norm.gamma, m_weights->final_norm.beta, config().layer_norm_eps, h,
                              t ? &t->final_norm : nullptr);
      check_op(h, "encoder::forward", -1, "final LayerNorm output");
      norm_fwd(-1, norm_site::final, h, p, ctx, pt);
    }
    if constexpr (has_on_encoder_output_v<Policy>) {
      p.on_encoder_output(t ? t->h0 : h0_local, h, ctx, pt);
      check_op(h, "encoder::forward", -1, "policy on_encoder_output output");
    }
    return h;
  }

  /// A frozen linear map, from its float or its bf16 weight.
  static void frozen_linear_forward(const mat& x, const linear_weights<Scalar>& lw, mat& y) {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (lw.is_bf16()) return ops::linear_forward(x, lw.weight_bf16, lw.bias, y);
    }
    ops::linear_forward(x, lw.weight, lw.bias, y);
  }

  static void frozen_linear_backward_input(const mat& dy, const linear_weights<Scalar>& lw, mat& dx,
                                           bool accumulate) {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (lw.is_bf16()) return ops::linear_backward_input(dy, lw.weight_bf16, dx, accumulate);
    }
    ops::linear_backward_input(dy, lw.weight, dx, accumulate);
  }

  /// The policy's scale of linear @p id in layer @p l (linear_scale), checked against the
  /// linear's shape; empty when the policy has no such hook or does not scale this linear.
  template <typename Policy>
  static linear_scaling<Scalar> scale_of(const Policy& p, index l, linear_id id, const linear_weights<Scalar>& lw,
                                         const char* where) {
    if constexpr (has_linear_scale_v<Policy>) {
      const linear_scaling<Scalar> sc = p.linear_scale(l, id);
      if (sc.data) {
        const index want = sc.on_input ? lw.in_features() : lw.out_features();
        if (sc.size != want)
          throw invalid_argument(op_name(where, l, peft::to_string(id), ": policy linear_scale ") +
                                 (sc.on_input ? "input" : "output") + " scale length expected " +
                                 std::to_string(want) + ", got " + std::to_string(sc.size));
      }
      return sc;
    } else {
      (void)p, (void)l, (void)id, (void)lw, (void)where;
      return {};
    }
  }

  static Eigen::Map<const row_vector<Scalar>> scale_map(const linear_scaling<Scalar>& sc) {
    return Eigen::Map<const row_vector<Scalar>>(sc.data, sc.size);
  }

  template <typename Policy>
  void linear_fwd(index l, linear_id id, const linear_weights<Scalar>& lw, const mat& x, mat& y, const Policy& p,
                  const hook_context& ctx, layer_tape<Scalar>& lt, policy_tape_t<Policy>& pt) const {
    const linear_scaling<Scalar> sc = scale_of(p, l, id, lw, "encoder::forward");
    mat x_scaled;
    const mat* in = &x;
    if (sc.data && sc.on_input) {
      x_scaled = x.array().rowwise() * scale_map(sc).array();
      in = &x_scaled;
    }
    const mat* w = &lw.weight;
    if constexpr (has_on_weight_v<Policy>) {
      if (p.transforms_weight(l, id)) {
        if (lw.is_bf16())
          throw invalid_argument("encoder::forward: layer " + std::to_string(l) + " " + peft::to_string(id) +
                                 ": the policy rewrites this frozen weight, which needs it in float; the "
                                 "backbone holds it in bf16 (to_bf16). Use float weights for this policy");
        mat& we = lt.w_eff[static_cast<std::size_t>(id)];
        p.on_weight(l, id, lw.weight, we, pt);
        check_op(we, "encoder::forward", l, peft::to_string(id),
                 " effective weight (policy on_weight output)");
        w = &we;
      }
    }
    if (w == &lw.weight && lw.is_bf16()) {
      frozen_linear_forward(*in, lw, y);
    } else {
      ops::linear_forward(*in, *w, lw.bias, y);
    }
    if (check_numerics()) check_linear_output(l, id, *in, *w, w != &lw.weight, lw.bias, y);
    if (sc.data && !sc.on_input) {
      if (ctx.record) lt.unscaled[static_cast<std::size_t>(id)] = y;
      y.array().rowwise() *= scale_map(sc).array();
      check_op(y, "encoder::forward", l, peft::to_string(id), ": output scaled by the policy (linear_scale)");
    }
    if constexpr (has_on_linear_v<Policy>) {
      p.on_linear(l, id, *in, y, ctx, pt);
      check_op(y, "encoder::forward", l, peft::to_string(id), ": policy on_linear output");
    }
    (void)ctx;
  }

  template <typename Policy>
  void linear_bwd(index l, linear_id id, const linear_weights<Scalar>& lw, const mat& x, const mat& dy, mat& dx,
                  bool accumulate, Policy& p, const layer_tape<Scalar>& lt, const policy_tape_t<Policy>& pt) const {
    const linear_scaling<Scalar> sc = scale_of(p, l, id, lw, "encoder::backward");
    const mat* in = &x;
    const mat* dy_base = &dy;  // gradient at the frozen map's own output
    mat x_scaled, dy_scaled;
    if constexpr (has_linear_scale_v<Policy>) {
      if (sc.data && sc.on_input) {
        x_scaled = x.array().rowwise() * scale_map(sc).array();
        in = &x_scaled;
      } else if (sc.data) {
        const mat& pre = lt.unscaled[static_cast<std::size_t>(id)];
        if (pre.rows() != dy.rows() || pre.cols() != dy.cols())
          throw invalid_argument(op_name("encoder::backward", l, peft::to_string(id)) +
                                 ": no unscaled output recorded for the policy's output scale (was forward "
                                 "called with a tape and this policy?)");
        const row_vector<Scalar> ds = (dy.array() * pre.array()).colwise().sum();
        check_op(ds, "encoder::backward", l, peft::to_string(id), " output scale gradient");
        p.on_linear_scale_backward(l, id, ds);
        dy_scaled = dy.array().rowwise() * scale_map(sc).array();
        dy_base = &dy_scaled;
      }
    }
    const mat* w = &lw.weight;
    if constexpr (has_on_weight_v<Policy>) {
      if (p.transforms_weight(l, id)) {
        w = &lt.w_eff[static_cast<std::size_t>(id)];
        mat dw = dy_base->transpose() * *in;  // gradient of the effective weight, handed to the policy
        check_op(dw, "encoder::backward", l, peft::to_string(id), " effective weight gradient");
        p.on_weight_backward(l, id, lw.weight, dw, pt);
      }
    }
    // With an input scale the gradient reaching the scaled input is gathered apart first.
    mat d_in_local;
    const bool input_scaled = sc.data && sc.on_input;
    mat& d_in = input_scaled ? d_in_local : dx;
    const bool acc = input_scaled ? false : accumulate;
    if (w == &lw.weight && lw.is_bf16()) {
      frozen_linear_backward_input(*dy_base, lw, d_in, acc);
    } else {
      ops::linear_backward_input(*dy_base, *w, d_in, acc);
    }
    check_op(d_in, "encoder::backward", l, peft::to_string(id),
             acc ? " input gradient (accumulated)" : " input gradient");
    if constexpr (has_on_linear_v<Policy>) {
      p.on_linear_backward(l, id, dy, d_in, pt);
      check_op(d_in, "encoder::backward", l, peft::to_string(id), ": policy on_linear_backward input gradient");
    }
    if constexpr (has_linear_scale_v<Policy>) {
      if (input_scaled) {
        const row_vector<Scalar> ds = (d_in_local.array() * x.array()).colwise().sum();
        check_op(ds, "encoder::backward", l, peft::to_string(id), " input scale gradient");
        p.on_linear_scale_backward(l, id, ds);
        d_in_local.array().rowwise() *= scale_map(sc).array();
        if (accumulate) {
          dx += d_in_local;
        } else {
          dx = std::move(d_in_local);
        }
      }
    }
    (void)x;
  }

  /// The policy's hook on the output of LayerNorm @p n (layer @p l, -1 outside the layers).
  template <typename Policy>
  void norm_fwd(index l, norm_site n, mat& h, const Policy& p, const hook_context& ctx,
                policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_norm_output_v<Policy>) {
      p.on_norm_output(l, n, h, ctx, pt);
      check_op(h, "encoder::forward", l, norm_name(n), ": policy on_norm_output output");
    } else {
      (void)l, (void)n, (void)h, (void)p, (void)ctx, (void)pt;
    }
  }
  template <typename Policy>
  void norm_bwd(index l, norm_site n, mat& dh, Policy& p, const policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_norm_output_v<Policy>) {
      p.on_norm_output_backward(l, n, dh, pt);
      check_op(dh, "encoder::backward", l, norm_name(n), ": policy on_norm_output_backward gradient");
    } else {
      (void)l, (void)n, (void)dh, (void)p, (void)pt;
    }
  }
  static const char* norm_name(norm_site n) noexcept {
    switch (n) {
      case norm_site::embeddings: return "embedding LayerNorm";
      case norm_site::attention: return "attention LayerNorm";
      case norm_site::ffn: return "FFN LayerNorm";
      case norm_site::final: break;
    }
    return "final LayerNorm";
  }

  /// Sub-layer output: policy hook, hidden dropout, policy hook.
  template <typename Policy>
  void sublayer_fwd(index l, sublayer s, mat& h, mat& drop_mask, const Policy& p, const hook_context& ctx,
                    policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_sublayer_output_v<Policy>) {
      p.on_sublayer_output(l, s, placement::pre_dropout, h, ctx, pt);
      check_op(h, "encoder::forward", l, sublayer_name(s),
               ": policy on_sublayer_output (pre_dropout) output");
    }
    if (ctx.run_mode == mode::train && config().hidden_dropout > 0 &&
        (s == sublayer::ffn || config().attention_output_dropout())) {
      ops::make_dropout_mask(h.rows(), h.cols(), config().hidden_dropout, require_rng(ctx.gen, "encoder::forward"),
                             drop_mask);
      h.array() *= drop_mask.array();
    } else {
      drop_mask.resize(0, 0);
    }
    if constexpr (has_on_sublayer_output_v<Policy>) {
      p.on_sublayer_output(l, s, placement::post_dropout, h, ctx, pt);
      check_op(h, "encoder::forward", l, sublayer_name(s),
               ": policy on_sublayer_output (post_dropout) output");
    }
  }

  template <typename Policy>
  void sublayer_bwd(index l, sublayer s, mat& dh, const mat& drop_mask, Policy& p,
                    const policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_sublayer_output_v<Policy>) {
      p.on_sublayer_output_backward(l, s, placement::post_dropout, dh, pt);
      check_op(dh, "encoder::backward", l, sublayer_name(s),
               ": policy on_sublayer_output_backward (post_dropout) gradient");
    }
    if (drop_mask.size() != 0) dh.array() *= drop_mask.array();
    if constexpr (has_on_sublayer_output_v<Policy>) {
      p.on_sublayer_output_backward(l, s, placement::pre_dropout, dh, pt);
      check_op(dh, "encoder::backward", l, sublayer_name(s),
               ": policy on_sublayer_output_backward (pre_dropout) gradient");
    }
    (void)l;
    (void)s;
  }

  /// AdapterHub's original_ln_before: `z = LN(h + r)` with the block's LayerNorm @p n, handed
  /// to the policy's `on_residual_norm`, which may change the sub-layer output @p h.
  template <typename Policy, typename Norm>
  void residual_norm_fwd(index l, sublayer s, mat& h, const mat& r, const Norm& n,
                         ops::layer_norm_cache<Scalar>& cache, const Policy& p, const hook_context& ctx,
                         policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_residual_norm_v<Policy>) {
      if (!p.reads_residual_norm(l, s)) return;
      if constexpr (Arch::pre_norm) {
        throw invalid_argument("encoder::forward: layer " + std::to_string(l) + " " + sublayer_name(s) +
                               ": the policy reads the sub-layer output after the block's LayerNorm "
                               "(AdapterHub's original_ln_before), which expects a post-norm encoder (BERT "
                               "family); " + config().model_type + " normalises before each sub-layer");
      } else {
        mat z = h + r;
        ops::layer_norm_forward(z, n.gamma, n.beta, config().layer_norm_eps, z, &cache);
        check_op(z, "encoder::forward", l, sublayer_name(s), ": residual sum + LayerNorm for on_residual_norm");
        p.on_residual_norm(l, s, z, h, ctx, pt);
        check_op(h, "encoder::forward", l, sublayer_name(s), ": policy on_residual_norm output");
      }
    } else {
      (void)l, (void)s, (void)h, (void)r, (void)n, (void)cache, (void)p, (void)ctx, (void)pt;
    }
  }
  /// Backward of residual_norm_fwd: @p dh (gradient of the changed sub-layer output) becomes that
  /// of the sub-layer output, and the path through `z` is added to it and to @p dr, the
  /// gradient of the residual input.
  template <typename Policy, typename Norm>
  void residual_norm_bwd(index l, sublayer s, mat& dh, mat& dr, const Norm& n,
                         const ops::layer_norm_cache<Scalar>& cache, Policy& p,
                         const policy_tape_t<Policy>& pt) const {
    if constexpr (has_on_residual_norm_v<Policy> && !Arch::pre_norm) {
      if (!p.reads_residual_norm(l, s)) return;
      mat dz = mat::Zero(dh.rows(), dh.cols());
      p.on_residual_norm_backward(l, s, dh, dz, pt);
      check_op(dz, "encoder::backward", l, sublayer_name(s), ": policy on_residual_norm_backward gradient");
      ops::layer_norm_backward(dz, n.gamma, cache, dz);
      dh += dz;
      dr += dz;
    } else {
      (void)l, (void)s, (void)dh, (void)dr, (void)n, (void)cache, (void)p, (void)pt;
    }
  }

  template <typename Policy>
  mat layer_forward(index l, mat x, const batch& b, const Policy& p, const hook_context& ctx, layer_tape<Scalar>& lt,
                    policy_tape_t<Policy>& pt) const {
    const auto& W = m_weights->layer(l);
    const double eps = config().layer_norm_eps;
    constexpr const char* where = "encoder::forward";
    if constexpr (has_on_layer_input_v<Policy>) {
      p.on_layer_input(l, x, ctx, pt);
      check_always(x, where, l, "policy on_layer_input output");
    }
    lt.x = std::move(x);

    // Attention block.
    const mat* attn_in = &lt.x;
    if constexpr (Arch::pre_norm) {
      ops::layer_norm_forward(lt.x, W.attn_norm.gamma, W.attn_norm.beta, eps, lt.n1, &lt.norm1);
      check_op(lt.n1, where, l, "attention LayerNorm output");
      norm_fwd(l, norm_site::attention, lt.n1, p, ctx, pt);
      attn_in = &lt.n1;
    }
    linear_fwd(l, linear_id::query, W.query, *attn_in, lt.q, p, ctx, lt, pt);
    linear_fwd(l, linear_id::key, W.key, *attn_in, lt.k, p, ctx, lt, pt);
    linear_fwd(l, linear_id::value, W.value, *attn_in, lt.v, p, ctx, lt, pt);
    ops::attention_shape shape{b.size(), b.time(), config().num_heads, 0};
    if constexpr (has_kv_prefix_v<Policy>) {
      shape.prefix = p.kv_prefix_length(l);
      if (shape.prefix > 0) {
        p.kv_prefix(l, lt.prefix_k, lt.prefix_v, ctx, pt);
        check_always(lt.prefix_k, where, l, "prefix keys (policy kv_prefix output)");
        check_always(lt.prefix_v, where, l, "prefix values (policy kv_prefix output)");
      }
    }
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(W.attention_width() / config().num_heads));
    const bool train = ctx.run_mode == mode::train;
    const double attn_drop = train ? config().attention_dropout : 0.0;
    ops::attention_fault scores;
    const bool checking = check_numerics();
    mat rel_bias;  // MPNet: constant in the weights, so the backward needs nothing of it
    if (m_weights->relative_attention_bias.size() != 0) rel_bias = relative_bias(b.time());
    ops::attention_forward(shape, lt.q, lt.k, lt.v, shape.prefix ? &lt.prefix_k : nullptr,
                           shape.prefix ? &lt.prefix_v : nullptr, b.mask, scale, attn_drop,
                           attn_drop > 0 ? &require_rng(ctx.gen, "encoder::forward") : nullptr, lt.ctx,
                           &lt.attn, checking ? &scores : nullptr, rel_bias.size() ? &rel_bias : nullptr);
    if (checking) {
      if (scores.found)
        throw numeric_error(
            op_name(where, l, "attention scores") + ": expected finite, got " +
            detail::finite_or_not(scores.value) + " at sequence " + std::to_string(scores.sequence) +
            ", head " + std::to_string(scores.head) + ", query " + std::to_string(scores.query) + ", " +
            (scores.key < shape.prefix ? "prefix key " : "key ") +
            std::to_string(scores.key < shape.prefix ? scores.key : scores.key - shape.prefix));
      check_op(lt.attn.probs, where, l, "attention probabilities (softmax output)");
      check_op(lt.ctx, where, l, "attention context");
    }
    mat a;
    linear_fwd(l, linear_id::attn_out, W.attn_out, lt.ctx, a, p, ctx, lt, pt);
    sublayer_fwd(l, sublayer::attention, a, lt.drop_attn, p, ctx, pt);
    if (W.residual_proj.empty()) {
      residual_norm_fwd(l, sublayer::attention, a, lt.x, W.attn_norm, lt.residual_norm1, p, ctx, pt);
      a += lt.x;
    } else {
      mat r;
      frozen_linear_forward(lt.x, W.residual_proj, r);
      check_op(r, where, l, "residual projection output");
      residual_norm_fwd(l, sublayer::attention, a, r, W.attn_norm, lt.residual_norm1, p, ctx, pt);
      a += r;
    }
    if constexpr (Arch::pre_norm) {
      lt.x1 = std::move(a);
      check_op(lt.x1, where, l, "attention residual sum");
    } else {
      ops::layer_norm_forward(a, W.attn_norm.gamma, W.attn_norm.beta, eps, lt.x1, &lt.norm1);
      check_op(lt.x1, where, l, "attention residual + LayerNorm output");
      norm_fwd(l, norm_site::attention, lt.x1, p, ctx, pt);
    }

    // Feed-forward block.
    const mat* ffn_in = &lt.x1;
    if constexpr (Arch::pre_norm) {
      ops::layer_norm_forward(lt.x1, W.ffn_norm.gamma, W.ffn_norm.beta, eps, lt.n2, &lt.norm2);
      check_op(lt.n2, where, l, "FFN LayerNorm output");
      norm_fwd(l, norm_site::ffn, lt.n2, p, ctx, pt);
      ffn_in = &lt.n2;
    }
    linear_fwd(l, linear_id::ffn_in, W.ffn_in, *ffn_in, lt.u, p, ctx, lt, pt);
    ops::activation_forward(config().hidden_act, lt.u, lt.g);
    check_op(lt.g, where, l, "FFN activation output");
    mat f;
    linear_fwd(l, linear_id::ffn_out, W.ffn_out, lt.g, f, p, ctx, lt, pt);
    sublayer_fwd(l, sublayer::ffn, f, lt.drop_ffn, p, ctx, pt);
    residual_norm_fwd(l, sublayer::ffn, f, lt.x1, W.ffn_norm, lt.residual_norm2, p, ctx, pt);
    f += lt.x1;
    if constexpr (!Arch::pre_norm) {
      ops::layer_norm_forward(f, W.ffn_norm.gamma, W.ffn_norm.beta, eps, f, &lt.norm2);
      check_op(f, where, l, "FFN residual + LayerNorm output");
      norm_fwd(l, norm_site::ffn, f, p, ctx, pt);
    } else {
      check_op(f, where, l, "FFN residual sum");
    }
    return f;
  }

  template <typename Policy>
  mat layer_backward(index l, const mat& dy, Policy& p, const encoder_tape<Scalar, Policy>& t) const {
    const auto& W = m_weights->layer(l);
    const auto& lt = t.layers[static_cast<std::size_t>(l)];
    const auto& pt = t.policy;
    constexpr const char* where = "encoder::backward";

    // Feed-forward block.
    mat dz2 = dy;
    if constexpr (!Arch::pre_norm) {
      norm_bwd(l, norm_site::ffn, dz2, p, pt);
      ops::layer_norm_backward(dz2, W.ffn_norm.gamma, lt.norm2, dz2);
      check_op(dz2, where, l, "FFN LayerNorm input gradient");
    }
    mat df = dz2;
    residual_norm_bwd(l, sublayer::ffn, df, dz2, W.ffn_norm, lt.residual_norm2, p, pt);
    sublayer_bwd(l, sublayer::ffn, df, lt.drop_ffn, p, pt);
    mat dg;
    linear_bwd(l, linear_id::ffn_out, W.ffn_out, lt.g, df, dg, false, p, lt, pt);
    ops::activation_backward(config().hidden_act, lt.u, dg);
    check_op(dg, where, l, "FFN activation input gradient");
    mat din;
    linear_bwd(l, linear_id::ffn_in, W.ffn_in, Arch::pre_norm ? lt.n2 : lt.x1, dg, din, false, p, lt, pt);
    mat dx1;
    if constexpr (Arch::pre_norm) {
      norm_bwd(l, norm_site::ffn, din, p, pt);
      ops::layer_norm_backward(din, W.ffn_norm.gamma, lt.norm2, dx1);
      dx1 += dz2;
    } else {
      dx1 = din + dz2;
    }
    check_op(dx1, where, l, "FFN block input gradient");

    // Attention block.
    mat dz1 = std::move(dx1);
    if constexpr (!Arch::pre_norm) {
      norm_bwd(l, norm_site::attention, dz1, p, pt);
      ops::layer_norm_backward(dz1, W.attn_norm.gamma, lt.norm1, dz1);
      check_op(dz1, where, l, "attention LayerNorm input gradient");
    }
    mat da = dz1;
    residual_norm_bwd(l, sublayer::attention, da, dz1, W.attn_norm, lt.residual_norm1, p, pt);
    sublayer_bwd(l, sublayer::attention, da, lt.drop_attn, p, pt);
    mat dctx;
    linear_bwd(l, linear_id::attn_out, W.attn_out, lt.ctx, da, dctx, false, p, lt, pt);
    ops::attention_shape shape{t.batch_size, t.time, config().num_heads, lt.prefix_k.rows()};
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(W.attention_width() / config().num_heads));
    mat dq, dk, dv, dpk, dpv;
    ops::attention_backward(shape, dctx, lt.q, lt.k, lt.v, shape.prefix ? &lt.prefix_k : nullptr,
                            shape.prefix ? &lt.prefix_v : nullptr, lt.attn, scale, dq, dk, dv,
                            shape.prefix ? &dpk : nullptr, shape.prefix ? &dpv : nullptr);
    check_op(dq, where, l, "attention query gradient");
    check_op(dk, where, l, "attention key gradient");
    check_op(dv, where, l, "attention value gradient");
    if constexpr (has_kv_prefix_v<Policy>) {
      if (shape.prefix > 0) {
        check_op(dpk, where, l, "prefix key gradient");
        check_op(dpv, where, l, "prefix value gradient");
        p.kv_prefix_backward(l, dpk, dpv, pt);
      }
    }
    const mat& attn_in = Arch::pre_norm ? lt.n1 : lt.x;
    mat dn;
    linear_bwd(l, linear_id::query, W.query, attn_in, dq, dn, false, p, lt, pt);
    linear_bwd(l, linear_id::key, W.key, attn_in, dk, dn, true, p, lt, pt);
    linear_bwd(l, linear_id::value, W.value, attn_in, dv, dn, true, p, lt, pt);
    mat dx;
    if constexpr (Arch::pre_norm) {
      norm_bwd(l, norm_site::attention, dn, p, pt);
      ops::layer_norm_backward(dn, W.attn_norm.gamma, lt.norm1, dx);
    } else {
      dx = std::move(dn);
    }
    if (W.residual_proj.empty()) {
      dx += dz1;
    } else {
      frozen_linear_backward_input(dz1, W.residual_proj, dx, true);
    }
    check_op(dx, where, l, "attention block input gradient");
    if constexpr (has_on_layer_input_v<Policy>) {
      p.on_layer_input_backward(l, dx, pt);
      check_op(dx, where, l, "policy on_layer_input_backward gradient");
    }
    return dx;
  }

  shared_weights<Scalar> m_weights;
};

template <typename Arch, typename Scalar>
encoder_shape encoder<Arch, Scalar>::shape() const {
  encoder_shape s;
  s.model_type = config().model_type;
  s.num_layers = num_layers();
  s.num_heads = config().num_heads;
  s.embedding_size = embedding_size();
  s.word_embedding_size = word_embedding_size();
  s.hidden_size = hidden_size();
  s.intermediate_size = m_weights->layers.front().ffn_in.out_features();
  for (index l = 0, n = num_layers(); l < n; ++l) {
    const auto& L = m_weights->layer(l);
    s.input_width.push_back(L.input_width());
    s.attention_width.push_back(L.attention_width());
    s.output_width.push_back(L.output_width());
  }
  s.backbone_parameters = m_weights->num_parameters();
  s.layer_groups = config().layer_groups;  // module paths follow the checkpoint, merged or not
  s.pre_norm = Arch::pre_norm;
  s.embedding_norm = !m_weights->embedding_norm.empty();
  return s;
}

template <typename Arch, typename Scalar>
void encoder<Arch, Scalar>::check_batch(const batch& b, const char* where, bool virtual_tokens) const {
  const std::string w = where;
  if (b.size() == 0 || b.time() == 0) throw invalid_argument(w + ": empty batch (expected at least 1 token)");
  if (b.mask.rows() != b.size() || b.mask.cols() != b.time())
    throw invalid_argument(w + ": mask shape expected [" + std::to_string(b.size()) + ", " +
                           std::to_string(b.time()) + "], got [" + std::to_string(b.mask.rows()) + ", " +
                           std::to_string(b.mask.cols()) + "]");
  if (b.segments.size() != 0 && (b.segments.rows() != b.size() || b.segments.cols() != b.time()))
    throw invalid_argument(w + ": segments shape does not match ids [" + std::to_string(b.size()) + ", " +
                           std::to_string(b.time()) + "]");
  if (b.time() > max_sequence_length())
    throw invalid_argument(w + ": sequence length expected <= " + std::to_string(max_sequence_length()) +
                           ", got " + std::to_string(b.time()));
  const index vocab = m_weights->word_embeddings.rows();
  for (index i = 0; i < b.size(); ++i) {
    index real = 0;
    for (index t = 0; t < b.time(); ++t) {
      const auto m = b.mask(i, t);
      if (m != 0 && m != 1)
        throw invalid_argument(w + ": mask values expected 0 or 1, got " + std::to_string(m) + " at [" +
                               std::to_string(i) + ", " + std::to_string(t) + "]");
      real += m;
      const auto id = b.ids(i, t);
      if ((id < 0 || id >= vocab) && !(virtual_tokens && id == virtual_token_id))
        throw invalid_argument(w + ": token id expected in [0, " + std::to_string(vocab) + "), got " +
                               std::to_string(id) + " at [" + std::to_string(i) + ", " + std::to_string(t) +
                               "]");
      if (b.segments.size() != 0) {
        const auto s = b.segments(i, t);
        const index types = std::max<index>(m_weights->token_type_embeddings.rows(), 1);
        if (s < 0 || s >= types)
          throw invalid_argument(w + ": segment id expected in [0, " + std::to_string(types) + "), got " +
                                 std::to_string(s) + " at [" + std::to_string(i) + ", " + std::to_string(t) +
                                 "]");
      }
    }
    if (real == 0)
      throw invalid_argument(w + ": sequence " + std::to_string(i) + " has no real token (mask all zero)");
  }
}

template <typename Arch, typename Scalar>
template <typename Policy>
matrix<Scalar> encoder<Arch, Scalar>::embed(const batch& b, mode m, rng* gen,
                                            nondeduced_t<encoder_tape<Scalar, Policy>>* t) const {
  return embed_impl<Policy>(b, nullptr, m, gen, t);
}

template <typename Arch, typename Scalar>
template <typename Policy>
matrix<Scalar> encoder<Arch, Scalar>::embed_impl(const batch& b, const Policy* p, mode m, rng* gen,
                                                 encoder_tape<Scalar, Policy>* t) const {
  const auto& W = *m_weights;
  const index B = b.size(), T = b.time(), E = word_embedding_size();
  mat h(B * T, E);
  // The word embeddings first, so that a policy can replace rows (virtual tokens).
  for (index r = 0; r < B * T; ++r) {
    const auto id = b.ids(r / T, r % T);
    if (id == virtual_token_id) {
      h.row(r).setZero();
    } else {
      h.row(r) = W.word_embeddings.row(id);
    }
  }
  hook_context ctx;
  ctx.run_mode = m;
  ctx.gen = gen;
  ctx.record = t != nullptr;
  ctx.input = &b;
  ctx.batch_size = B;
  ctx.time = T;
  policy_tape_t<Policy> scratch;
  policy_tape_t<Policy>& pt = t ? t->policy : scratch;
  if constexpr (has_on_input_embeddings_v<Policy>) {
    if (p) {
      p->on_input_embeddings(b, h, ctx, pt);
      check_always(h, "encoder::embed", -1, "policy on_input_embeddings output");
    }
  }
  // A policy whose prefix stands for earlier positions moves the text's (forward checked the
  // length against the position table).
  const index first = p ? position_offset_of(*p) : 0;
  for (index i = 0; i < B; ++i) {
    index rank = 0;  // position among real tokens, for RoBERTa's padding-offset ids
    for (index s = 0; s < T; ++s) {
      const index r = i * T + s;
      if constexpr (Arch::positions == position_kind::learned) {
        h.row(r) += W.position_embeddings.row(s + first);
      } else if constexpr (Arch::positions == position_kind::learned_pad_offset) {
        const index pos = b.mask(i, s) ? config().pad_token_id + 1 + first + rank++ : config().pad_token_id;
        h.row(r) += W.position_embeddings.row(pos);
      }
      if (W.token_type_embeddings.rows() > 0)
        h.row(r) += W.token_type_embeddings.row(b.segments.size() ? b.segments(i, s) : 0);
    }
  }
  if constexpr (Arch::embedding_scale != 1.0) h *= static_cast<Scalar>(Arch::embedding_scale);
  if constexpr (Arch::positions == position_kind::sinusoidal) add_timing_signal(h, B, T, first);
  check_op(h, "encoder::embed", -1, "embedding sum (word + position + segment)");
  if (!W.embedding_norm.empty()) {
    ops::layer_norm_forward(h, W.embedding_norm.gamma, W.embedding_norm.beta, config().layer_norm_eps, h,
                            t ? &t->emb_norm : nullptr);
    check_op(h, "encoder::embed", -1, "embedding LayerNorm output");
    if (p) norm_fwd(-1, norm_site::embeddings, h, *p, ctx, pt);
  }
  if (m == mode::train && config().hidden_dropout > 0) {
    mat local;
    mat& mask = t ? t->drop_emb : local;
    ops::make_dropout_mask(B * T, E, config().hidden_dropout, require_rng(gen, "encoder::embed"), mask);
    h.array() *= mask.array();
  } else if (t) {
    t->drop_emb.resize(0, 0);
  }
  if (!W.embedding_projection.empty()) {
    mat projected;
    frozen_linear_forward(h, W.embedding_projection, projected);
    check_op(projected, "encoder::embed", -1, "embedding projection output");
    return projected;
  }
  return h;
}

template <typename Arch, typename Scalar>
template <typename Policy>
matrix<Scalar> encoder<Arch, Scalar>::forward(const batch& b, const Policy& p, mode m,
                                              nondeduced_t<encoder_tape<Scalar, Policy>>* t, rng* gen) const {
  static_assert(is_policy_v<Policy>, "peft::encoder::forward: Policy must declare scalar_type");
  static_assert(std::is_same_v<typename Policy::scalar_type, Scalar>,
                "peft::encoder::forward: the policy's scalar_type must equal the encoder's Scalar");
  check_batch(b, "encoder::forward", has_on_input_embeddings_v<Policy>);
  if (const index first = position_offset_of(p); first != 0 && b.time() + first > max_sequence_length())
    throw invalid_argument("encoder::forward: sequence length plus the policy's position offset expected <= " +
                           std::to_string(max_sequence_length()) + ", got " + std::to_string(b.time()) + " + " +
                           std::to_string(first));
  mat h0 = embed_impl<Policy>(b, &p, m, gen, t);
  return run_layers(std::move(h0), b, p, m, t, gen);
}

template <typename Arch, typename Scalar>
template <typename Policy>
matrix<Scalar> encoder<Arch, Scalar>::forward_embedded(const mat& h0, const batch& b, const Policy& p, mode m,
                                                       nondeduced_t<encoder_tape<Scalar, Policy>>* t,
                                                       rng* gen) const {
  if (h0.rows() != b.rows() || h0.cols() != embedding_size())
    throw invalid_argument("encoder::forward_embedded: h0 shape expected [" + std::to_string(b.rows()) +
                           ", " + std::to_string(embedding_size()) + "], got [" + std::to_string(h0.rows()) +
                           ", " + std::to_string(h0.cols()) + "]");
  if (b.mask.rows() != b.size() || b.mask.cols() != b.time())
    throw invalid_argument("encoder::forward_embedded: batch mask shape does not match its ids");
  detail::check_finite(h0, "encoder::forward_embedded: h0");
  if (t) {  // no embedding record: the embeddings did not run here
    t->emb_norm = {};
    t->drop_emb.resize(0, 0);
  }
  return run_layers(mat(h0), b, p, m, t, gen);
}

template <typename Arch, typename Scalar>
template <typename Policy>
matrix<Scalar> encoder<Arch, Scalar>::backward(const mat& d_out, Policy& p,
                                               const encoder_tape<Scalar, Policy>& t,
                                               index stop_layer) const {
  static_assert(!is_any_policy_v<Policy>,
                "peft::encoder::backward: an any_policy has no hooks of its own; visit it");
  const index L = num_layers();
  if (t.layers.size() != static_cast<std::size_t>(L))
    throw invalid_argument("encoder::backward: tape holds " + std::to_string(t.layers.size()) +
                           " layers, expected " + std::to_string(L) + " (was forward called with a tape?)");
  if (d_out.rows() != t.batch_size * t.time || d_out.cols() != hidden_size())
    throw invalid_argument("encoder::backward: gradient shape expected [" +
                           std::to_string(t.batch_size * t.time) + ", " + std::to_string(hidden_size()) +
                           "], got [" + std::to_string(d_out.rows()) + ", " + std::to_string(d_out.cols()) +
                           "]");
  if (stop_layer < 0) stop_layer = lowest_trainable_layer(p, L);
  if (stop_layer > L) stop_layer = L;
  if (stop_layer < L && stop_layer < t.record_from)
    throw invalid_argument("encoder::backward: the tape keeps layers from " + std::to_string(t.record_from) +
                           " (record_from), cannot back-propagate down to layer " +
                           std::to_string(stop_layer));
  constexpr const char* where = "encoder::backward";
  check_op(d_out, where, -1, "output gradient (d_out)");
  mat dh = d_out;
  if constexpr (has_on_encoder_output_v<Policy>) {
    p.on_encoder_output_backward(dh, t.policy);
    check_op(dh, where, -1, "policy on_encoder_output_backward gradient");
  }
  if (!m_weights->final_norm.empty() && stop_layer < L) {
    norm_bwd(-1, norm_site::final, dh, p, t.policy);
    ops::layer_norm_backward(dh, m_weights->final_norm.gamma, t.final_norm, dh);
    check_op(dh, where, -1, "final LayerNorm input gradient");
  }
  for (index l = L - 1; l >= stop_layer; --l) dh = layer_backward(l, dh, p, t);
  if constexpr (has_on_embeddings_v<Policy>) {
    if (stop_layer == 0) {
      p.on_embeddings_backward(dh, t.policy);
      check_op(dh, where, -1, "policy on_embeddings_backward gradient");
    }
  }
  if constexpr (has_on_input_embeddings_v<Policy> || has_on_norm_output_v<Policy>) {
    // Into the embeddings: back through their dropout (and for the input-embedding hook their
    // LayerNorm and scale). What is returned stays the gradient of the embedding output.
    // A tape from forward_embedded holds no embedding record: the embeddings' hooks did not run.
    const bool norm = !m_weights->embedding_norm.empty() && t.emb_norm.rstd.size() == dh.rows();
    if (has_on_input_embeddings_v<Policy> && !m_weights->embedding_norm.empty() && !norm && stop_layer == 0)
      throw invalid_argument(
          "encoder::backward: the tape holds no embedding record for the policy's input embeddings "
          "(forward_embedded does not run on_input_embeddings: use forward)");
    if (stop_layer == 0 && (norm || has_on_input_embeddings_v<Policy>)) {
      const auto& P = m_weights->embedding_projection;
      mat de = P.empty() ? dh : mat(dh * P.weight);
      if (t.drop_emb.size() != 0) de.array() *= t.drop_emb.array();
      if (norm) norm_bwd(-1, norm_site::embeddings, de, p, t.policy);
      if constexpr (has_on_input_embeddings_v<Policy>) {
        if (norm) ops::layer_norm_backward(de, m_weights->embedding_norm.gamma, t.emb_norm, de);
        if constexpr (Arch::embedding_scale != 1.0) de *= static_cast<Scalar>(Arch::embedding_scale);
        check_op(de, where, -1, "word embedding gradient");
        p.on_input_embeddings_backward(de, t.policy);
      }
    }
  }
  if (check_numerics()) check_policy_grads(p);
  return dh;
}

template <typename Arch, typename Scalar>
void encoder<Arch, Scalar>::validate() const {
  if (!m_weights) throw invalid_argument("encoder::encoder: weights expected non-null, got null");
  const auto& W = *m_weights;
  const auto& c = W.config;
  auto fail = [](const std::string& what) { throw invalid_argument("encoder::encoder: " + what); };
  if (arch_of_model_type(c.model_type) != Arch::name)
    fail(std::string("model_type of the '") + Arch::name + "' architecture expected, got '" + c.model_type + "'");
  if (W.layers.empty()) fail("layers expected at least 1, got 0");
  if constexpr (!std::is_same_v<Scalar, float>) {
    if (W.is_bf16()) fail("bf16 weights need encoder<Arch, float>");
  }
  if (static_cast<index>(W.layers.size()) > c.num_layers || c.num_layers % static_cast<index>(W.layers.size()) != 0)
    fail("layer count expected " + std::to_string(c.num_layers) + " (config) or a divisor of it (shared layers), got " +
         std::to_string(W.layers.size()));
  if (!W.embedding_projection.empty() &&
      (W.embedding_projection.in_features() != word_embedding_size() || W.embedding_projection.is_bf16()))
    fail("embedding_projection expected [hidden x " + std::to_string(word_embedding_size()) + "] in float");
  if (W.relative_attention_bias.size() != 0 &&
      (W.relative_attention_bias.cols() != c.num_heads || W.relative_attention_bias.rows() != c.relative_attention_buckets))
    fail("relative_attention_bias shape expected [" + std::to_string(c.relative_attention_buckets) + " x " +
         std::to_string(c.num_heads) + "]");
  if (W.word_embeddings.rows() != c.vocab_size || W.word_embeddings.rows() == 0)
    fail("word_embeddings rows expected " + std::to_string(c.vocab_size) + ", got " +
         std::to_string(W.word_embeddings.rows()));
  if (c.num_heads <= 0) fail("num_heads expected > 0, got " + std::to_string(c.num_heads));
  if constexpr (Arch::positions != position_kind::sinusoidal) {
    if (W.position_embeddings.rows() != c.max_positions || W.position_embeddings.cols() != word_embedding_size())
      fail("position_embeddings shape mismatch with config");
  }
  index width = embedding_size();
  for (index l = 0; l < c.num_layers; ++l) {
    const auto& L = W.layer(l);
    const std::string at = "layer " + std::to_string(l) + ": ";
    if (L.input_width() != width)
      fail(at + "input width expected " + std::to_string(width) + ", got " + std::to_string(L.input_width()));
    if (L.attention_width() % c.num_heads != 0)
      fail(at + "attention width " + std::to_string(L.attention_width()) + " not divisible by heads " +
           std::to_string(c.num_heads));
    if (L.output_width() != width && L.residual_proj.empty())
      fail(at + "width changes from " + std::to_string(width) + " to " + std::to_string(L.output_width()) +
           " without a residual projection");
    width = L.output_width();
  }
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_MODEL_ENCODER
#include "../detail/instances.hpp"

#endif  // PEFT_MODEL_ENCODER_HPP
