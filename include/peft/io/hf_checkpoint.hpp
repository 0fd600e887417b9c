// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_HF_CHECKPOINT_HPP
#define PEFT_IO_HF_CHECKPOINT_HPP

/// @file hf_checkpoint.hpp
/// Hugging Face encoder checkpoints (`config.json` + `model.safetensors`, or shards listed in
/// `model.safetensors.index.json`) to `encoder_weights`, for the BERT family: BERT, RoBERTa,
/// XLM-RoBERTa, DistilBERT, ELECTRA (discriminators), ALBERT and MPNet, each with its own
/// `config.json` fields and key names. Keys follow the `transformers` names, with or without
/// the model prefix (`bert.`, `roberta.`, `distilbert.`, ...: …Model vs …ForMaskedLM
/// checkpoints); old `gamma`/`beta` LayerNorm names are accepted. The pooler and the
/// masked-LM head are optional, but a head that is present must be complete. Every tensor's
/// presence and shape is checked against the config; keys the encoder does not use
/// (`cls.seq_relationship.*`, `embeddings.position_ids`, `discriminator_predictions.*`, ...)
/// are ignored, except encoder layers beyond the configured depth, which are an error.
/// BERT and RoBERTa weights can also be written back (`save_hf_encoder`).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/types.hpp"
#include "../core/hf_names.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "../model/config.hpp"
#include "../model/weights.hpp"
#include "../core/file_util.hpp"
#include "safetensors.hpp"

namespace peft {
namespace detail {

/// Appends a file name to a folder path.
inline std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty()) return file;
  return dir.back() == '/' ? dir + file : dir + "/" + file;
}

/// Reads an integer field of config.json; @p fallback is used when the key is absent and
/// @p required is false. Values below @p min are rejected.
inline index hf_config_int(const nlohmann::json& j, const std::string& at, const char* key, bool required,
                           index fallback, index min) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw io_error(at + ": missing required key '" + key + "'");
    return fallback;
  }
  const nlohmann::json& v = j[key];
  std::int64_t x = 0;
  if (!detail::json_to_integer(v, x))
    throw io_error(at + ": '" + key + "' expected an integer below 2^63, got " + v.dump());
  if (x < min)
    throw io_error(at + ": '" + key + "' expected >= " + std::to_string(min) + ", got " + std::to_string(x));
  return static_cast<index>(x);
}

/// Reads a floating field of config.json in [lo, hi).
inline double hf_config_double(const nlohmann::json& j, const std::string& at, const char* key, double fallback,
                               double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const nlohmann::json& v = j[key];
  if (!v.is_number()) throw io_error(at + ": '" + key + "' expected a number, got " + v.dump());
  const double x = v.get<double>();
  if (!(x >= lo && x < hi))
    throw io_error(at + ": '" + key + "' expected in [" + std::to_string(lo) + ", " + std::to_string(hi) + "), got " +
                   v.dump());
  return x;
}

/// Hugging Face `hidden_act` string for peft's enum.
inline const char* hf_activation_name(activation a) noexcept {
  switch (a) {
    case activation::gelu_erf: return "gelu";
    case activation::gelu_tanh: return "gelu_new";
    case activation::relu: return "relu";
  }
  return "gelu";
}

/// The Hugging Face model types peft reads, as listed in errors.
inline constexpr const char* hf_model_types = "bert, roberta, xlm-roberta, distilbert, electra, albert, mpnet";

/// Whether the family's embeddings may be narrower than its layers (then a projection follows).
inline bool hf_factorised_embeddings(const std::string& model_type) {
  return model_type == "electra" || model_type == "albert";
}

/// Checks what `read_hf_config` checks, for configs built in code.
inline void check_hf_config(const encoder_config& c, const std::string& at) {
  if (arch_of_model_type(c.model_type).empty() || c.model_type == "use_lite")
    throw invalid_argument(at + ": model_type expected one of " + hf_model_types + ", got '" + c.model_type + "'");
  const std::pair<const char*, index> positive[] = {{"vocab_size", c.vocab_size},
                                                    {"hidden_size", c.hidden_size},
                                                    {"num_hidden_layers", c.num_layers},
                                                    {"num_attention_heads", c.num_heads},
                                                    {"intermediate_size", c.intermediate_size},
                                                    {"max_position_embeddings", c.max_positions}};
  for (const auto& p : positive)
    if (p.second < 1) throw invalid_argument(at + ": " + p.first + " expected >= 1, got " + std::to_string(p.second));
  if (c.embedding_size != c.hidden_size && !hf_factorised_embeddings(c.model_type))
    throw invalid_argument(at + ": embedding_size expected hidden_size " + std::to_string(c.hidden_size) + ", got " +
                           std::to_string(c.embedding_size));
  if (c.embedding_size < 1)
    throw invalid_argument(at + ": embedding_size expected >= 1, got " + std::to_string(c.embedding_size));
  if (c.layer_groups != 0 && (c.layer_groups < 1 || c.layer_groups > c.num_layers))
    throw invalid_argument(at + ": num_hidden_groups expected in [1, " + std::to_string(c.num_layers) + "], got " +
                           std::to_string(c.layer_groups));
  if (c.hidden_size % c.num_heads != 0)
    throw invalid_argument(at + ": hidden_size expected a multiple of num_attention_heads " +
                           std::to_string(c.num_heads) + ", got " + std::to_string(c.hidden_size));
  if (c.type_vocab_size < 0)
    throw invalid_argument(at + ": type_vocab_size expected >= 0, got " + std::to_string(c.type_vocab_size));
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
    throw invalid_argument(at + ": pad_token_id expected in [0, " + std::to_string(c.vocab_size) + "), got " +
                           std::to_string(c.pad_token_id));
  if (arch_of_model_type(c.model_type) == "roberta" && c.max_positions <= c.pad_token_id + 1)
    throw invalid_argument(at + ": max_position_embeddings expected > pad_token_id + 1 = " +
                           std::to_string(c.pad_token_id + 1) + " for " + c.model_type + ", got " +
                           std::to_string(c.max_positions));
  if (!(c.layer_norm_eps > 0) || !std::isfinite(c.layer_norm_eps))
    throw invalid_argument(at + ": layer_norm_eps expected > 0, got " + std::to_string(c.layer_norm_eps));
}

/// Which optional part of a checkpoint a tensor belongs to.
enum class hf_group { body, pooler, mlm };

/// One expected tensor: its key (and an accepted older name), where it goes, and its shape.
/// Built transiently per load/save; never stored.
template <typename M, typename V>
struct hf_slot {
  std::string key;
  std::string alt_key;  ///< older name also accepted on load ("" if none)
  M* mat = nullptr;     ///< destination matrix, or
  V* vec = nullptr;     ///< destination vector
  index rows = 0, cols = 0;  ///< expected shape; cols == 0 for vectors
  hf_group group = hf_group::body;
};

template <typename Scalar, bool Const>
struct hf_slot_types {
  using M = std::conditional_t<Const, const matrix<Scalar>, matrix<Scalar>>;
  using V = std::conditional_t<Const, const vector<Scalar>, vector<Scalar>>;
  using slot = hf_slot<M, V>;
};

/// Lists every tensor of a BERT/RoBERTa checkpoint for @p w (const or not) under the given
/// body prefix ("", "bert." or "roberta."). `w.layers` must already have num_layers entries.
template <typename Scalar, bool Const>
std::vector<typename hf_slot_types<Scalar, Const>::slot> hf_slot_list(
    std::conditional_t<Const, const encoder_weights<Scalar>, encoder_weights<Scalar>>& w, const std::string& prefix) {
  using slot = typename hf_slot_types<Scalar, Const>::slot;
  const encoder_config& c = w.config;
  const index H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  std::vector<slot> s;
  auto mat = [&](std::string key, auto& m, index r, index k, hf_group g = hf_group::body) {
    slot x;
    x.key = std::move(key);
    x.mat = &m;
    x.rows = r;
    x.cols = k;
    x.group = g;
    s.push_back(std::move(x));
  };
  auto vec = [&](std::string key, auto& v, index n, hf_group g = hf_group::body, std::string alt = std::string()) {
    slot x;
    x.key = std::move(key);
    x.alt_key = std::move(alt);
    x.vec = &v;
    x.rows = n;
    x.group = g;
    s.push_back(std::move(x));
  };
  auto lin = [&](const std::string& key, auto& l, index out, index in, hf_group g = hf_group::body) {
    mat(key + ".weight", l.weight, out, in, g);
    vec(key + ".bias", l.bias, out, g);
  };
  auto ln = [&](const std::string& key, auto& n, index width, hf_group g = hf_group::body) {
    vec(key + ".weight", n.gamma, width, g, key + ".gamma");
    vec(key + ".bias", n.beta, width, g, key + ".beta");
  };

  const index E = c.embedding_size;
  const std::string& mt = c.model_type;
  const std::string e = prefix + "embeddings.";
  mat(e + "word_embeddings.weight", w.word_embeddings, V, E);
  mat(e + "position_embeddings.weight", w.position_embeddings, c.max_positions, E);
  if (c.type_vocab_size > 0) mat(e + "token_type_embeddings.weight", w.token_type_embeddings, c.type_vocab_size, E);
  ln(e + "LayerNorm", w.embedding_norm, E);
  if (mt == "electra" && E != H) lin(prefix + "embeddings_project", w.embedding_projection, H, E);
  if (mt == "albert") lin(prefix + "encoder.embedding_hidden_mapping_in", w.embedding_projection, H, E);
  if (mt == "mpnet")
    mat(prefix + "encoder.relative_attention_bias.weight", w.relative_attention_bias, c.relative_attention_buckets,
        c.num_heads);
  // A layer's keys (core/hf_names.hpp): its path, then the names of Q, K, V, the attention
  // output, its LayerNorm, the FFN's two linears and their LayerNorm.
  const hf_layer_names names = hf_layer_names_of(mt);
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    auto& L = w.layers[i];
    const std::string l = prefix + hf_layer_path(names, static_cast<index>(i));
    lin(l + names.q, L.query, H, H);
    lin(l + names.k, L.key, H, H);
    lin(l + names.v, L.value, H, H);
    lin(l + names.o, L.attn_out, H, H);
    ln(l + names.ln1, L.attn_norm, H);
    lin(l + names.ffn_in, L.ffn_in, I, H);
    lin(l + names.ffn_out, L.ffn_out, H, I);
    ln(l + names.ln2, L.ffn_norm, H);
  }
  if (mt == "albert")
    lin(prefix + "pooler", w.pooler, H, H, hf_group::pooler);
  else if (mt != "distilbert" && mt != "electra")
    lin(prefix + "pooler.dense", w.pooler, H, H, hf_group::pooler);
  if (mt == "roberta" || mt == "xlm-roberta" || mt == "mpnet") {
    lin("lm_head.dense", w.mlm_transform, H, H, hf_group::mlm);
    ln("lm_head.layer_norm", w.mlm_norm, H, hf_group::mlm);
    vec("lm_head.bias", w.mlm_bias, V, hf_group::mlm, "lm_head.decoder.bias");
  } else if (mt == "distilbert") {
    lin("vocab_transform", w.mlm_transform, H, H, hf_group::mlm);
    ln("vocab_layer_norm", w.mlm_norm, H, hf_group::mlm);
    vec("vocab_projector.bias", w.mlm_bias, V, hf_group::mlm);
  } else if (mt == "albert") {
    lin("predictions.dense", w.mlm_transform, E, H, hf_group::mlm);
    ln("predictions.LayerNorm", w.mlm_norm, E, hf_group::mlm);
    vec("predictions.bias", w.mlm_bias, V, hf_group::mlm, "predictions.decoder.bias");
  } else if (mt == "bert") {
    lin("cls.predictions.transform.dense", w.mlm_transform, H, H, hf_group::mlm);
    ln("cls.predictions.transform.LayerNorm", w.mlm_norm, H, hf_group::mlm);
    vec("cls.predictions.bias", w.mlm_bias, V, hf_group::mlm, "cls.predictions.decoder.bias");
  }
  return s;
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <typename Slot>
std::vector<std::int64_t> slot_shape(const Slot& s) {
  if (s.mat) return {static_cast<std::int64_t>(s.rows), static_cast<std::int64_t>(s.cols)};
  return {static_cast<std::int64_t>(s.rows)};
}

}  // namespace detail

/// Reads the `config.json` of a Hugging Face encoder of the BERT family.
///
/// Required keys: model_type (bert, roberta, xlm-roberta, distilbert, electra, albert, mpnet)
/// and the sizes: vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
/// intermediate_size, max_position_embeddings (DistilBERT's names: dim, n_layers, n_heads,
/// hidden_dim). Optional (default): type_vocab_size (2; RoBERTa-style families 1 as written,
/// DistilBERT and MPNet have none), layer_norm_eps (1e-12; DistilBERT always 1e-12),
/// hidden_act ("gelu"; ALBERT "gelu_new"; DistilBERT's `activation`), pad_token_id (0; 1 for
/// the RoBERTa-style families), the dropout rates (0.1), position_embedding_type ("absolute"
/// only), embedding_size (ELECTRA and ALBERT; the others must equal hidden_size),
/// num_hidden_groups (ALBERT, 1) with inner_group_num 1, relative_attention_num_buckets
/// (MPNet, 32).
/// @throws peft::io_error naming the file and the key: unreadable or non-JSON file, missing
///   or mistyped key, non-positive size, hidden_size not a multiple of num_attention_heads,
///   unknown model_type or hidden_act, JSON nested too deeply, or sizes declaring more
///   parameters than `read_limits::max_model_parameters`
inline encoder_config read_hf_config(const std::string& config_json_path) {
  const std::string at = "read_hf_config: '" + config_json_path + "'";
  const std::string text = detail::read_file(config_json_path, "read_hf_config");
  nlohmann::json j;
  try {
    j = detail::parse_json_limited(text, at);
  } catch (const nlohmann::json::exception& e) {
    throw io_error(at + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw io_error(at + ": expected a JSON object, got " + j.type_name());

  encoder_config c;
  if (!j.contains("model_type")) throw io_error(at + ": missing required key 'model_type'");
  if (!j["model_type"].is_string()) throw io_error(at + ": 'model_type' expected a string, got " + j["model_type"].dump());
  c.model_type = j["model_type"].get<std::string>();
  const std::string& mt = c.model_type;
  if (arch_of_model_type(mt).empty() || mt == "use_lite")
    throw io_error(at + ": model_type expected one of " + detail::hf_model_types + ", got '" + mt + "'");
  const bool roberta_style = arch_of_model_type(mt) == "roberta";
  const bool distil = mt == "distilbert";

  c.vocab_size = detail::hf_config_int(j, at, "vocab_size", true, 0, 1);
  c.hidden_size = detail::hf_config_int(j, at, distil ? "dim" : "hidden_size", true, 0, 1);
  c.num_layers = detail::hf_config_int(j, at, distil ? "n_layers" : "num_hidden_layers", true, 0, 1);
  c.num_heads = detail::hf_config_int(j, at, distil ? "n_heads" : "num_attention_heads", true, 0, 1);
  c.intermediate_size = detail::hf_config_int(j, at, distil ? "hidden_dim" : "intermediate_size", true, 0, 1);
  c.max_positions = detail::hf_config_int(j, at, "max_position_embeddings", true, 0, 1);
  c.embedding_size = detail::hf_factorised_embeddings(mt)
                         ? detail::hf_config_int(j, at, "embedding_size", false, c.hidden_size, 1)
                         : c.hidden_size;
  c.type_vocab_size =
      distil || mt == "mpnet" ? 0 : detail::hf_config_int(j, at, "type_vocab_size", false, 2, 0);
  c.pad_token_id = detail::hf_config_int(j, at, "pad_token_id", false, roberta_style ? 1 : 0, 0);
  c.layer_norm_eps = distil ? 1e-12 : detail::hf_config_double(j, at, "layer_norm_eps", 1e-12, 0.0, 1.0);
  if (!(c.layer_norm_eps > 0)) throw io_error(at + ": 'layer_norm_eps' expected > 0, got " + j["layer_norm_eps"].dump());
  c.hidden_dropout = detail::hf_config_double(j, at, distil ? "dropout" : "hidden_dropout_prob", 0.1, 0.0, 1.0);
  c.attention_dropout =
      detail::hf_config_double(j, at, distil ? "attention_dropout" : "attention_probs_dropout_prob", 0.1, 0.0, 1.0);
  const char* act_key = distil ? "activation" : "hidden_act";
  if (mt == "albert") c.hidden_act = activation::gelu_tanh;
  if (j.contains(act_key)) {
    if (!j[act_key].is_string()) throw io_error(at + ": '" + act_key + "' expected a string, got " + j[act_key].dump());
    try {
      c.hidden_act = parse_activation(j[act_key].get<std::string>());
    } catch (const invalid_argument& e) {
      throw io_error(at + ": " + e.what());
    }
  }
  if (j.contains("position_embedding_type") && !j["position_embedding_type"].is_null() &&
      j["position_embedding_type"] != "absolute")
    throw io_error(at + ": position_embedding_type expected \"absolute\", got " + j["position_embedding_type"].dump());
  if (!detail::hf_factorised_embeddings(mt) && j.contains("embedding_size") && j["embedding_size"] != j["hidden_size"])
    throw io_error(at + ": embedding_size expected hidden_size " + std::to_string(c.hidden_size) + ", got " +
                   j["embedding_size"].dump());
  if (mt == "albert") {
    c.layer_groups = detail::hf_config_int(j, at, "num_hidden_groups", false, 1, 1);
    if (c.num_layers % c.layer_groups != 0)
      throw io_error(at + ": num_hidden_layers expected a multiple of num_hidden_groups " +
                     std::to_string(c.layer_groups) + ", got " + std::to_string(c.num_layers));
    if (detail::hf_config_int(j, at, "inner_group_num", false, 1, 1) != 1)
      throw io_error(at + ": inner_group_num expected 1 (one layer per group), got " + j["inner_group_num"].dump());
  }
  if (mt == "mpnet") {
    c.relative_attention_buckets = detail::hf_config_int(j, at, "relative_attention_num_buckets", false, 32, 4);
    if (c.relative_attention_buckets % 4 != 0)
      throw io_error(at + ": relative_attention_num_buckets expected a multiple of 4, got " +
                     std::to_string(c.relative_attention_buckets));
  }
  try {
    detail::check_hf_config(c, at);
  } catch (const invalid_argument& e) {
    throw io_error(e.what());
  }
  // The weights these sizes declare are allocated when the checkpoint loads; refuse a config
  // no machine could hold before anyone allocates for it (long double: no overflow).
  // Each size is converted before any arithmetic (their int64 sum could overflow) and the
  // estimate is never converted back unless it is within the (uint64) limit.
  const auto ld = [](index v) { return static_cast<long double>(v); };
  const long double h = ld(c.hidden_size), ffn = ld(c.intermediate_size);
  const long double params = (ld(c.vocab_size) + ld(c.max_positions) + ld(c.type_vocab_size)) * ld(c.embedding_size) +
                             ld(c.num_layers) * (4 * h * h + 2 * h * ffn + 9 * h + ffn);
  const std::uint64_t limit = default_read_limits().max_model_parameters;
  if (!(params <= static_cast<long double>(limit)))
    throw io_error(at + ": the sizes declare more than " + std::to_string(limit) +
                   " parameters (read_limits::max_model_parameters)");
  return c;
}

namespace detail {

/// The tensors of a checkpoint folder: `model.safetensors`, or the shards a
/// `model.safetensors.index.json` lists (its `weight_map` says which shard holds each key).
class hf_tensors {
public:
  /// @throws peft::io_error naming the folder when neither file is there (and whether only
  ///   `pytorch_model.bin` is), a malformed index, a shard name that leaves the folder, a
  ///   missing shard, or a key the index maps to a shard that lacks it
  static hf_tensors open(const std::string& dir) {
    hf_tensors t;
    const std::string single = join_path(dir, "model.safetensors"), index = join_path(dir, "model.safetensors.index.json");
    if (std::filesystem::exists(single) || !std::filesystem::exists(index)) {
      if (!std::filesystem::exists(single) && std::filesystem::exists(join_path(dir, "pytorch_model.bin")))
        throw io_error("load_hf_encoder: '" + single +
                       "' not found; only pytorch_model.bin is present (convert it to safetensors first)");
      t.m_files.push_back(safetensors_file::open(single));
      t.m_where = single;
      for (const auto& name : t.m_files.back().names()) t.m_file_of[name] = 0;
      return t;
    }
    const std::string at = "load_hf_encoder: '" + index + "'";
    t.m_where = index;
    nlohmann::json j;
    try {
      j = parse_json_limited(read_file(index, "load_hf_encoder"), at);
    } catch (const nlohmann::json::exception& e) {
      throw io_error(at + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw io_error(at + ": a \"weight_map\" object expected, got " + (j.is_object() ? std::string("none") : j.dump().substr(0, 60)));
    std::map<std::string, std::size_t> shard_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw io_error(at + ": weight_map[\"" + it.key() + "\"] expected a file name, got " + it.value().dump());
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
          shard == "." || shard == "..")
        throw io_error(at + ": weight_map[\"" + it.key() + "\"] expected a file in the folder, got \"" + shard + "\"");
      auto found = shard_index.find(shard);
      if (found == shard_index.end()) {
        found = shard_index.emplace(shard, t.m_files.size()).first;
        t.m_files.push_back(safetensors_file::open(join_path(dir, shard)));
      }
      if (!t.m_files[found->second].contains(it.key()))
        throw io_error(at + ": tensor '" + it.key() + "' expected in shard '" + shard + "', got none there");
      t.m_file_of[it.key()] = found->second;
    }
    return t;
  }

  /// Where the tensors come from (the file, or the index of the shards), for messages.
  const std::string& where() const noexcept { return m_where; }
  bool contains(const std::string& name) const { return m_file_of.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : m_file_of) out.push_back(kv.first);
    return out;
  }
  const tensor_info& info(const std::string& name) const { return file(name).info(name); }
  template <typename Scalar>
  std::vector<Scalar> load_values(const std::string& name) const {
    return file(name).template load_values<Scalar>(name);
  }

private:
  const safetensors_file& file(const std::string& name) const {
    auto it = m_file_of.find(name);
    if (it == m_file_of.end()) throw io_error("load_hf_encoder: '" + m_where + "' has no tensor named '" + name + "'");
    return m_files[it->second];
  }

  std::vector<safetensors_file> m_files;
  std::map<std::string, std::size_t> m_file_of;
  std::string m_where;
};

}  // namespace detail

/// Loads a Hugging Face encoder folder (`config.json` and `model.safetensors`, or the shards
/// of `model.safetensors.index.json`) into shared, frozen encoder weights.
///
/// F16, BF16, F32 and F64 tensors are converted to @p Scalar (F64 into double is exact).
/// A tied MLM decoder weight (`cls.predictions.decoder.weight`, `lm_head.decoder.weight`,
/// `vocab_projector.weight`, `predictions.decoder.weight`) is accepted if it equals the word
/// embeddings. ALBERT's shared layer groups are loaded once (`encoder_weights::layer`).
/// @tparam Scalar float or double
/// @throws peft::io_error naming the file and key: a bad config (see `read_hf_config`); a
///   missing tensor (with its expected shape); a tensor whose shape differs from the config
///   (expected and found shapes); an incomplete pooler or MLM head; an integer dtype; an
///   encoder layer beyond num_hidden_layers; an untied decoder; a bad shard index.
///   peft::numeric_error naming the key if a tensor holds NaN or infinity.
template <typename Scalar>
shared_weights<Scalar> load_hf_encoder(const std::string& dir) {
  static_assert(is_supported_scalar_v<Scalar>, "load_hf_encoder: Scalar must be float or double");
  auto w = std::make_shared<encoder_weights<Scalar>>();
  w->config = read_hf_config(detail::join_path(dir, "config.json"));
  const encoder_config& c = w->config;

  const detail::hf_tensors f = detail::hf_tensors::open(dir);
  const std::string at = "load_hf_encoder: '" + f.where() + "'";

  // Find the body prefix: "bert." / "roberta." / ... (…ForMaskedLM checkpoints) or none (…Model).
  const std::string model_prefix = detail::hf_model_prefix(c.model_type);
  std::string prefix;
  if (f.contains(model_prefix + "embeddings.word_embeddings.weight"))
    prefix = model_prefix;
  else if (f.contains("embeddings.word_embeddings.weight"))
    prefix = "";
  else {
    std::string hint;
    for (const char* other : {"bert.", "roberta.", "distilbert.", "electra.", "albert.", "mpnet."})
      if (other != model_prefix && f.contains(std::string(other) + "embeddings.word_embeddings.weight"))
        hint = std::string(" (the file has '") + other + "' keys: does config.json's model_type match?)";
    throw io_error(at + ": missing tensor '" + model_prefix + "embeddings.word_embeddings.weight' (with or without the '" +
                   model_prefix + "' prefix), expected shape [" + std::to_string(c.vocab_size) + ", " +
                   std::to_string(c.embedding_size) + "]" + hint);
  }

  // No encoder layer (ALBERT: layer group) beyond the configured depth (a config/checkpoint mismatch).
  const index depth = c.layer_groups > 0 ? c.layer_groups : c.num_layers;
  const std::string layer_prefix = prefix + detail::hf_layer_names_of(c.model_type).stem;
  for (const auto& name : f.names()) {
    if (name.compare(0, layer_prefix.size(), layer_prefix) != 0) continue;
    const std::size_t dot = name.find('.', layer_prefix.size());
    const std::string num = name.substr(layer_prefix.size(), dot == std::string::npos ? std::string::npos : dot - layer_prefix.size());
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 9) continue;
    if (std::stol(num) >= depth)
      throw io_error(at + ": tensor '" + name + "' belongs to " + (c.layer_groups > 0 ? "layer group " : "layer ") + num +
                     " but config " + (c.layer_groups > 0 ? "num_hidden_groups" : "num_hidden_layers") + " is " +
                     std::to_string(depth));
  }

  w->layers.resize(static_cast<std::size_t>(depth));
  auto slots = detail::hf_slot_list<Scalar, false>(*w, prefix);

  auto present = [&](const auto& s) { return f.contains(s.key) || (!s.alt_key.empty() && f.contains(s.alt_key)); };
  bool group_present[3] = {true, false, false};
  std::string group_witness[3];
  for (const auto& s : slots)
    if (s.group != detail::hf_group::body && present(s)) {
      group_present[static_cast<int>(s.group)] = true;
      group_witness[static_cast<int>(s.group)] = f.contains(s.key) ? s.key : s.alt_key;
    }

  for (auto& s : slots) {
    const int g = static_cast<int>(s.group);
    if (!group_present[g]) continue;
    const std::vector<std::int64_t> expected = detail::slot_shape(s);
    std::string key = s.key;
    if (!f.contains(key) && !s.alt_key.empty() && f.contains(s.alt_key)) key = s.alt_key;
    if (!f.contains(key)) {
      std::string why;
      if (s.group != detail::hf_group::body)
        why = " (the head is incomplete: '" + group_witness[g] + "' is present)";
      throw io_error(at + ": missing tensor '" + s.key + "', expected shape " + detail::shape_string(expected) + why);
    }
    const tensor_info& ti = f.info(key);
    if (ti.shape != expected)
      throw io_error(at + ": tensor '" + key + "' shape expected " + detail::shape_string(expected) + ", got " +
                     ti.shape_string());
    std::vector<Scalar> v = f.template load_values<Scalar>(key);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw numeric_error(at + ": tensor '" + key + "' element " + std::to_string(i) + " expected finite, got " +
                            std::to_string(v[i]));
    if (s.mat)
      *s.mat = const_matrix_map<Scalar>(v.data(), s.rows, s.cols);
    else
      *s.vec = Eigen::Map<const vector<Scalar>>(v.data(), s.rows);
  }

  // A saved MLM decoder weight must be the tied word-embedding matrix.
  for (const char* decoder_key : {"cls.predictions.decoder.weight", "lm_head.decoder.weight", "vocab_projector.weight",
                                  "predictions.decoder.weight"}) {
    const std::string key = decoder_key;
    if (!f.contains(key)) continue;
    const tensor_info& ti = f.info(key);
    const std::vector<std::int64_t> expected{static_cast<std::int64_t>(c.vocab_size),
                                             static_cast<std::int64_t>(c.embedding_size)};
    if (ti.shape != expected)
      throw io_error(at + ": tensor '" + key + "' shape expected " + detail::shape_string(expected) + ", got " +
                     ti.shape_string());
    std::vector<Scalar> v = f.template load_values<Scalar>(key);
    if (!(const_matrix_map<Scalar>(v.data(), c.vocab_size, c.embedding_size).array() == w->word_embeddings.array()).all())
      throw io_error(at + ": tensor '" + key +
                     "' expected to equal the word embeddings (tied decoder), got different values; untied decoders "
                     "are not supported");
  }
  return w;
}

/// Writes @p w as `dir/config.json` and `dir/model.safetensors` (each atomically), with
/// the `bert.` / `roberta.` prefix and the `cls.predictions.*` / `lm_head.*` MLM head names
/// of a …ForMaskedLM checkpoint. Tensors are F32 for float and F64 for double. Creates @p dir
/// if needed. Heads that are empty are not written.
/// @throws peft::invalid_argument if the config is not a valid BERT/RoBERTa config, a tensor's
///   shape does not match it, a head is partly filled, or the weights have parts the format
///   cannot hold (residual_proj, final_norm, sentence_dense); peft::io_error if writing fails
template <typename Scalar>
void save_hf_encoder(const std::string& dir, const encoder_weights<Scalar>& w) {
  static_assert(is_supported_scalar_v<Scalar>, "save_hf_encoder: Scalar must be float or double");
  const std::string at = "save_hf_encoder: '" + dir + "'";
  const encoder_config& c = w.config;
  detail::check_hf_config(c, at);
  if (c.model_type != "bert" && c.model_type != "roberta")
    throw invalid_argument(at + ": model_type expected 'bert' or 'roberta' (the families peft writes), got '" +
                           c.model_type + "'");
  if (w.is_bf16())
    throw invalid_argument(at + ": the layer weights are stored in bf16 (to_bf16); save the float weights they "
                                "came from");
  if (static_cast<index>(w.layers.size()) != c.num_layers)
    throw invalid_argument(at + ": layers expected " + std::to_string(c.num_layers) + " (config num_layers), got " +
                           std::to_string(w.layers.size()));
  for (std::size_t i = 0; i < w.layers.size(); ++i)
    if (!w.layers[i].residual_proj.empty())
      throw invalid_argument(at + ": layer " + std::to_string(i) + " residual_proj expected empty for " + c.model_type +
                             ", got a " + std::to_string(w.layers[i].residual_proj.weight.rows()) + "x" +
                             std::to_string(w.layers[i].residual_proj.weight.cols()) + " matrix");
  if (!w.final_norm.empty() || !w.sentence_dense.empty())
    throw invalid_argument(at + ": final_norm and sentence_dense expected empty for " + c.model_type);

  const auto slots = detail::hf_slot_list<Scalar, true>(w, c.model_type + ".");
  auto filled = [](const auto& s) { return s.mat ? s.mat->size() != 0 : s.vec->size() != 0; };
  bool group_present[3] = {true, false, false};
  for (const auto& s : slots)
    if (s.group != detail::hf_group::body && filled(s)) group_present[static_cast<int>(s.group)] = true;

  safetensors_writer st;
  for (const auto& s : slots) {
    if (!group_present[static_cast<int>(s.group)]) continue;
    const std::vector<std::int64_t> expected = detail::slot_shape(s);
    std::vector<std::int64_t> got;
    if (s.mat)
      got = {static_cast<std::int64_t>(s.mat->rows()), static_cast<std::int64_t>(s.mat->cols())};
    else
      got = {static_cast<std::int64_t>(s.vec->size())};
    if (got != expected)
      throw invalid_argument(at + ": tensor '" + s.key + "' shape expected " + detail::shape_string(expected) +
                             ", got " + detail::shape_string(got));
    const Scalar* p = s.mat ? s.mat->data() : s.vec->data();
    const std::size_t n = s.mat ? static_cast<std::size_t>(s.mat->size()) : static_cast<std::size_t>(s.vec->size());
    st.add(s.key, expected, std::vector<Scalar>(p, p + n));
  }
  st.set_metadata("format", "pt");

  nlohmann::json j;
  j["model_type"] = c.model_type;
  j["architectures"] = {c.model_type == "roberta" ? "RobertaForMaskedLM" : "BertForMaskedLM"};
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_positions;
  j["type_vocab_size"] = c.type_vocab_size;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["hidden_act"] = detail::hf_activation_name(c.hidden_act);
  j["pad_token_id"] = c.pad_token_id;
  j["hidden_dropout_prob"] = c.hidden_dropout;
  j["attention_probs_dropout_prob"] = c.attention_dropout;
  j["position_embedding_type"] = "absolute";

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw io_error(at + ": cannot create the folder: " + ec.message());
  st.save(detail::join_path(dir, "model.safetensors"));
  atomic_write(detail::join_path(dir, "config.json"), j.dump(2) + "\n");
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_IO_HF_CHECKPOINT
#include "../detail/instances.hpp"

#endif  // PEFT_IO_HF_CHECKPOINT_HPP
