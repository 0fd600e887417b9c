// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_PREFIX_TUNING_HPP
#define PEFT_POLICIES_PREFIX_TUNING_HPP

/// @file prefix_tuning.hpp
/// Prefix-tuning: trainable key/value prefixes prepended in every layer's self-attention,
/// after the K/V projections. Li & Liang, "Prefix-Tuning: Optimizing Continuous Prompts for
/// Generation", ACL 2021 (XiangLi1999/PrefixTuning); re-parameterisation, layout and saved
/// form as huggingface/peft `PrefixEncoder` / `prompt_embeddings`.

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

/// Hyper-parameters of `prefix_tuning`.
struct prefix_tuning_config {
  /// Prefix length n (XiangLi1999/PrefixTuning `--preseqlen`, 10 for table-to-text). 0 is
  /// allowed and leaves the encoder unchanged.
  index num_virtual_tokens = 10;
  /// Train through the MLP re-parameterisation (the paper's method; peft's default is off).
  bool prefix_projection = true;
  /// Width of the MLP's hidden layer (`mid_dim` 512 in the original code).
  index encoder_hidden_size = 512;
  /// The text's positions start after the prefix (n..n+T-1), as in Hugging Face PEFT, whose
  /// past_key_values make BERT's embeddings offset their position ids by the prefix length
  /// (and as in the original code's GPT-2). Off by default: peft's prefix folders from before
  /// it (and its reference in tests/reference/torch_methods.py) keep positions 0..T-1. A folder
  /// in Hugging Face's layout is read with it on (io/hf_peft.hpp).
  bool position_offset = false;
};

/// Prefix-tuning over a frozen encoder.
///
/// Layer `l` gets `n` keys and `n` values of width `d_att(l)` (the layer's Q/K/V width: 256
/// for USE-lite's layer 0, the hidden size elsewhere), in the post-projection space, shared
/// by every sequence of a batch. The encoder prepends them to K and V and keeps the prefix
/// columns visible whatever the padding mask says; positions shift by n only with
/// `position_offset`.
///
/// **Layout** of the full prefix `P` (`[n x C]`, `C = 2 * sum_l d_att(l)`): the columns of
/// layer `l` start at `off(l) = 2 * sum_{k<l} d_att(k)`; `d_att(l)` key columns, then
/// `d_att(l)` value columns, each split into heads as the attention splits Q/K/V (head `h`
/// owns columns `[h*d_h, (h+1)*d_h)`). For equal widths this is exactly peft's
/// `prompt_embeddings` `[n, 2*L*H]`, which `get_prompt` views as `[n, 2L, N_h, d_h]` with
/// index `2l` the keys and `2l+1` the values of layer `l`.
///
/// **Modes.** With `prefix_projection` (default), the trainable blocks are peft's
/// `PrefixEncoder`: `P = Linear(mid -> C)(tanh(Linear(H -> mid)(E)))` with `E` an `[n x H]`
/// embedding (`H` = hidden size; N(0, 1) init as `nn.Embedding`, linears with PyTorch's
/// default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init). `eject()` computes `P` once and
/// replaces those blocks by the single block `prompt_embeddings` = `P`, which is then the
/// trainable parameter. Without `prefix_projection` the policy starts in that form, with
/// `P` ~ N(0, 1) (peft's `Embedding(n, 2*L*H)`).
///
/// **Saved form**: only `prompt_embeddings` (`export_tensors()`), before or after `eject()`,
/// as peft saves it; loading yields an ejected policy.
///
/// Departures: no prefix dropout (`prefix_dropout` is 0 in the original code and absent in
/// peft; a per-sequence dropout mask cannot be expressed by prefixes shared across the batch);
/// the original code's "deep" MLP variant is not provided.
/// @tparam Scalar float or double
template <typename Scalar = float>
class prefix_tuning {
  static_assert(is_supported_scalar_v<Scalar>, "peft::prefix_tuning: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "PREFIX_TUNING";

  /// Block names (peft's in-memory `prompt_encoder.default.*` with the adapter name dropped).
  static constexpr const char* embedding_block = "prompt_encoder.embedding.weight";
  static constexpr const char* transform0_weight = "prompt_encoder.transform.0.weight";
  static constexpr const char* transform0_bias = "prompt_encoder.transform.0.bias";
  static constexpr const char* transform2_weight = "prompt_encoder.transform.2.weight";
  static constexpr const char* transform2_bias = "prompt_encoder.transform.2.bias";
  /// The bare prefix: block name after `eject()` and the saved key.
  static constexpr const char* prefix_block = "prompt_embeddings";

  /// @throws peft::invalid_argument naming the bad field (num_virtual_tokens < 0,
  ///   encoder_hidden_size <= 0 with prefix_projection)
  prefix_tuning(const encoder_shape& shape, const prefix_tuning_config& config, std::uint64_t seed = 0);

  const prefix_tuning_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }
  /// True once the prefix itself is the trainable parameter (after `eject()`, after loading,
  /// or without `prefix_projection`).
  bool ejected() const noexcept { return m_ejected; }
  /// Columns of the full prefix, `2 * sum_l d_att(l)`.
  index prefix_columns() const noexcept { return m_columns; }
  /// First column of layer @p l's keys in the full prefix (its values follow `d_att(l)` later).
  index layer_offset(index l) const { return m_offset.at(static_cast<std::size_t>(l)); }

  /// The full prefix `P` (`[n x C]`), as the forward pass uses it.
  mat prefix() const;

  /// Replaces the MLP by the prefix it computes, which becomes the only trainable block
  /// (`prompt_embeddings`). The outputs do not change (bit for bit). No-op when already ejected.
  void eject();

  // --- hooks ---------------------------------------------------------------------------

  index kv_prefix_length(index /*l*/) const noexcept { return m_config.num_virtual_tokens; }

  /// Where the text's positions start: n with `position_offset`, else 0.
  index position_offset() const noexcept { return m_config.position_offset ? m_config.num_virtual_tokens : 0; }

  /// The prefix keys and values of layer @p l, each `[n x d_att(l)]`.
  void kv_prefix(index l, mat& pk, mat& pv, const hook_context& /*ctx*/, detail::empty_tape& /*t*/) const;

  /// Accumulates the gradients of the trainable blocks from those of layer @p l's prefix.
  void kv_prefix_backward(index l, const mat& dpk, const mat& dpv, const detail::empty_tape& /*t*/);

  // --- checkpoints ---------------------------------------------------------------------

  /// peft's `PrefixTuningConfig` fields that apply, plus the encoder shape.
  /// `inference_mode` is true once the policy is ejected.
  nlohmann::json config_json() const;

  /// Rebuilds a policy from `config_json()` output (ejected when the config says
  /// `inference_mode`).
  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static prefix_tuning from_config(const nlohmann::json& j, const encoder_shape& shape);

  /// The saved form: `{"prompt_embeddings": P}` as float, `[n, C]`.
  std::map<std::string, tensor> export_tensors() const;

  /// Sets the prefix from a saved form; the policy is ejected afterwards.
  /// @throws peft::invalid_argument for a missing, extra or mis-shaped tensor or a
  ///   non-finite value
  void import_tensors(const std::map<std::string, tensor>& tensors);

private:
  static std::size_t su(index i) noexcept { return static_cast<std::size_t>(i); }
  index width(index l) const { return m_shape.attention_width.at(su(l)); }

  /// tanh(E W0^T + b0), `[n x mid]` (MLP mode only).
  mat hidden() const;

  /// Layer l's keys and values `[n x 2 d_att(l)]` from the hidden activations (MLP mode).
  /// `prefix()` (hence `eject()`) and `kv_prefix` both call this, so they agree bit for bit.
  mat layer_prefix(const mat& hid, index l) const;

  template <typename M>
  static void fill_normal(M&& m, rng& gen) {
    for (index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<Scalar>(gen.normal());
  }
  /// PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
  template <typename M>
  static void fill_uniform(M&& m, index fan_in, rng& gen) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    for (index k = 0; k < m.size(); ++k)
      m.data()[k] = static_cast<Scalar>((2.0 * gen.uniform() - 1.0) * bound);
  }

  encoder_shape m_shape;
  prefix_tuning_config m_config;
  std::vector<index> m_offset;  ///< per layer: first column of its keys in P
  index m_columns = 0;
  bool m_ejected = false;
  parameter_store<Scalar> m_store;
};

template <typename Scalar>
prefix_tuning<Scalar>::prefix_tuning(const encoder_shape& shape, const prefix_tuning_config& config,
                                     std::uint64_t seed)
    : m_shape(shape), m_config(config) {
  const std::string where = "prefix_tuning::prefix_tuning";
  detail::check_encoder_shape(shape, where);
  if (config.num_virtual_tokens < 0)
    throw invalid_argument(where + ": num_virtual_tokens expected >= 0, got " +
                           std::to_string(config.num_virtual_tokens));
  if (config.prefix_projection && config.encoder_hidden_size <= 0)
    throw invalid_argument(where + ": encoder_hidden_size expected > 0, got " +
                           std::to_string(config.encoder_hidden_size));
  index off = 0;
  for (index l = 0; l < shape.num_layers; ++l) {
    m_offset.push_back(off);
    off += 2 * shape.attention_width[static_cast<std::size_t>(l)];
  }
  m_columns = off;
  m_ejected = !config.prefix_projection;
  const index n = config.num_virtual_tokens;
  if (n == 0) return;  // nothing to train
  rng gen(seed);
  if (m_ejected) {
    const index p = m_store.add(prefix_block, n, m_columns, param_group::weight);
    fill_normal(m_store.value(p), gen);
  } else {
    const index H = shape.hidden_size, mid = config.encoder_hidden_size;
    const index e = m_store.add(embedding_block, n, H, param_group::weight);
    const index w0 = m_store.add(transform0_weight, mid, H, param_group::weight);
    const index b0 = m_store.add(transform0_bias, mid, 1, param_group::bias);
    const index w2 = m_store.add(transform2_weight, m_columns, mid, param_group::weight);
    const index b2 = m_store.add(transform2_bias, m_columns, 1, param_group::bias);
    fill_normal(m_store.value(e), gen);
    fill_uniform(m_store.value(w0), H, gen);
    fill_uniform(m_store.value(b0), H, gen);
    fill_uniform(m_store.value(w2), mid, gen);
    fill_uniform(m_store.value(b2), mid, gen);
  }
}

template <typename Scalar>
matrix<Scalar> prefix_tuning<Scalar>::prefix() const {
  mat P(m_config.num_virtual_tokens, m_columns);
  if (m_config.num_virtual_tokens == 0) return P;
  if (m_ejected) return m_store.value(0);
  const mat hid = hidden();
  for (index l = 0; l < m_shape.num_layers; ++l)
    P.middleCols(m_offset[su(l)], 2 * width(l)) = layer_prefix(hid, l);
  return P;
}

template <typename Scalar>
void prefix_tuning<Scalar>::eject() {
  if (m_ejected) return;
  if (m_config.num_virtual_tokens == 0) {
    m_ejected = true;
    return;
  }
  const mat P = prefix();  // from the MLP, before switching modes
  m_ejected = true;
  parameter_store<Scalar> s;
  const index p = s.add(prefix_block, m_config.num_virtual_tokens, m_columns, param_group::weight);
  s.value(p) = P;
  m_store = std::move(s);
}

template <typename Scalar>
void prefix_tuning<Scalar>::kv_prefix(index l, mat& pk, mat& pv, const hook_context& /*ctx*/,
                                      detail::empty_tape& /*t*/) const {
  const index d = width(l);
  if (m_ejected) {
    const auto P = m_store.value(0);
    pk = P.middleCols(m_offset[su(l)], d);
    pv = P.middleCols(m_offset[su(l)] + d, d);
    return;
  }
  const mat Pl = layer_prefix(hidden(), l);
  pk = Pl.leftCols(d);
  pv = Pl.rightCols(d);
}

template <typename Scalar>
void prefix_tuning<Scalar>::kv_prefix_backward(index l, const mat& dpk, const mat& dpv,
                                               const detail::empty_tape& /*t*/) {
  const index d = width(l), n = m_config.num_virtual_tokens;
  if (dpk.rows() != n || dpk.cols() != d || dpv.rows() != n || dpv.cols() != d)
    throw invalid_argument("prefix_tuning::kv_prefix_backward: prefix gradient shape expected [" +
                           std::to_string(n) + ", " + std::to_string(d) + "], got [" +
                           std::to_string(dpk.rows()) + ", " + std::to_string(dpk.cols()) + "]");
  const index off = m_offset[su(l)];
  if (m_ejected) {
    auto G = m_store.grad(0);
    G.middleCols(off, d) += dpk;
    G.middleCols(off + d, d) += dpv;
    return;
  }
  // P_l = tanh(E W0^T + b0) W2_l^T + b2_l, with W2_l the rows of layer l.
  mat dP(n, 2 * d);
  dP.leftCols(d) = dpk;
  dP.rightCols(d) = dpv;
  const auto E = m_store.value(0);
  const auto W0 = m_store.value(1);
  const auto W2 = m_store.value(3);
  const mat hid = hidden();
  m_store.grad(3).middleRows(off, 2 * d).noalias() += dP.transpose() * hid;
  m_store.grad(4).middleRows(off, 2 * d) += dP.colwise().sum().transpose();
  mat da = dP * W2.middleRows(off, 2 * d);
  da.array() *= Scalar(1) - hid.array().square();
  m_store.grad(1).noalias() += da.transpose() * E;
  m_store.grad(2) += da.colwise().sum().transpose();
  m_store.grad(0).noalias() += da * W0;
}

template <typename Scalar>
nlohmann::json prefix_tuning<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["num_virtual_tokens"] = m_config.num_virtual_tokens;
  j["prefix_projection"] = m_config.prefix_projection;
  j["encoder_hidden_size"] = m_config.encoder_hidden_size;
  j["token_dim"] = m_shape.hidden_size;
  j["num_attention_heads"] = m_shape.num_heads;
  j["num_transformer_submodules"] = 1;
  j["inference_mode"] = m_ejected;
  j["prefix_layout"] = "per layer: keys then values, d_att(l) columns each";
  j["position_offset"] = m_config.position_offset;
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
prefix_tuning<Scalar> prefix_tuning<Scalar>::from_config(const nlohmann::json& j,
                                                         const encoder_shape& shape) {
  const std::string where = "prefix_tuning::from_config";
  check_config_header(j, peft_type, shape, where);
  prefix_tuning_config c;
  c.num_virtual_tokens = config_field<index>(j, "num_virtual_tokens", where);
  c.prefix_projection = config_field<bool>(j, "prefix_projection", where);
  c.encoder_hidden_size = config_field<index>(j, "encoder_hidden_size", where);
  c.position_offset = config_field_or<bool>(j, "position_offset", false, where);  // absent before it existed
  prefix_tuning p(shape, c, 0);
  if (j.contains("inference_mode") && j["inference_mode"].is_boolean() && j["inference_mode"].get<bool>())
    p.eject();
  return p;
}

template <typename Scalar>
std::map<std::string, tensor> prefix_tuning<Scalar>::export_tensors() const {
  const mat P = prefix();
  tensor t;
  t.shape =
      std::vector<std::int64_t>{static_cast<std::int64_t>(P.rows()), static_cast<std::int64_t>(P.cols())};
  t.data.resize(static_cast<std::size_t>(P.size()));
  for (index k = 0; k < P.size(); ++k) t.data[static_cast<std::size_t>(k)] = static_cast<float>(P.data()[k]);
  return {{prefix_block, std::move(t)}};
}

template <typename Scalar>
void prefix_tuning<Scalar>::import_tensors(const std::map<std::string, tensor>& tensors) {
  const std::string where = "prefix_tuning::import_tensors";
  const index n = m_config.num_virtual_tokens;
  auto it = tensors.find(prefix_block);
  if (it == tensors.end()) throw invalid_argument(where + ": missing tensor 'prompt_embeddings'");
  if (tensors.size() != 1)
    for (const auto& kv : tensors)
      if (kv.first != prefix_block) throw invalid_argument(where + ": unexpected tensor '" + kv.first + "'");
  const tensor& t = it->second;
  const std::vector<std::int64_t> want = {static_cast<std::int64_t>(n), static_cast<std::int64_t>(m_columns)};
  if (t.shape != want || static_cast<std::int64_t>(t.data.size()) != t.numel())
    throw invalid_argument(where + ": tensor 'prompt_embeddings' shape expected [" + std::to_string(n) +
                           ", " + std::to_string(m_columns) + "], got " + t.shape_string());
  for (std::size_t k = 0; k < t.data.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw invalid_argument(where + ": tensor 'prompt_embeddings' value expected finite, got " +
                             std::to_string(t.data[k]) + " at element " + std::to_string(k));
  m_ejected = true;
  m_store = parameter_store<Scalar>();
  if (n == 0) return;
  const index p = m_store.add(prefix_block, n, m_columns, param_group::weight);
  auto v = m_store.value(p);
  for (index k = 0; k < v.size(); ++k) v.data()[k] = static_cast<Scalar>(t.data[static_cast<std::size_t>(k)]);
}

template <typename Scalar>
matrix<Scalar> prefix_tuning<Scalar>::hidden() const {
  const auto E = m_store.value(0);
  const auto W0 = m_store.value(1);
  const Eigen::Map<const row_vector<Scalar>> b0(m_store.value(2).data(), m_config.encoder_hidden_size);
  mat a = E * W0.transpose();
  a.rowwise() += b0;
  return a.array().tanh().matrix();
}

template <typename Scalar>
matrix<Scalar> prefix_tuning<Scalar>::layer_prefix(const mat& hid, index l) const {
  const index off = m_offset[su(l)], d2 = 2 * width(l);
  const auto W2 = m_store.value(3);
  const Eigen::Map<const row_vector<Scalar>> b2(m_store.value(4).data() + off, d2);
  mat Pl = hid * W2.middleRows(off, d2).transpose();
  Pl.rowwise() += b2;
  return Pl;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_PREFIX_TUNING
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_PREFIX_TUNING_HPP
