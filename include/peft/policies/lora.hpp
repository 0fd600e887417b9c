// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_LORA_HPP
#define PEFT_POLICIES_LORA_HPP

/// @file lora.hpp
/// LoRA: a trainable low-rank path beside chosen frozen linears,
/// `y = x W^T + b + s * dropout(x) A^T B^T` with s = alpha / r (alpha / sqrt(r) for rsLoRA).
/// Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022; rsLoRA:
/// Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", 2023;
/// defaults, initialisation and checkpoint keys as huggingface/peft (`tuners/lora/layer.py`,
/// `config.py`).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../model/weights.hpp"
#include "../ops/dropout.hpp"
#include "linear_targets.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Hyper-parameters of `lora` (defaults: huggingface/peft `LoraConfig` for BERT).
struct lora_config {
  index r = 8;              ///< rank of the update
  double lora_alpha = 8.0;  ///< the update is scaled by lora_alpha / r (rsLoRA: / sqrt(r))
  /// rsLoRA (Kalajdzievski 2023; huggingface/peft `use_rslora`): scale by lora_alpha / sqrt(r),
  /// which keeps the update's size stable as r grows.
  bool use_rslora = false;
  double lora_dropout = 0.0;  ///< dropout on the LoRA input path (train mode only)
  /// Linears that get a LoRA path (peft's BERT default: query and value).
  std::vector<linear_id> target_modules = {linear_id::query, linear_id::value};
  /// Layers that get LoRA paths; empty = every layer (peft's `layers_to_transform=None`).
  std::vector<index> layers_to_transform = {};
  /// Per-linear ranks and alphas overriding `r` and `lora_alpha` (huggingface/peft's
  /// `rank_pattern` / `alpha_pattern`). A key names linears by the end of their module path,
  /// as Hugging Face matches a plain name: "query" is every layer's query,
  /// "encoder.layer.3.attention.self.query" one linear (paths in linear_targets.hpp). A path
  /// matches a key when it equals it or ends with "." + key; of several matching keys the
  /// longest wins. Hugging Face's keys are regular expressions: io/hf_peft.hpp resolves them
  /// into one full-path key per chosen linear when it reads a Hugging Face folder.
  std::map<std::string, index> rank_pattern = {};
  std::map<std::string, double> alpha_pattern = {};
};

/// LoRA over a frozen encoder.
///
/// For each chosen linear `W` (`[out x in]`) of each chosen layer: `lora_A` (`[r x in]`,
/// Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), as
/// `nn.init.kaiming_uniform_(a=math.sqrt(5))` in peft) and `lora_B` (`[out x r]`, zero), so the
/// policy starts as the identity. Block names are the on-disk keys of peft:
/// `base_model.model.bert.encoder.layer.<l>.attention.self.query.lora_A.weight`, ... with the
/// family's own module paths (linear_targets.hpp; USE-lite uses `use_lite.encoder.layer.<l>...`).
/// On ALBERT one pair per module of a layer group serves every layer of the group.
///
/// `merge(base)` returns a copy of the frozen weights with `W + (alpha/r) B A` folded in, for
/// inference with no policy; `unmerge(merged, base)` restores that copy exactly.
/// @tparam Scalar float or double
template <typename Scalar = float>
class lora {
  static_assert(is_supported_scalar_v<Scalar>, "peft::lora: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "LORA";

  /// What a forward pass records for each LoRA path: the (dropped-out) input, its
  /// projection `x A^T`, and the dropout scales (empty without dropout).
  struct tape_type {
    struct entry {
      mat x;
      mat xa;
      mat mask;
    };
    std::vector<entry> paths;  ///< indexed by layer * num_linear_ids + linear
  };

  /// Builds the LoRA paths for an encoder of shape @p shape, initialised as peft does.
  /// @throws peft::invalid_argument naming the bad field (r <= 0, alpha not finite, dropout
  ///   outside [0, 1), no targets, a layer out of range)
  lora(const encoder_shape& shape, const lora_config& config, std::uint64_t seed = 0);

  const lora_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  /// The factor s of the linears without a rank_pattern / alpha_pattern entry: alpha / r, or
  /// alpha / sqrt(r) with use_rslora.
  Scalar scaling() const noexcept { return m_scaling; }
  /// The factor s of linear @p w of layer @p l (its own rank and alpha); 0 without a path.
  Scalar scaling(index l, linear_id w) const noexcept {
    return slot(l, w) < 0 ? Scalar(0) : m_site_scale[slot_index(l, w)];
  }
  /// The rank of linear @p w of layer @p l; 0 without a path.
  index rank(index l, linear_id w) const noexcept {
    return slot(l, w) < 0 ? 0 : m_store.block(slot(l, w)).rows;
  }
  /// alpha / r, or alpha / sqrt(r) with rsLoRA.
  static double scale_for(index r, double alpha, bool rslora) {
    double s = alpha / static_cast<double>(r);
    if (rslora) s = alpha / std::sqrt(static_cast<double>(r));
    return s;
  }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }
  /// Lowest layer holding a LoRA path: the backward pass stops there.
  index lowest_layer(index /*num_layers*/) const noexcept { return m_config.layers_to_transform.front(); }

  /// True when linear @p w of layer @p l has a LoRA path.
  bool has_path(index l, linear_id w) const noexcept { return slot(l, w) >= 0; }

  // --- hooks ---------------------------------------------------------------------------

  /// y += (alpha/r) * dropout(x) A^T B^T for a targeted linear.
  void on_linear(index l, linear_id w, const mat& x, mat& y, const hook_context& ctx, tape_type& t) const;

  /// Accumulates dA, dB and adds the LoRA path's contribution to dx.
  void on_linear_backward(index l, linear_id w, const mat& dy, mat& dx, const tape_type& t);

  // --- merging -------------------------------------------------------------------------

  /// A copy of @p base with every LoRA update folded into its frozen weight,
  /// `W + (alpha/r) B A`. @p base is not changed (it is usually the shared frozen weights).
  /// @throws peft::invalid_argument when @p base does not have this policy's encoder shape
  std::shared_ptr<encoder_weights<Scalar>> merge(const encoder_weights<Scalar>& base) const;

  /// Undoes `merge` on @p merged by restoring every targeted weight from @p base, so that
  /// afterwards `merged` equals @p base bit for bit. (Hugging Face subtracts the update
  /// instead, which does not restore W exactly in floating point; the frozen base is always
  /// at hand here, since it is shared.)
  /// @throws peft::invalid_argument when either set of weights does not have this policy's shape
  void unmerge(encoder_weights<Scalar>& merged, const encoder_weights<Scalar>& base) const {
    check_weights(base, "lora::unmerge (base)");
    check_weights(merged, "lora::unmerge (merged)");
    for (index l : m_config.layers_to_transform)
      for (auto w : m_config.target_modules) linear_of(merged, l, w).weight = linear_of(base, l, w).weight;
  }

  // --- checkpoints ---------------------------------------------------------------------

  /// Everything needed to rebuild this policy (peft's `LoraConfig` fields that apply, plus
  /// the encoder shape).
  nlohmann::json config_json() const;

  /// Rebuilds a (freshly initialised) policy from `config_json()` output.
  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static lora from_config(const nlohmann::json& j, const encoder_shape& shape) {
    return lora(shape, config_from_json(j, shape, "lora::from_config"), 0);
  }

private:
  static lora_config config_from_json(const nlohmann::json& j, const encoder_shape& shape,
                                      const std::string& where);

  std::size_t slot_index(index l, linear_id w) const noexcept {
    return static_cast<std::size_t>(l * num_linear_ids + static_cast<int>(w));
  }
  index slot(index l, linear_id w) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    return m_slot[slot_index(l, w)];
  }

  static linear_weights<Scalar>& linear_of(encoder_weights<Scalar>& W, index l, linear_id w);
  static const linear_weights<Scalar>& linear_of(const encoder_weights<Scalar>& W, index l, linear_id w) {
    return pick(const_cast<layer_weights<Scalar>&>(W.layer(l)), w);
  }
  static linear_weights<Scalar>& pick(layer_weights<Scalar>& L, linear_id w);

  void check_weights(const encoder_weights<Scalar>& W, const std::string& where) const;

  encoder_shape m_shape;
  lora_config m_config;
  Scalar m_scaling = 1;
  std::vector<index> m_slot;         ///< per (layer, linear): position of the lora_A block, or -1
  std::vector<Scalar> m_site_scale;  ///< per (layer, linear): its scaling (0 without a path)
  parameter_store<Scalar> m_store;
};

template <typename Scalar>
lora<Scalar>::lora(const encoder_shape& shape, const lora_config& config, std::uint64_t seed)
    : m_shape(shape), m_config(config) {
  const std::string where = "lora::lora";
  detail::check_encoder_shape(shape, where);
  if (config.r <= 0) throw invalid_argument(where + ": r expected > 0, got " + std::to_string(config.r));
  if (!std::isfinite(config.lora_alpha))
    throw invalid_argument(where + ": lora_alpha expected finite, got " + std::to_string(config.lora_alpha));
  if (!(config.lora_dropout >= 0.0 && config.lora_dropout < 1.0))
    throw invalid_argument(where + ": lora_dropout expected in [0, 1), got " +
                           std::to_string(config.lora_dropout));
  m_config.target_modules = detail::resolve_targets(config.target_modules, where);
  std::vector<index> all;
  for (index l = 0; l < shape.num_layers; ++l) all.push_back(l);
  m_config.layers_to_transform =
      detail::resolve_layers(config.layers_to_transform, all, shape.num_layers, where, "layers_to_transform");
  // ALBERT's layers of a group run one module, and an adapter on it is in all of them, as in
  // Hugging Face PEFT (linear_targets.hpp): a choice of layers cannot be honoured.
  if (shape.layer_groups > 0 && static_cast<index>(m_config.layers_to_transform.size()) != shape.num_layers)
    throw invalid_argument(where + ": layers_to_transform expected every layer on ALBERT (its layers share one "
                           "module per group), got " + detail::layers_to_string(m_config.layers_to_transform));
  m_scaling = static_cast<Scalar>(scale_for(config.r, config.lora_alpha, config.use_rslora));
  for (const auto& kv : config.rank_pattern)
    if (kv.second <= 0)
      throw invalid_argument(where + ": rank_pattern['" + kv.first + "'] expected > 0, got " +
                             std::to_string(kv.second));
  for (const auto& kv : config.alpha_pattern)
    if (!std::isfinite(kv.second))
      throw invalid_argument(where + ": alpha_pattern['" + kv.first + "'] expected finite, got " +
                             std::to_string(kv.second));

  m_slot.assign(static_cast<std::size_t>(shape.num_layers * num_linear_ids), -1);
  m_site_scale.assign(m_slot.size(), Scalar(0));
  rng gen(seed);
  for (index l : m_config.layers_to_transform) {
    for (auto w : m_config.target_modules) {
      const auto [out, in] = shape.linear_shape(l, static_cast<int>(w));
      const std::string module = detail::linear_module_path(shape, l, w);
      const index r = detail::pattern_value(m_config.rank_pattern, module, m_config.r);
      const double alpha = detail::pattern_value(m_config.alpha_pattern, module, m_config.lora_alpha);
      const std::string base = "base_model.model." + module;
      // One pair per module: ALBERT's layers of a group share it, as Hugging Face PEFT's LoRA
      // on the shared module is shared (linear_targets.hpp).
      if ((m_slot[slot_index(l, w)] = m_store.find(base + ".lora_A.weight")) >= 0) {
        m_site_scale[slot_index(l, w)] = static_cast<Scalar>(scale_for(r, alpha, m_config.use_rslora));
        continue;
      }
      const index a = m_store.add(base + ".lora_A.weight", r, in, param_group::weight);
      m_store.add(base + ".lora_B.weight", out, r, param_group::weight);
      m_slot[slot_index(l, w)] = a;
      m_site_scale[slot_index(l, w)] = static_cast<Scalar>(scale_for(r, alpha, m_config.use_rslora));
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      auto A = m_store.value(a);
      for (index k = 0; k < A.size(); ++k)
        A.data()[k] = static_cast<Scalar>((2.0 * gen.uniform() - 1.0) * bound);
      // lora_B stays zero.
    }
  }
}

template <typename Scalar>
void lora<Scalar>::on_linear(index l, linear_id w, const mat& x, mat& y, const hook_context& ctx,
                             tape_type& t) const {
  const index a = slot(l, w);
  if (a < 0) return;
  const auto A = m_store.value(a);
  const auto B = m_store.value(a + 1);
  mat mask;
  const bool drop = ctx.run_mode == mode::train && m_config.lora_dropout > 0.0;
  mat xd_local;
  const mat* xin = &x;
  if (drop) {
    if (!ctx.gen)
      throw invalid_argument(
          "lora::on_linear: train mode with lora_dropout > 0 needs a random generator (got null)");
    ops::make_dropout_mask(x.rows(), x.cols(), m_config.lora_dropout, *ctx.gen, mask);
    xd_local = x.cwiseProduct(mask);
    xin = &xd_local;
  }
  mat xa = (*xin) * A.transpose();
  y.noalias() += (m_site_scale[slot_index(l, w)] * xa) * B.transpose();
  if (ctx.record) {
    if (t.paths.size() != m_slot.size()) t.paths.resize(m_slot.size());
    auto& e = t.paths[slot_index(l, w)];
    e.x = drop ? std::move(xd_local) : x;
    e.xa = std::move(xa);
    e.mask = std::move(mask);
  }
}

template <typename Scalar>
void lora<Scalar>::on_linear_backward(index l, linear_id w, const mat& dy, mat& dx, const tape_type& t) {
  const index a = slot(l, w);
  if (a < 0) return;
  if (t.paths.size() != m_slot.size() || t.paths[slot_index(l, w)].xa.rows() != dy.rows())
    throw invalid_argument("lora::on_linear_backward: no record for layer " + std::to_string(l) + " " +
                           to_string(w) + " (was forward called with a tape and this policy?)");
  const auto& e = t.paths[slot_index(l, w)];
  const auto A = m_store.value(a);
  const auto B = m_store.value(a + 1);
  const Scalar s = m_site_scale[slot_index(l, w)];
  m_store.grad(a + 1).noalias() += s * (dy.transpose() * e.xa);
  const mat dxa = s * (dy * B);
  m_store.grad(a).noalias() += dxa.transpose() * e.x;
  if (e.mask.size() != 0) {
    dx.noalias() += (dxa * A).cwiseProduct(e.mask);
  } else {
    dx.noalias() += dxa * A;
  }
}

template <typename Scalar>
std::shared_ptr<encoder_weights<Scalar>> lora<Scalar>::merge(const encoder_weights<Scalar>& base) const {
  check_weights(base, "lora::merge");
  auto merged = std::make_shared<encoder_weights<Scalar>>(base);
  for (index l : m_config.layers_to_transform)
    for (auto w : m_config.target_modules) {
      const index a = slot(l, w);
      mat& W = linear_of(*merged, l, w).weight;
      const mat delta = m_site_scale[slot_index(l, w)] * (m_store.value(a + 1) * m_store.value(a));
      W += delta;
    }
  return merged;
}

template <typename Scalar>
nlohmann::json lora<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["r"] = m_config.r;
  j["lora_alpha"] = m_config.lora_alpha;
  j["lora_dropout"] = m_config.lora_dropout;
  j["use_rslora"] = m_config.use_rslora;
  j["target_modules"] = detail::targets_to_json(m_config.target_modules);
  j["layers_to_transform"] = m_config.layers_to_transform;
  j["rank_pattern"] = m_config.rank_pattern;
  j["alpha_pattern"] = m_config.alpha_pattern;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
lora_config lora<Scalar>::config_from_json(const nlohmann::json& j, const encoder_shape& shape,
                                           const std::string& where) {
  check_config_header(j, peft_type, shape, where);
  lora_config c;
  c.r = config_field<index>(j, "r", where);
  c.lora_alpha = config_field<double>(j, "lora_alpha", where);
  c.lora_dropout = config_field<double>(j, "lora_dropout", where);
  c.use_rslora =
      config_field_or<bool>(j, "use_rslora", false, where);  // absent from older Hugging Face files
  c.target_modules = detail::targets_from_json(j, "target_modules", where);
  c.layers_to_transform = config_field<std::vector<index>>(j, "layers_to_transform", where);
  // Absent from peft's own files before 0.1.1; Hugging Face's are resolved by io/hf_peft.hpp.
  c.rank_pattern = config_field_or<std::map<std::string, index>>(j, "rank_pattern", {}, where);
  c.alpha_pattern = config_field_or<std::map<std::string, double>>(j, "alpha_pattern", {}, where);
  return c;
}

template <typename Scalar>
linear_weights<Scalar>& lora<Scalar>::linear_of(encoder_weights<Scalar>& W, index l, linear_id w) {
  W.unshare_layers();  // a merge changes one layer's weights, not every layer sharing them
  return pick(W.layers[static_cast<std::size_t>(l)], w);
}

template <typename Scalar>
linear_weights<Scalar>& lora<Scalar>::pick(layer_weights<Scalar>& L, linear_id w) {
  switch (w) {
    case linear_id::query: return L.query;
    case linear_id::key: return L.key;
    case linear_id::value: return L.value;
    case linear_id::attn_out: return L.attn_out;
    case linear_id::ffn_in: return L.ffn_in;
    case linear_id::ffn_out: break;
  }
  return L.ffn_out;
}

template <typename Scalar>
void lora<Scalar>::check_weights(const encoder_weights<Scalar>& W, const std::string& where) const {
  if (W.config.model_type != m_shape.model_type)
    throw invalid_argument(where + ": weights model_type expected '" + m_shape.model_type + "', got '" +
                           W.config.model_type + "'");
  if (W.config.num_layers != m_shape.num_layers)
    throw invalid_argument(where + ": weights layer count expected " + std::to_string(m_shape.num_layers) +
                           ", got " + std::to_string(W.config.num_layers));
  for (index l : m_config.layers_to_transform)
    for (auto w : m_config.target_modules) {
      const auto [out, in] = m_shape.linear_shape(l, static_cast<int>(w));
      if (linear_of(W, l, w).is_bf16())
        throw invalid_argument(where + ": layer " + std::to_string(l) + " " + to_string(w) +
                               " weight is stored in bf16 (to_bf16); merging needs float weights");
      const auto& lw = linear_of(W, l, w).weight;
      if (lw.rows() != out || lw.cols() != in)
        throw invalid_argument(where + ": layer " + std::to_string(l) + " " + to_string(w) +
                               " weight shape expected [" + std::to_string(out) + ", " + std::to_string(in) +
                               "], got [" + std::to_string(lw.rows()) + ", " + std::to_string(lw.cols()) +
                               "]");
    }
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_LORA
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_LORA_HPP
