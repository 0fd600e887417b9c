// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_BITFIT_HPP
#define PEFT_POLICIES_BITFIT_HPP

/// @file bitfit.hpp
/// BitFit: only the bias terms train. Ben Zaken et al., "BitFit: Simple Parameter-efficient
/// Fine-tuning for Transformer-based Masked Language-models", ACL 2022.
///
/// The biases of the query, key, value, attention-output, intermediate and output linears of
/// every layer and the LayerNorm biases (β: the embeddings', each layer's attention and FFN
/// norms; USE-lite has no embedding norm) train; weights, γ and embeddings stay frozen. About
/// 0.09 % of BERT-base. (No encoder peft loads ends with a final LayerNorm; the encoder's hook
/// for one exists, this policy has no change for it.)
///
/// Departure, said here and in the README: the policy trains the *change* of each bias,
/// starting at zero, instead of a copy of the bias itself. The frozen weights stay shared and
/// the policy is built from the encoder's shape alone, like every other policy. The gradient is
/// the same, and so is every step of SGD or Adam; only weight decay differs (it pulls towards
/// the pretrained bias, not towards zero), and the saved tensors are the changes
/// (`<module>.bias_delta`, 1-D). `biases(weights)` gives the trained biases themselves.
///
/// Hooks: `on_linear` adds a linear's change to its output (its input gradient is untouched),
/// `on_norm_output` adds a LayerNorm's change to its output.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
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

/// Hyper-parameters of `bitfit` (default: the paper's, every bias).
struct bitfit_config {
  /// Linears whose bias trains.
  std::vector<linear_id> target_modules = {linear_id::query,    linear_id::key,    linear_id::value,
                                           linear_id::attn_out, linear_id::ffn_in, linear_id::ffn_out};
  /// The LayerNorm biases train too.
  bool layer_norms = true;
};

/// BitFit over a frozen encoder.
/// @tparam Scalar float or double
template <typename Scalar = float>
class bitfit {
  static_assert(is_supported_scalar_v<Scalar>, "peft::bitfit: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "BITFIT";

  /// Zero changes for every chosen bias of an encoder of shape @p shape (@p seed is unused).
  /// @throws peft::invalid_argument for no targets
  bitfit(const encoder_shape& shape, const bitfit_config& config, std::uint64_t /*seed*/ = 0)
      : m_shape(shape), m_config(config) {
    const std::string where = "bitfit::bitfit";
    detail::check_encoder_shape(shape, where);
    m_config.target_modules = detail::resolve_targets(config.target_modules, where);
    const std::string prefix = detail::hf_model_prefix(shape.model_type);
    const detail::hf_layer_names names = detail::hf_layer_names_of(shape.model_type);
    const bool pre_norm = shape.pre_norm;
    m_linear.assign(static_cast<std::size_t>(shape.num_layers * num_linear_ids), -1);
    m_norm.assign(static_cast<std::size_t>(shape.num_layers * 2), -1);
    if (config.layer_norms && shape.embedding_norm)
      m_embedding_norm = m_store.add(prefix + "embeddings.LayerNorm.bias_delta", shape.word_width(), 1,
                                     param_group::bias);
    // One change per bias, named by its module: ALBERT's layers of a group share their biases,
    // and so their changes (linear_targets.hpp).
    auto add = [&](const std::string& key, index n) {
      const index b = m_store.find(key);
      return b >= 0 ? b : m_store.add(key, n, 1, param_group::bias);
    };
    for (index l = 0; l < shape.num_layers; ++l) {
      for (auto w : m_config.target_modules)
        m_linear[lin(l, w)] = add(detail::linear_module_path(shape, l, w) + ".bias_delta",
                                  shape.linear_shape(l, static_cast<int>(w)).first);
      if (config.layer_norms) {
        const std::string p = prefix + detail::hf_layer_path(names, shape.stored_layer(l));
        // A pre-norm layer normalises its input before attention; a post-norm one the
        // attention's residual sum, as wide as the layer's output.
        const auto at = static_cast<std::size_t>(l);
        m_norm[nrm(l, norm_site::attention)] =
            add(p + names.ln1 + ".bias_delta", pre_norm ? shape.input_width[at] : shape.output_width[at]);
        m_norm[nrm(l, norm_site::ffn)] = add(p + names.ln2 + ".bias_delta", shape.output_width[at]);
      }
    }
  }

  const bitfit_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }

  // --- hooks ---------------------------------------------------------------------------

  void on_linear(index l, linear_id w, const mat& /*x*/, mat& y, const hook_context&, detail::empty_tape&) const {
    const index b = linear_block(l, w);
    if (b >= 0) add_rows(y, b, "linear");
  }
  void on_linear_backward(index l, linear_id w, const mat& dy, mat& /*dx*/, const detail::empty_tape&) {
    const index b = linear_block(l, w);
    if (b >= 0) accumulate(dy, b);
  }
  void on_norm_output(index l, norm_site n, mat& h, const hook_context&, detail::empty_tape&) const {
    const index b = norm_block(l, n);
    if (b >= 0) add_rows(h, b, "LayerNorm");
  }
  void on_norm_output_backward(index l, norm_site n, mat& dh, const detail::empty_tape&) {
    const index b = norm_block(l, n);
    if (b >= 0) accumulate(dh, b);
  }

  /// The trained biases themselves: the frozen ones of @p base plus the changes, by the names
  /// of the weights (`bert.encoder.layer.0.attention.self.query.bias`, ...). A LayerNorm the
  /// weights do not have is left out.
  /// @throws peft::invalid_argument when @p base has another layer count
  std::map<std::string, vector<Scalar>> biases(const encoder_weights<Scalar>& base) const {
    if (base.config.num_layers != m_shape.num_layers)
      throw invalid_argument("bitfit::biases: weights expected " + std::to_string(m_shape.num_layers) +
                             " layers, got " + std::to_string(base.config.num_layers));
    std::map<std::string, vector<Scalar>> out;
    auto put = [&](index b, const vector<Scalar>& frozen) {
      if (b < 0 || frozen.size() == 0) return;
      std::string name = m_store.block(b).name;
      name = name.substr(0, name.size() - 6);  // "_delta"
      const auto d = m_store.value(b);
      out[name] = frozen + Eigen::Map<const vector<Scalar>>(d.data(), d.size());
    };
    put(m_embedding_norm, base.embedding_norm.beta);
    for (index l = 0; l < m_shape.num_layers; ++l) {
      const auto& L = base.layer(l);
      const linear_weights<Scalar>* lw[] = {&L.query, &L.key, &L.value, &L.attn_out, &L.ffn_in, &L.ffn_out};
      for (int w = 0; w < num_linear_ids; ++w) put(linear_block(l, static_cast<linear_id>(w)), lw[w]->bias);
      put(norm_block(l, norm_site::attention), L.attn_norm.beta);
      put(norm_block(l, norm_site::ffn), L.ffn_norm.beta);
    }
    return out;
  }

  // --- checkpoints ---------------------------------------------------------------------

  nlohmann::json config_json() const {
    nlohmann::json j;
    j["peft_type"] = peft_type;
    j["target_modules"] = detail::targets_to_json(m_config.target_modules);
    j["layer_norms"] = m_config.layer_norms;
    j["trains"] = "the change of each chosen bias (bias_delta), zero at the start";
    write_shape_fields(j, m_shape);
    return j;
  }

  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static bitfit from_config(const nlohmann::json& j, const encoder_shape& shape) {
    const std::string where = "bitfit::from_config";
    check_config_header(j, peft_type, shape, where);
    bitfit_config c;
    c.target_modules = detail::targets_from_json(j, "target_modules", where);
    c.layer_norms = config_field<bool>(j, "layer_norms", where);
    return bitfit(shape, c, 0);
  }

private:
  std::size_t lin(index l, linear_id w) const noexcept {
    return static_cast<std::size_t>(l * num_linear_ids + static_cast<int>(w));
  }
  std::size_t nrm(index l, norm_site n) const noexcept {
    return static_cast<std::size_t>(l * 2 + (n == norm_site::ffn ? 1 : 0));
  }
  index linear_block(index l, linear_id w) const noexcept {
    return l < 0 || l >= m_shape.num_layers ? -1 : m_linear[lin(l, w)];
  }
  index norm_block(index l, norm_site n) const noexcept {
    if (n == norm_site::embeddings) return m_embedding_norm;
    if (n == norm_site::final) return -1;
    return l < 0 || l >= m_shape.num_layers ? -1 : m_norm[nrm(l, n)];
  }
  void add_rows(mat& y, index b, const char* what) const {
    const auto d = m_store.value(b);
    if (y.cols() != d.size())
      throw invalid_argument(std::string("bitfit: ") + what + " bias change of " + std::to_string(d.size()) +
                             " values for an output of width " + std::to_string(y.cols()));
    y.rowwise() += Eigen::Map<const row_vector<Scalar>>(d.data(), d.size());
  }
  void accumulate(const mat& dy, index b) {
    auto g = m_store.grad(b);
    Eigen::Map<row_vector<Scalar>>(g.data(), g.size()) += dy.colwise().sum();
  }

  encoder_shape m_shape;
  bitfit_config m_config;
  std::vector<index> m_linear;  ///< per (layer, linear): its block, or -1
  std::vector<index> m_norm;    ///< per (layer, attention|ffn norm): its block, or -1
  index m_embedding_norm = -1;
  parameter_store<Scalar> m_store;
};

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_BITFIT
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_BITFIT_HPP
