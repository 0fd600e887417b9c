// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_IA3_HPP
#define PEFT_POLICIES_IA3_HPP

/// @file ia3.hpp
/// (IA)³: learned vectors that rescale activations element-wise. Liu et al., "Few-Shot
/// Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning", NeurIPS
/// 2022 (T-Few). Config fields, initialisation and checkpoint keys as huggingface/peft
/// (`tuners/ia3/config.py`, `layer.py`).
///
/// Each chosen linear `y = x W^T + b` of each chosen layer gets one vector `l`, initialised
/// to ones (the policy starts as the identity):
/// - a *feed-forward* target scales its input: `y = (x ⊙ l) W^T + b`, `l` of length `in`;
/// - any other target scales its output, bias included: `y = (x W^T + b) ⊙ l`, length `out`.
///
/// peft's default is the paper's: keys and values scaled on their output, and the FFN's
/// intermediate activation, which is the input of `ffn_out`. Hugging Face PEFT's BERT default
/// (`target_modules` key, value, output.dense; `feedforward_modules` output.dense) also scales
/// the input of `attn_out`, because its suffix match lets "output.dense" name
/// "attention.output.dense" too; io/hf_peft.hpp reads such a folder as exactly that.
///
/// The encoder does the multiplication (the `linear_scale` hook, policy_traits.hpp); the
/// policy owns the vectors. Block names are Hugging Face's on-disk keys,
/// `base_model.model.bert.encoder.layer.<l>.attention.self.key.ia3_l` (the family's module
/// paths, linear_targets.hpp; ALBERT: one vector per module of a layer group), shaped as
/// Hugging Face stores them: `[out, 1]` for an output scale, `[1, in]` for an input scale.
/// Their parameter group is `weight` (so they are saved 2-D); an optimizer's weight decay
/// therefore pulls them towards zero, not towards one: train (IA)³ without weight decay.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../model/weights.hpp"
#include "linear_targets.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Hyper-parameters of `ia3`.
struct ia3_config {
  /// Linears that get a vector (default: the paper's keys, values and FFN output).
  std::vector<linear_id> target_modules = {linear_id::key, linear_id::value, linear_id::ffn_out};
  /// The targets whose vector scales their input instead of their output; a subset of
  /// `target_modules` (huggingface/peft's `feedforward_modules`).
  std::vector<linear_id> feedforward_modules = {linear_id::ffn_out};
  /// Layers that get vectors; empty = every layer.
  std::vector<index> layers_to_transform = {};
};

/// (IA)³ over a frozen encoder.
/// @tparam Scalar float or double
template <typename Scalar = float>
class ia3 {
  static_assert(is_supported_scalar_v<Scalar>, "peft::ia3: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "IA3";

  /// Builds the vectors (all ones) for an encoder of shape @p shape. @p seed is unused: the
  /// initialisation is deterministic.
  /// @throws peft::invalid_argument naming the bad field (no targets, a feed-forward module
  ///   that is not a target, a layer out of range)
  ia3(const encoder_shape& shape, const ia3_config& config, std::uint64_t seed = 0);

  const ia3_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }
  /// Lowest layer holding a vector: the backward pass stops there.
  index lowest_layer(index /*num_layers*/) const noexcept { return m_config.layers_to_transform.front(); }

  /// True when linear @p w of layer @p l has a vector.
  bool scales(index l, linear_id w) const noexcept { return slot(l, w) >= 0; }
  /// True when linear @p w is a feed-forward target (its vector scales its input).
  bool is_feedforward(linear_id w) const noexcept {
    return std::find(m_config.feedforward_modules.begin(), m_config.feedforward_modules.end(), w) !=
           m_config.feedforward_modules.end();
  }

  // --- hooks ---------------------------------------------------------------------------

  /// The vector of linear @p w of layer @p l, and the side it scales.
  linear_scaling<Scalar> linear_scale(index l, linear_id w) const noexcept {
    const index b = slot(l, w);
    if (b < 0) return {};
    const auto v = m_store.value(b);
    return {v.data(), v.size(), is_feedforward(w)};
  }

  /// Accumulates the gradient of that vector.
  void on_linear_scale_backward(index l, linear_id w, const row_vector<Scalar>& ds) {
    const index b = slot(l, w);
    if (b < 0) return;
    auto g = m_store.grad(b);
    if (ds.size() != g.size())
      throw invalid_argument("ia3::on_linear_scale_backward: layer " + std::to_string(l) + " " + to_string(w) +
                             " gradient length expected " + std::to_string(g.size()) + ", got " +
                             std::to_string(ds.size()));
    Eigen::Map<row_vector<Scalar>>(g.data(), g.size()) += ds;
  }

  // --- merging -------------------------------------------------------------------------

  /// A copy of @p base with every vector folded into its frozen linear: `W diag(l)` for an
  /// input scale, `diag(l) W` and `b ⊙ l` for an output scale. @p base is not changed.
  /// @throws peft::invalid_argument when @p base does not have this policy's encoder shape or
  ///   holds a targeted weight in bf16
  std::shared_ptr<encoder_weights<Scalar>> merge(const encoder_weights<Scalar>& base) const;

  // --- checkpoints ---------------------------------------------------------------------

  /// Everything needed to rebuild this policy (huggingface/peft's `IA3Config` fields that
  /// apply, under peft's linear names, plus the encoder shape).
  nlohmann::json config_json() const;

  /// Rebuilds a (freshly initialised) policy from `config_json()` output.
  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static ia3 from_config(const nlohmann::json& j, const encoder_shape& shape);

private:
  std::size_t slot_index(index l, linear_id w) const noexcept {
    return static_cast<std::size_t>(l * num_linear_ids + static_cast<int>(w));
  }
  index slot(index l, linear_id w) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    return m_slot[slot_index(l, w)];
  }

  encoder_shape m_shape;
  ia3_config m_config;
  std::vector<index> m_slot;  ///< per (layer, linear): its block, or -1
  parameter_store<Scalar> m_store;
};

template <typename Scalar>
ia3<Scalar>::ia3(const encoder_shape& shape, const ia3_config& config, std::uint64_t /*seed*/)
    : m_shape(shape), m_config(config) {
  const std::string where = "ia3::ia3";
  detail::check_encoder_shape(shape, where);
  m_config.target_modules = detail::resolve_targets(config.target_modules, where);
  std::vector<linear_id> ff = config.feedforward_modules;
  std::sort(ff.begin(), ff.end());
  ff.erase(std::unique(ff.begin(), ff.end()), ff.end());
  for (auto w : ff)
    if (std::find(m_config.target_modules.begin(), m_config.target_modules.end(), w) ==
        m_config.target_modules.end())
      throw invalid_argument(where + ": feedforward_modules entry '" + std::string(to_string(w)) +
                             "' expected among target_modules, got " +
                             detail::targets_to_json(m_config.target_modules).dump());
  m_config.feedforward_modules = ff;
  std::vector<index> all;
  for (index l = 0; l < shape.num_layers; ++l) all.push_back(l);
  m_config.layers_to_transform =
      detail::resolve_layers(config.layers_to_transform, all, shape.num_layers, where, "layers_to_transform");
  // ALBERT's layers of a group run one module, and an adapter on it is in all of them, as in
  // Hugging Face PEFT (linear_targets.hpp): a choice of layers cannot be honoured.
  if (shape.layer_groups > 0 && static_cast<index>(m_config.layers_to_transform.size()) != shape.num_layers)
    throw invalid_argument(where + ": layers_to_transform expected every layer on ALBERT (its layers share one "
                           "module per group), got " + detail::layers_to_string(m_config.layers_to_transform));

  m_slot.assign(static_cast<std::size_t>(shape.num_layers * num_linear_ids), -1);
  for (index l : m_config.layers_to_transform)
    for (auto w : m_config.target_modules) {
      const auto [out, in] = shape.linear_shape(l, static_cast<int>(w));
      const std::string key = "base_model.model." + detail::linear_module_path(shape, l, w) + ".ia3_l";
      // One vector per module: ALBERT's layers of a group run the same one (linear_targets.hpp).
      index b = m_store.find(key);
      if (b < 0) {
        b = is_feedforward(w) ? m_store.add(key, 1, in, param_group::weight)
                              : m_store.add(key, out, 1, param_group::weight);
        m_store.value(b).setOnes();
      }
      m_slot[slot_index(l, w)] = b;
    }
}

template <typename Scalar>
std::shared_ptr<encoder_weights<Scalar>> ia3<Scalar>::merge(const encoder_weights<Scalar>& base) const {
  const std::string where = "ia3::merge";
  if (base.config.model_type != m_shape.model_type || base.config.num_layers != m_shape.num_layers)
    throw invalid_argument(where + ": weights expected model_type '" + m_shape.model_type + "' with " +
                           std::to_string(m_shape.num_layers) + " layers, got '" + base.config.model_type +
                           "' with " + std::to_string(base.config.num_layers));
  auto merged = std::make_shared<encoder_weights<Scalar>>(base);
  merged->unshare_layers();  // each layer gets its own scales
  for (index l : m_config.layers_to_transform)
    for (auto w : m_config.target_modules) {
      auto& L = merged->layers[static_cast<std::size_t>(l)];
      linear_weights<Scalar>* lw = nullptr;
      switch (w) {
        case linear_id::query: lw = &L.query; break;
        case linear_id::key: lw = &L.key; break;
        case linear_id::value: lw = &L.value; break;
        case linear_id::attn_out: lw = &L.attn_out; break;
        case linear_id::ffn_in: lw = &L.ffn_in; break;
        case linear_id::ffn_out: lw = &L.ffn_out; break;
      }
      const auto [out, in] = m_shape.linear_shape(l, static_cast<int>(w));
      if (lw->is_bf16() || lw->weight.rows() != out || lw->weight.cols() != in)
        throw invalid_argument(where + ": layer " + std::to_string(l) + " " + to_string(w) +
                               " weight expected float [" + std::to_string(out) + ", " + std::to_string(in) +
                               "], got " + (lw->is_bf16() ? std::string("bf16") : "[" + std::to_string(lw->weight.rows()) + ", " + std::to_string(lw->weight.cols()) + "]"));
      const auto v = m_store.value(slot(l, w));
      const Eigen::Map<const row_vector<Scalar>> s(v.data(), v.size());
      if (is_feedforward(w)) {
        lw->weight.array().rowwise() *= s.array();
      } else {
        lw->weight.array().colwise() *= s.transpose().array();
        if (lw->bias.size() == out) lw->bias.array() *= s.transpose().array();
      }
    }
  return merged;
}

template <typename Scalar>
nlohmann::json ia3<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["target_modules"] = detail::targets_to_json(m_config.target_modules);
  j["feedforward_modules"] = detail::targets_to_json(m_config.feedforward_modules);
  j["layers_to_transform"] = m_config.layers_to_transform;
  j["fan_in_fan_out"] = false;
  j["init_ia3_weights"] = true;
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
ia3<Scalar> ia3<Scalar>::from_config(const nlohmann::json& j, const encoder_shape& shape) {
  const std::string where = "ia3::from_config";
  check_config_header(j, peft_type, shape, where);
  ia3_config c;
  c.target_modules = detail::targets_from_json(j, "target_modules", where);
  c.feedforward_modules = detail::targets_from_json(j, "feedforward_modules", where);
  c.layers_to_transform = config_field<std::vector<index>>(j, "layers_to_transform", where);
  return ia3(shape, c, 0);
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_IA3
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_IA3_HPP
