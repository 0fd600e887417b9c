// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_MASK_TUNING_HPP
#define PEFT_POLICIES_MASK_TUNING_HPP

/// @file mask_tuning.hpp
/// Mask-tuning: learn a binary mask over chosen frozen weight matrices instead of their
/// values. Zhao et al., "Masking as an Efficient Alternative to Finetuning for Pretrained
/// Language Models", EMNLP 2020 (ptlmasking/maskbert, `code/masking/maskers.py`,
/// scheme `MaskedLinear1`).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "linear_targets.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Hyper-parameters of `mask_tuning` (defaults: maskbert `parameters.py` / `main.py`).
struct mask_tuning_config {
  double threshold = 0.01;      ///< tau: a weight is kept when its score is > tau
  double init_scale = 0.02;     ///< s: scores start U(-s, (s + tau) / p0 - s)
  double init_sparsity = 0.05;  ///< p0: expected fraction of zeros at init (`final_sparsity`)
  /// Masked linears of each chosen layer (maskbert: K, Q, V, AO, I, O).
  std::vector<linear_id> target_modules = {linear_id::query,    linear_id::key,    linear_id::value,
                                           linear_id::attn_out, linear_id::ffn_in, linear_id::ffn_out};
  /// Masked layers; empty = every layer from 2 up (maskbert's "2,...,11" for BERT-base:
  /// the bottom two layers stay unmasked), or every layer when the encoder has at most 2
  /// (USE-lite), where that rule would mask nothing.
  std::vector<index> layers = {};
};

/// Mask-tuning over a frozen encoder.
///
/// Every masked linear `W` (`[out x in]`) gets real-valued scores `S` of the same shape
/// (block `<module path>.weight_mask`, linear_targets.hpp; the reference's parameter
/// name). The forward pass uses `W_eff = W .* 1[S > tau]` (through the `on_weight` hook); the
/// backward pass is the reference's straight-through estimator, which passes the gradient
/// of the binary mask unchanged to the scores: `dS = dW_eff .* W`. Biases are not masked
/// (`mask_biases=False`).
///
/// Saved form (`export_tensors()`): the binary mask only, bit-packed, one tensor per masked
/// matrix under the same key, `[ceil(out*in / 8)]` bytes: row-major over the matrix, most
/// significant bit first within a byte (numpy `packbits` order), trailing bits zero. The
/// byte values travel as `tensor` floats 0..255; `export_dtypes()` marks them "U8" so a
/// writer can store one byte each. Loading sets kept scores to `tau + s` and dropped ones
/// to `tau - s`, which reproduces the mask exactly (the scores themselves are not saved).
///
/// Departures: the reference also masks the pooler and the (untrained) classifier; those
/// belong to the task head here, so only encoder linears are masked. The optional gradual
/// sparsity scheduler and the other schemes (MaskedLinear2/3, controlled init) are not
/// provided (the default run skips the scheduler: `lambdas_lr=0`).
/// @tparam Scalar float or double
template <typename Scalar = float>
class mask_tuning {
  static_assert(is_supported_scalar_v<Scalar>, "peft::mask_tuning: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "MASK_TUNING";

  /// @throws peft::invalid_argument naming the bad field (non-finite threshold, init_scale
  ///   <= 0, init_sparsity outside (0, 1], init_scale + threshold <= 0, no targets, a layer
  ///   out of range)
  mask_tuning(const encoder_shape& shape, const mask_tuning_config& config, std::uint64_t seed = 0);

  const mask_tuning_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }
  /// Lowest masked layer: the backward pass stops there.
  index lowest_layer(index /*num_layers*/) const noexcept { return m_config.layers.front(); }

  /// The binary mask (0/1) of linear @p w of layer @p l.
  /// @throws peft::invalid_argument when that linear is not masked
  mat mask(index l, linear_id w) const;

  /// Fraction of zeros over every masked weight.
  double sparsity() const noexcept;

  /// Number of masked weights (= number of bits in the saved form).
  index num_masked_weights() const noexcept { return m_store.size(); }

  // --- hooks ---------------------------------------------------------------------------

  bool transforms_weight(index l, linear_id w) const noexcept { return slot(l, w) >= 0; }

  /// W_eff = W .* 1[S > tau].
  void on_weight(index l, linear_id w, const mat& W, mat& W_eff, detail::empty_tape& /*t*/) const {
    const auto S = m_store.value(slot(l, w));
    W_eff = (S.array() > m_tau).select(W.array(), Scalar(0)).matrix();
  }

  /// Straight-through: dS += dW_eff .* W.
  void on_weight_backward(index l, linear_id w, const mat& W, const mat& dW_eff,
                          const detail::empty_tape& /*t*/) {
    auto G = m_store.grad(slot(l, w));
    G.array() += dW_eff.array() * W.array();
  }

  // --- checkpoints ---------------------------------------------------------------------

  nlohmann::json config_json() const;

  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static mask_tuning from_config(const nlohmann::json& j, const encoder_shape& shape);

  /// The bit-packed masks, one `[ceil(out*in/8)]` tensor of byte values per masked matrix.
  std::map<std::string, tensor> export_tensors() const;

  /// Storage type of each exported tensor: "U8" (one byte per element) for all of them.
  std::map<std::string, std::string> export_dtypes() const {
    std::map<std::string, std::string> out;
    for (const auto& b : m_store.blocks()) out.emplace(b.name, "U8");
    return out;
  }

  /// Sets the scores from bit-packed masks (kept: tau + s, dropped: tau - s).
  /// @throws peft::invalid_argument naming the tensor: missing, unexpected, wrong size, a
  ///   value that is not a byte, or a non-zero padding bit
  void import_tensors(const std::map<std::string, tensor>& tensors);

private:
  std::size_t slot_index(index l, linear_id w) const noexcept {
    return static_cast<std::size_t>(l * num_linear_ids + static_cast<int>(w));
  }
  index slot(index l, linear_id w) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    return m_slot[slot_index(l, w)];
  }

  encoder_shape m_shape;
  mask_tuning_config m_config;
  Scalar m_tau = 0, m_kept = 0, m_dropped = 0;
  std::vector<index> m_slot;  ///< per (layer, linear): block of its scores, or -1
  parameter_store<Scalar> m_store;
};

template <typename Scalar>
mask_tuning<Scalar>::mask_tuning(const encoder_shape& shape, const mask_tuning_config& config,
                                 std::uint64_t seed)
    : m_shape(shape), m_config(config) {
  const std::string where = "mask_tuning::mask_tuning";
  detail::check_encoder_shape(shape, where);
  if (!std::isfinite(config.threshold))
    throw invalid_argument(where + ": threshold expected finite, got " + std::to_string(config.threshold));
  if (!(config.init_scale > 0.0) || !std::isfinite(config.init_scale))
    throw invalid_argument(where + ": init_scale expected > 0, got " + std::to_string(config.init_scale));
  if (!(config.init_sparsity > 0.0 && config.init_sparsity <= 1.0))
    throw invalid_argument(where + ": init_sparsity expected in (0, 1], got " +
                           std::to_string(config.init_sparsity));
  if (!(config.init_scale + config.threshold > 0.0))
    throw invalid_argument(
        where + ": init_scale + threshold expected > 0 (so that init_sparsity is reachable), got " +
        std::to_string(config.init_scale + config.threshold));
  m_config.target_modules = detail::resolve_targets(config.target_modules, where);
  std::vector<index> fallback;
  for (index l = shape.num_layers > 2 ? 2 : 0; l < shape.num_layers; ++l) fallback.push_back(l);
  m_config.layers = detail::resolve_layers(config.layers, fallback, shape.num_layers, where, "layers");
  m_tau = static_cast<Scalar>(config.threshold);
  m_kept = static_cast<Scalar>(config.threshold + config.init_scale);
  m_dropped = static_cast<Scalar>(config.threshold - config.init_scale);
  if (!(m_kept > m_tau) || m_dropped > m_tau)
    throw invalid_argument(where +
                           ": init_scale expected to separate threshold +- init_scale from threshold in " +
                           "this precision, got init_scale " + std::to_string(config.init_scale) +
                           " at threshold " + std::to_string(config.threshold));

  const double lo = -config.init_scale;
  const double hi = (config.init_scale + config.threshold) / config.init_sparsity - config.init_scale;
  m_slot.assign(static_cast<std::size_t>(shape.num_layers * num_linear_ids), -1);
  rng gen(seed);
  for (index l : m_config.layers)
    for (auto w : m_config.target_modules) {
      const auto [out, in] = shape.linear_shape(l, static_cast<int>(w));
      const std::string key = detail::linear_module_path(shape, l, w) + ".weight_mask";
      // One mask per module: ALBERT's layers of a group share theirs (linear_targets.hpp).
      if ((m_slot[slot_index(l, w)] = m_store.find(key)) >= 0) continue;
      const index b = m_store.add(key, out, in, param_group::weight);
      m_slot[slot_index(l, w)] = b;
      auto S = m_store.value(b);
      for (index k = 0; k < S.size(); ++k) S.data()[k] = static_cast<Scalar>(lo + (hi - lo) * gen.uniform());
    }
}

template <typename Scalar>
matrix<Scalar> mask_tuning<Scalar>::mask(index l, linear_id w) const {
  const index b = slot(l, w);
  if (b < 0)
    throw invalid_argument("mask_tuning::mask: layer " + std::to_string(l) + " " + to_string(w) +
                           " is not masked");
  return (m_store.value(b).array() > m_tau).template cast<Scalar>().matrix();
}

template <typename Scalar>
double mask_tuning<Scalar>::sparsity() const noexcept {
  if (m_store.size() == 0) return 0.0;
  index zeros = 0;
  const auto& v = m_store.values();
  for (index k = 0; k < v.size(); ++k) zeros += v[k] > m_tau ? 0 : 1;
  return static_cast<double>(zeros) / static_cast<double>(v.size());
}

template <typename Scalar>
nlohmann::json mask_tuning<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["threshold"] = m_config.threshold;
  j["init_scale"] = m_config.init_scale;
  j["init_sparsity"] = m_config.init_sparsity;
  j["target_modules"] = detail::targets_to_json(m_config.target_modules);
  j["layers"] = m_config.layers;
  j["mask_biases"] = false;
  j["mask_format"] = "packbits: row-major, most significant bit first, uint8";
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
mask_tuning<Scalar> mask_tuning<Scalar>::from_config(const nlohmann::json& j, const encoder_shape& shape) {
  const std::string where = "mask_tuning::from_config";
  check_config_header(j, peft_type, shape, where);
  mask_tuning_config c;
  c.threshold = config_field<double>(j, "threshold", where);
  c.init_scale = config_field<double>(j, "init_scale", where);
  c.init_sparsity = config_field<double>(j, "init_sparsity", where);
  c.target_modules = detail::targets_from_json(j, "target_modules", where);
  c.layers = config_field<std::vector<index>>(j, "layers", where);
  return mask_tuning(shape, c, 0);
}

template <typename Scalar>
std::map<std::string, tensor> mask_tuning<Scalar>::export_tensors() const {
  std::map<std::string, tensor> out;
  for (index b = 0; b < m_store.num_blocks(); ++b) {
    const auto S = m_store.value(b);
    const auto n = static_cast<std::size_t>(S.size());
    tensor t;
    t.shape = std::vector<std::int64_t>{static_cast<std::int64_t>((n + 7) / 8)};
    t.data.assign((n + 7) / 8, 0.0f);
    std::vector<unsigned> bytes((n + 7) / 8, 0u);
    for (std::size_t k = 0; k < n; ++k)
      if (S.data()[k] > m_tau) bytes[k / 8] |= 0x80u >> (k % 8);
    for (std::size_t k = 0; k < bytes.size(); ++k) t.data[k] = static_cast<float>(bytes[k]);
    out.emplace(m_store.block(b).name, std::move(t));
  }
  return out;
}

template <typename Scalar>
void mask_tuning<Scalar>::import_tensors(const std::map<std::string, tensor>& tensors) {
  const std::string where = "mask_tuning::import_tensors";
  for (const auto& kv : tensors)
    if (m_store.find(kv.first) < 0) throw invalid_argument(where + ": unexpected tensor '" + kv.first + "'");
  for (index b = 0; b < m_store.num_blocks(); ++b) {
    const auto& name = m_store.block(b).name;
    auto it = tensors.find(name);
    if (it == tensors.end()) throw invalid_argument(where + ": missing tensor '" + name + "'");
    const tensor& t = it->second;
    auto S = m_store.value(b);
    const auto n = static_cast<std::size_t>(S.size());
    const auto nbytes = static_cast<std::int64_t>((n + 7) / 8);
    if (t.shape != std::vector<std::int64_t>{nbytes} || static_cast<std::int64_t>(t.data.size()) != nbytes)
      throw invalid_argument(where + ": tensor '" + name + "' shape expected [" + std::to_string(nbytes) +
                             "], got " + t.shape_string());
    for (std::size_t k = 0; k < t.data.size(); ++k) {
      const float v = t.data[k];
      if (!(v >= 0.0f && v <= 255.0f && std::floor(v) == v))
        throw invalid_argument(where + ": tensor '" + name + "' element " + std::to_string(k) +
                               " expected a byte value 0..255, got " + std::to_string(v));
    }
    const auto byte = [&](std::size_t k) { return static_cast<unsigned>(t.data[k]); };
    if (n % 8 != 0 && (byte(n / 8) & (0xffu >> (n % 8))) != 0)
      throw invalid_argument(where + ": tensor '" + name +
                             "' padding bits of the last byte expected 0, got " +
                             std::to_string(byte(n / 8)));
    for (std::size_t k = 0; k < n; ++k) S.data()[k] = (byte(k / 8) & (0x80u >> (k % 8))) ? m_kept : m_dropped;
  }
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_MASK_TUNING
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_MASK_TUNING_HPP
