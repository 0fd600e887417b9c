// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_LINEAR_TARGETS_HPP
#define PEFT_POLICIES_LINEAR_TARGETS_HPP

/// @file linear_targets.hpp
/// What the policies that act on frozen linears (LoRA, mask-tuning) share: the names of the
/// linears, their module paths in Hugging Face checkpoints and the choice of layers.
///
/// Module paths are the Hugging Face model's own (core/hf_names.hpp): BERT's
/// `bert.encoder.layer.<l>.attention.self.query`, DistilBERT's
/// `distilbert.transformer.layer.<l>.attention.q_lin`, MPNet's `...attention.attn.q`, and
/// ALBERT's one module per layer group, `albert.encoder.albert_layer_groups.<g>.albert_layers.0.
/// attention.query`, which every layer of the group runs. A policy names its parameters by
/// module path, so on ALBERT the layers of a group share them, as Hugging Face PEFT's adapter on
/// the shared module is shared. USE-lite has no Hugging Face port; it uses BERT's sub-paths
/// under `use_lite.encoder.layer.<l>.`. Config fields and checks come from policy_config.hpp.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/hf_names.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Parses a linear's name ("query", "key", "value", "attn_out", "ffn_in", "ffn_out").
/// @throws peft::invalid_argument naming @p where and the bad name
inline linear_id parse_linear_id(const std::string& s, const std::string& where) {
  for (int i = 0; i < num_linear_ids; ++i)
    if (s == to_string(static_cast<linear_id>(i))) return static_cast<linear_id>(i);
  throw invalid_argument(
      where + ": target module expected one of query, key, value, attn_out, ffn_in, ffn_out, got '" + s +
      "'");
}

namespace detail {

/// The name of linear @p w inside a layer of the family of @p n ("attention.self.query").
inline const char* linear_sub_path(const hf_layer_names& n, linear_id w) {
  switch (w) {
    case linear_id::query: return n.q;
    case linear_id::key: return n.k;
    case linear_id::value: return n.v;
    case linear_id::attn_out: return n.o;
    case linear_id::ffn_in: return n.ffn_in;
    case linear_id::ffn_out: break;
  }
  return n.ffn_out;
}

/// Hugging Face module path of linear @p w of layer @p l below the model (no trailing dot):
/// "encoder.layer.3.attention.self.query"; on ALBERT, the path of the layer's group.
inline std::string linear_layer_path(const encoder_shape& s, index l, linear_id w) {
  const hf_layer_names n = hf_layer_names_of(s.model_type);
  return hf_layer_path(n, s.stored_layer(l)) + linear_sub_path(n, w);
}

/// Hugging Face module path of linear @p w of layer @p l (no trailing dot):
/// "bert.encoder.layer.3.attention.self.query".
inline std::string linear_module_path(const encoder_shape& s, index l, linear_id w) {
  return hf_model_prefix(s.model_type) + linear_layer_path(s, l, w);
}

/// True when module path @p path is named by @p key as Hugging Face matches a plain target
/// name: the path equals the key or ends with "." + key.
inline bool path_matches(const std::string& path, const std::string& key) {
  if (key.empty() || key.size() > path.size()) return false;
  if (path.compare(path.size() - key.size(), key.size(), key) != 0) return false;
  return key.size() == path.size() || path[path.size() - key.size() - 1] == '.';
}

/// The value of the longest key of @p pattern that names @p path (path_matches), else
/// @p fallback: LoRA's rank_pattern / alpha_pattern.
template <typename T>
T pattern_value(const std::map<std::string, T>& pattern, const std::string& path, T fallback) {
  std::size_t best = 0;
  T out = fallback;
  for (const auto& kv : pattern)
    if (kv.first.size() > best && path_matches(path, kv.first)) {
      best = kv.first.size();
      out = kv.second;
    }
  return out;
}

/// Checks that @p shape is usable by a policy (layers, per-layer widths present).
inline void check_encoder_shape(const encoder_shape& s, const std::string& where) {
  if (s.num_layers <= 0)
    throw invalid_argument(where + ": encoder num_layers expected > 0, got " + std::to_string(s.num_layers));
  const auto L = static_cast<std::size_t>(s.num_layers);
  if (s.input_width.size() != L || s.attention_width.size() != L || s.output_width.size() != L)
    throw invalid_argument(where + ": encoder_shape per-layer widths expected " + std::to_string(L) +
                           " entries each, got " + std::to_string(s.input_width.size()) + "/" +
                           std::to_string(s.attention_width.size()) + "/" +
                           std::to_string(s.output_width.size()));
  if (s.intermediate_size <= 0 || s.hidden_size <= 0 || s.num_heads <= 0)
    throw invalid_argument(where + ": encoder_shape sizes expected > 0 (hidden " +
                           std::to_string(s.hidden_size) + ", intermediate " +
                           std::to_string(s.intermediate_size) + ", heads " + std::to_string(s.num_heads) +
                           ")");
}

/// Sorted, de-duplicated layer list; empty @p chosen means @p fallback. Throws for a layer
/// outside [0, num_layers).
inline std::vector<index> resolve_layers(const std::vector<index>& chosen, const std::vector<index>& fallback,
                                         index num_layers, const std::string& where, const char* field) {
  std::vector<index> out = chosen.empty() ? fallback : chosen;
  for (index l : out)
    if (l < 0 || l >= num_layers)
      throw invalid_argument(where + ": " + field + " entry expected in [0, " + std::to_string(num_layers) +
                             "), got " + std::to_string(l));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// "[0, 2, 5]".
inline std::string layers_to_string(const std::vector<index>& layers) {
  std::string s = "[";
  for (std::size_t i = 0; i < layers.size(); ++i) s += (i ? ", " : "") + std::to_string(layers[i]);
  return s + "]";
}

/// Sorted, de-duplicated linear list; throws when empty.
inline std::vector<linear_id> resolve_targets(std::vector<linear_id> t, const std::string& where) {
  if (t.empty()) throw invalid_argument(where + ": target_modules expected at least 1 linear, got 0");
  for (auto w : t)
    if (static_cast<int>(w) < 0 || static_cast<int>(w) >= num_linear_ids)
      throw invalid_argument(where + ": target_modules entry expected a linear_id, got " +
                             std::to_string(static_cast<int>(w)));
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

/// Target names as JSON strings.
inline nlohmann::json targets_to_json(const std::vector<linear_id>& t) {
  nlohmann::json a = nlohmann::json::array();
  for (auto w : t) a.push_back(to_string(w));
  return a;
}

inline std::vector<linear_id> targets_from_json(const nlohmann::json& j, const char* key,
                                                const std::string& where) {
  const auto names = config_field<std::vector<std::string>>(j, key, where);
  std::vector<linear_id> out;
  for (const auto& n : names) out.push_back(parse_linear_id(n, where));
  return out;
}

}  // namespace detail
}  // namespace peft

#endif  // PEFT_POLICIES_LINEAR_TARGETS_HPP
