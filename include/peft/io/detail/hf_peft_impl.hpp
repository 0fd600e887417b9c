// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_DETAIL_HF_PEFT_IMPL_HPP
#define PEFT_IO_DETAIL_HF_PEFT_IMPL_HPP

/// @file hf_peft_impl.hpp
/// The definitions of hf_peft.hpp. Included by it (header-only use), or, with
/// PEFT_TASK_SEPARATE defined, by exactly one file of peft::instances (src/instances/io.cpp).

#include <algorithm>
#include <iterator>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../../error.hpp"
#include "../../policies/linear_targets.hpp"
#include "../../policies/policy_config.hpp"
#include "../../policies/policy_traits.hpp"
#include "../../version.hpp"
#include "../hf_peft.hpp"

namespace peft::detail {

namespace hf {

/// Where linear @p w sits inside a layer of the family of @p n ("attention.self.query",
/// DistilBERT's "attention.q_lin", ...; core/hf_names.hpp).
inline std::string sub_path(const hf_layer_names& n, linear_id w) { return linear_sub_path(n, w); }

/// The linears of a layer whose path inside the layer @p name names as Hugging Face's
/// `target_modules` list does (the path equals it or ends with "." + it).
inline std::set<linear_id> named_by(const hf_layer_names& n, const std::string& name) {
  std::set<linear_id> out;
  for (int i = 0; i < num_linear_ids; ++i)
    if (path_matches(sub_path(n, static_cast<linear_id>(i)), name)) out.insert(static_cast<linear_id>(i));
  return out;
}

/// The name `target_modules` lists for linear @p w: the shortest dotted end of its path that
/// names no other linear of the layer ("query", DistilBERT's "q_lin", ALBERT's "ffn"), never a
/// bare "dense" (heads and poolers have such modules too). BERT's FFN output has no such end
/// ("output.dense" also ends "attention.output.dense"): its whole path inside the layer is
/// returned, and the writer says it exactly with a regular expression when that matters.
inline std::string target_name(const hf_layer_names& n, linear_id w) {
  const std::string p = sub_path(n, w);
  for (std::size_t dot = p.rfind('.');; dot = p.rfind('.', dot - 1)) {
    const std::string end = dot == std::string::npos ? p : p.substr(dot + 1);
    if (end != "dense" && named_by(n, end).size() == 1) return end;
    if (dot == std::string::npos || dot == 0) break;
  }
  return p;
}

/// "encoder.layer.<i>.attention.self.query, attention.self.key, ..." for errors.
inline std::string linear_paths_text(const std::string& prefix, const hf_layer_names& n) {
  std::string s = prefix + n.stem + "<i>" + n.suffix;
  for (int i = 0; i < num_linear_ids; ++i) s += (i ? ", " : "") + sub_path(n, static_cast<linear_id>(i));
  return s;
}

inline const char* shape_keys[] = {"model_type", "num_layers", "hidden_size", "embedding_size"};
inline const char* digest_key = "weights_fnv1a64";
inline const char* legacy_digest_key = "peft_weights_fnv1a64";  // peft 0.1.0, top level

/// Longest regular expression read from a config: a pattern from a hostile file must not make
/// the compiler recurse deeply (nested groups).
inline constexpr std::size_t max_pattern_length = 1024;

/// @p key without the prefix a PeftModel's keys carry: `base_model.model.` (LoRA, (IA)3: the
/// tuner's model) or `base_model.` (prompt learning: the Hugging Face model itself).
inline std::string without_base_model(const std::string& key) {
  for (const std::string base : {"base_model.model.", "base_model."})
    if (key.compare(0, base.size(), base) == 0) return key.substr(base.size());
  return key;
}

/// std::regex for @p pattern, or an invalid_argument naming @p field and the pattern. With
/// libstdc++ the pattern is matched by its breadth-first executor (`__polynomial`: time linear
/// in the path's length, where the default backtracking one is exponential for patterns such as
/// "(a|a)*b" from a hostile file); such patterns have no back-references to lose.
inline std::regex compile(const std::string& pattern, const std::string& field, const std::string& where) {
  if (pattern.size() > max_pattern_length)
    throw invalid_argument(where + ": field '" + field + "' holds a regular expression of " +
                           std::to_string(pattern.size()) + " characters, expected at most " +
                           std::to_string(max_pattern_length));
  auto flags = std::regex::ECMAScript;
#if defined(__GLIBCXX__)
  flags |= std::regex_constants::__polynomial;
#endif
  try {
    return std::regex(pattern, flags);
  } catch (const std::regex_error& e) {
    throw invalid_argument(where + ": field '" + field +
                           "' holds a regular expression peft cannot compile ('" + pattern.substr(0, 120) +
                           "': " + e.what() + ")");
  }
}

inline std::string escape_dots(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '.') out += '\\';
    out += c;
  }
  return out;
}

/// True for null, false, "" and empty arrays or objects: a field left at "nothing".
inline bool is_unset(const nlohmann::json& v) {
  return v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
         (v.is_string() && v.get<std::string>().empty()) || ((v.is_array() || v.is_object()) && v.empty());
}

/// Field @p k of config @p in, or null when absent.
inline const nlohmann::json& field_or_null(const nlohmann::json& in, const char* k) {
  static const nlohmann::json null_value;
  const auto it = in.find(k);
  return it == in.end() ? null_value : *it;
}

/// Throws the invalid_argument that refuses field @p k of a config read at @p where.
[[noreturn]] inline void refuse_field(const std::string& where, const std::string& k, const std::string& why) {
  throw invalid_argument(where + ": field '" + k + "' " + why);
}

/// Refuses, by name, any field of @p in with a value (not null, false or empty) that is neither
/// one of @p method_fields nor a field every method's config has (its type, the model and
/// task it was saved for, the library that saved it, peft's own).
inline void refuse_unknown_fields(const nlohmann::json& in, const std::set<std::string>& method_fields,
                                  const char* method, const std::string& where) {
  static const std::set<std::string> common = {
      "peft_type", "task_type",  "base_model_name_or_path", "revision", "inference_mode", "auto_mapping",
      "peft_version", "runtime_config", "base_model", "model_type", "num_layers", "hidden_size", "embedding_size",
      legacy_digest_key, peft_cpp_key};
  for (const auto& kv : in.items())
    if (!method_fields.count(kv.key()) && !common.count(kv.key()) && !is_unset(kv.value()))
      refuse_field(where, kv.key(),
                   std::string("is not supported by peft's ") + method +
                       " (it would change what the adapter computes), got " + kv.value().dump().substr(0, 80));
}

/// One site of a policy on the linears (LoRA, (IA)3): layer and linear.
struct site {
  index layer;
  linear_id w;
  bool operator<(const site& o) const { return layer != o.layer ? layer < o.layer : w < o.w; }
  bool operator==(const site& o) const { return layer == o.layer && w == o.w; }
};

/// The module path of linear @p w of layer @p l in a Hugging Face model of @p shape's family
/// whose encoder sits under @p prefix ("bert." or ""): on ALBERT, the module of l's group.
inline std::string module_path(const std::string& prefix, const encoder_shape& shape, index l, linear_id w) {
  return prefix + linear_layer_path(shape, l, w);
}

/// The linears @p ws and layers @p ls of @p sites, which must be every one of those linears in
/// every one of those layers (peft's policies take one set of linears in one set of layers).
inline void split_product(const std::set<site>& sites, const nlohmann::json& targets, const char* method,
                          const std::string& where, std::set<linear_id>& ws, std::set<index>& ls) {
  for (const auto& s : sites) {
    ws.insert(s.w);
    ls.insert(s.layer);
  }
  if (sites.size() != ws.size() * ls.size())
    throw invalid_argument(where + ": field 'target_modules' chooses different linears in different layers (" +
                           targets.dump() + "); peft's " + method +
                           " takes the same linears in every chosen layer");
}

/// The (layer, linear) sites a Hugging Face config chooses by `target_modules`,
/// `layers_to_transform` and `exclude_modules`, with its rules over the module paths; @p prefix
/// is what precedes the layers in those paths ("bert." or ""). Never empty.
inline std::set<site> select_sites(const nlohmann::json& in, const encoder_shape& shape, const std::string& prefix,
                                   const std::string& where) {
  auto field = [&](const char* k) -> const nlohmann::json& { return field_or_null(in, k); };
  auto refuse = [&](const std::string& k, const std::string& why) { refuse_field(where, k, why); };
  const index L = shape.num_layers;
  auto path = [&](index l, linear_id w) { return module_path(prefix, shape, l, w); };
  const std::string paths_text = linear_paths_text(prefix, hf_layer_names_of(shape.model_type));
  // ALBERT's layers of a group run one module: Hugging Face PEFT finds no layer number in its
  // path (albert_layer_groups.<g>.albert_layers.0), so a choice of layers matches nothing.
  if (shape.layer_groups > 0 && !field("layers_to_transform").is_null())
    refuse("layers_to_transform", "expected null on ALBERT (every layer of a group runs one shared module, "
                                  "which Hugging Face PEFT adapts in every layer), got " +
                                      field("layers_to_transform").dump());
  std::set<site> sites;
  const auto& tm = field("target_modules");
  if (tm.is_string()) {
    if (!field("layers_to_transform").is_null())
      refuse("layers_to_transform", "expected null with a regular expression in target_modules, got " +
                                        field("layers_to_transform").dump());
    const std::regex re = compile(tm.get<std::string>(), "target_modules", where);
    for (index l = 0; l < L; ++l)
      for (int i = 0; i < num_linear_ids; ++i)
        if (std::regex_match(path(l, static_cast<linear_id>(i)), re))
          sites.insert({l, static_cast<linear_id>(i)});
  } else if (tm.is_array()) {
    std::vector<index> layers;
    const auto& lt = field("layers_to_transform");
    if (lt.is_null()) {
      for (index l = 0; l < L; ++l) layers.push_back(l);
    } else if (lt.is_number_integer()) {
      layers.push_back(lt.get<index>());
    } else if (lt.is_array()) {
      for (const auto& e : lt) {
        if (!e.is_number_integer()) refuse("layers_to_transform", "expected integers, got " + lt.dump());
        layers.push_back(e.get<index>());
      }
    } else {
      refuse("layers_to_transform", "expected null, an integer or a list of integers, got " + lt.dump());
    }
    for (index l : layers)
      if (l < 0 || l >= L)
        refuse("layers_to_transform",
               "entry expected in [0, " + std::to_string(L) + "), got " + std::to_string(l));
    for (const auto& e : tm) {
      if (!e.is_string()) refuse("target_modules", "expected strings, got " + tm.dump());
      const std::string name = e.get<std::string>();
      bool names_a_linear = false;
      for (int i = 0; i < num_linear_ids; ++i) {
        const auto w = static_cast<linear_id>(i);
        for (index l = 0; l < L; ++l) {
          if (name != to_string(w) && !path_matches(path(l, w), name)) continue;
          names_a_linear = true;
          if (std::find(layers.begin(), layers.end(), l) != layers.end()) sites.insert({l, w});
        }
      }
      if (!names_a_linear)
        refuse("target_modules", "entry '" + name + "' names none of the encoder's linears (" + paths_text +
                                     "; or query, key, value, attn_out, ffn_in, ffn_out)");
    }
  } else {
    refuse("target_modules", "expected a list of module names or a regular expression, got " + tm.dump());
  }
  // exclude_modules: taken out again, by the same rules.
  const auto& ex = field("exclude_modules");
  if (!ex.is_null()) {
    std::vector<site> drop;
    if (ex.is_string()) {
      const std::regex re = compile(ex.get<std::string>(), "exclude_modules", where);
      for (const auto& s : sites)
        if (std::regex_match(path(s.layer, s.w), re)) drop.push_back(s);
    } else if (ex.is_array()) {
      for (const auto& e : ex) {
        if (!e.is_string()) refuse("exclude_modules", "expected strings, got " + ex.dump());
        for (const auto& s : sites)
          if (path_matches(path(s.layer, s.w), e.get<std::string>())) drop.push_back(s);
      }
    } else {
      refuse("exclude_modules",
             "expected null, a list of module names or a regular expression, got " + ex.dump());
    }
    for (const auto& s : drop) sites.erase(s);
  }
  if (sites.empty())
    refuse("target_modules", "matches none of the encoder's linears (" + paths_text + "), got " + tm.dump());
  return sites;
}

/// modules_to_save: only the classifier of a *ForSequenceClassification (its tensors become
/// the task's head).
inline void check_modules_to_save(const nlohmann::json& ms, const std::string& where) {
  if (ms.is_null()) return;
  bool ok = ms.is_array();
  if (ok)
    for (const auto& e : ms)
      ok = ok && e.is_string() && (e.get<std::string>() == "classifier" || e.get<std::string>() == "score");
  if (!ok)
    throw invalid_argument(where + ": field 'modules_to_save' expected only \"classifier\" (the "
                           "sequence-classification head), got " + ms.dump());
}

/// Hugging Face LoRA config → peft's lora config fields (see hf_peft.hpp). @p prefix is what
/// precedes the layers in the module paths the adapter was trained with ("bert." or "").
inline nlohmann::json lora_from_hf(const nlohmann::json& in, const encoder_shape& shape,
                                   const std::string& prefix, const std::string& where) {
  auto field = [&](const char* k) -> const nlohmann::json& { return field_or_null(in, k); };
  auto refuse = [&](const std::string& k, const std::string& why) { refuse_field(where, k, why); };
  // Every field Hugging Face PEFT writes for LoRA: honoured below, or ignored because it only
  // describes training, initialisation or the file, or accepted only at its default.
  static const std::set<std::string> honoured = {"peft_type",
                                                 "r",
                                                 "lora_alpha",
                                                 "lora_dropout",
                                                 "use_rslora",
                                                 "target_modules",
                                                 "layers_to_transform",
                                                 "layers_pattern",
                                                 "rank_pattern",
                                                 "alpha_pattern",
                                                 "bias",
                                                 "use_dora",
                                                 "fan_in_fan_out",
                                                 "modules_to_save",
                                                 "exclude_modules",
                                                 "model_type",
                                                 "num_layers",
                                                 "hidden_size",
                                                 "embedding_size"};
  static const std::set<std::string> ignored = {"task_type",
                                                "base_model_name_or_path",
                                                "revision",
                                                "inference_mode",
                                                "auto_mapping",
                                                "peft_version",
                                                "init_lora_weights",
                                                "loftq_config",
                                                "eva_config",
                                                "corda_config",
                                                "runtime_config",
                                                "megatron_config",
                                                "megatron_core",
                                                "qalora_group_size",
                                                "ensure_weight_tying",
                                                "base_model",
                                                legacy_digest_key,
                                                peft_cpp_key};
  for (const auto& kv : in.items()) {
    if (honoured.count(kv.key()) || ignored.count(kv.key())) continue;
    if (!is_unset(kv.value()))
      refuse(kv.key(), "is not supported by peft's LoRA (it would change what the adapter computes), got " +
                           kv.value().dump().substr(0, 80));
  }
  // Initialisations that also rewrite the frozen weights (W - B A for PiSSA, OLoRA, CorDA,
  // LoRA-GA; a quantised W for LoftQ): such an adapter computes its function only on that
  // rewritten base, unless Hugging Face converted it to a plain LoRA when saving it.
  const auto& init = field("init_lora_weights");
  if (init.is_string()) {
    const std::string v = init.get<std::string>();
    for (const char* rewrites : {"pissa", "olora", "corda", "loftq", "lora_ga"})
      if (v.compare(0, std::string(rewrites).size(), rewrites) == 0)
        refuse("init_lora_weights",
               "is \"" + v +
                   "\", which changes the frozen weights the adapter works on; save it with "
                   "path_initial_model_for_weight_conversion to get a plain LoRA peft can load");
  }
  const std::string bias = field("bias").is_string() ? field("bias").get<std::string>() : "none";
  if (bias != "none")
    refuse("bias", "expected \"none\" (peft keeps the frozen linears' biases frozen), got \"" + bias + "\"");
  if (!is_unset(field("use_dora")))
    refuse("use_dora", "expected false (DoRA is not implemented in peft), got " + field("use_dora").dump());
  const auto& lp = field("layers_pattern");
  if (!lp.is_null()) {
    bool ok = lp.is_string() ? lp.get<std::string>() == "layer" : false;
    if (lp.is_array())
      for (const auto& e : lp) ok = ok || (e.is_string() && e.get<std::string>() == "layer");
    if (!ok)
      refuse("layers_pattern",
             "expected null or \"layer\" (a BERT encoder's layers are <model>.encoder.layer.<i>), got " +
                 lp.dump());
  }

  nlohmann::json out = nlohmann::json::object();
  out["peft_type"] = "LORA";
  for (const char* k : {"r", "lora_alpha"}) {
    if (!in.contains(k)) refuse(k, "missing from the config");
    out[k] = in[k];
  }
  out["lora_dropout"] = field("lora_dropout").is_null() ? nlohmann::json(0.0) : field("lora_dropout");
  out["use_rslora"] = field("use_rslora").is_null() ? nlohmann::json(false) : field("use_rslora");
  for (const char* k : shape_keys)
    if (in.contains(k)) out[k] = in[k];
  // A folder written by another tool records no encoder: it is loaded onto the one at hand.
  if (!in.contains("model_type")) write_shape_fields(out, shape);

  // Which linears of which layers: Hugging Face's rules over the module paths.
  const std::set<site> sites = select_sites(in, shape, prefix, where);
  std::set<linear_id> ws;
  std::set<index> ls;
  split_product(sites, field("target_modules"), "LoRA", where, ws, ls);
  const auto path = [&](index l, linear_id w) { return module_path(prefix, shape, l, w); };
  nlohmann::json targets = nlohmann::json::array();
  for (auto w : ws) targets.push_back(to_string(w));
  out["target_modules"] = targets;
  out["layers_to_transform"] = std::vector<index>(ls.begin(), ls.end());

  // rank_pattern / alpha_pattern: Hugging Face matches each key as a regular expression against
  // a dotted end of the module path and takes the first matching key in the dict's order, which
  // for a config read from a file is sorted (it writes them with sort_keys): the order of the
  // keys here.
  for (const char* pk : {"rank_pattern", "alpha_pattern"}) {
    const auto& pat = field(pk);
    nlohmann::json resolved = nlohmann::json::object();
    if (!pat.is_null() && !pat.is_object()) refuse(pk, "expected an object, got " + pat.dump().substr(0, 80));
    if (pat.is_object() && !pat.empty()) {
      std::vector<std::pair<std::string, std::regex>> keys;
      for (const auto& kv : pat.items()) {
        const bool ok =
            std::string(pk) == "rank_pattern" ? kv.value().is_number_integer() : kv.value().is_number();
        if (!ok) refuse(pk, "entry '" + kv.key() + "' expected a number, got " + kv.value().dump());
        keys.emplace_back(kv.key(), compile("(.*\\.)?(" + kv.key() + ")", pk, where));
      }
      for (const auto& s : sites)
        for (const auto& k : keys)
          if (std::regex_match(path(s.layer, s.w), k.second)) {
            resolved[linear_layer_path(shape, s.layer, s.w)] = pat.at(k.first);
            break;
          }
    }
    out[pk] = resolved;
  }

  check_modules_to_save(field("modules_to_save"), where);
  return out;
}

/// A regular expression naming linears @p ws in layers @p layers (all layers when
/// @p every_layer; ALBERT: groups) of a Hugging Face model of the family of @p n, matched
/// against the whole module path: `.*\\.layer\\.(?:0|1)\\.(?:output\\.dense)` for BERT.
inline std::string sites_regex(const hf_layer_names& n, const std::vector<linear_id>& ws,
                               const std::vector<index>& layers, bool every_layer) {
  std::string alt_layers = "\\d+";
  if (!every_layer) {
    alt_layers = "(?:";
    for (std::size_t i = 0; i < layers.size(); ++i) alt_layers += (i ? "|" : "") + std::to_string(layers[i]);
    alt_layers += ")";
  }
  std::string alt = "(?:";
  for (std::size_t i = 0; i < ws.size(); ++i) alt += (i ? "|" : "") + escape_dots(sub_path(n, ws[i]));
  alt += ")";
  // The stem's last part ("layer" of "encoder.layer."), after any dot.
  std::string stem = n.stem;
  stem.pop_back();
  const std::size_t dot = stem.rfind('.');
  if (dot != std::string::npos) stem = stem.substr(dot + 1);
  return ".*\\." + escape_dots(stem) + "\\." + alt_layers + escape_dots(n.suffix) + alt;
}

/// Whether the target names of @p ws, read back by Hugging Face's suffix match, choose exactly
/// @p ws (BERT: "output.dense" also chooses attention.output.dense).
inline bool names_exact(const hf_layer_names& n, const std::vector<linear_id>& ws) {
  for (auto w : ws)
    for (auto other : named_by(n, target_name(n, w)))
      if (std::find(ws.begin(), ws.end(), other) == ws.end()) return false;
  return true;
}

/// peft's lora config fields → Hugging Face's (see hf_peft.hpp).
inline void lora_to_hf(const nlohmann::json& native, nlohmann::json& out) {
  std::vector<linear_id> ws;
  for (const auto& n : native.at("target_modules"))
    ws.push_back(parse_linear_id(n.get<std::string>(), "to_saved_config"));
  const index L = native.at("num_layers").get<index>();
  const hf_layer_names n = hf_layer_names_of(native.at("model_type").get<std::string>());
  const auto layers = native.at("layers_to_transform").get<std::vector<index>>();
  const bool every_layer = static_cast<index>(layers.size()) == L;
  if (!names_exact(n, ws)) {
    // BERT: "output.dense" in a list would also choose attention.output.dense: a regular
    // expression names exactly these linears in exactly these layers.
    out["target_modules"] = sites_regex(n, ws, layers, every_layer);
    out["layers_to_transform"] = nullptr;
  } else {
    nlohmann::json names = nlohmann::json::array();
    for (auto w : ws) names.push_back(target_name(n, w));
    out["target_modules"] = names;
    out["layers_to_transform"] = every_layer ? nlohmann::json(nullptr) : nlohmann::json(layers);
  }
  out["layers_pattern"] = nullptr;
  out["rank_pattern"] = native.value("rank_pattern", nlohmann::json::object());
  out["alpha_pattern"] = native.value("alpha_pattern", nlohmann::json::object());
  out["bias"] = "none";
  out["fan_in_fan_out"] = false;
  out["use_dora"] = false;
  out["init_lora_weights"] = true;
  out["modules_to_save"] = nullptr;
  out["revision"] = nullptr;
}


/// Hugging Face IA3 config → peft's ia3 config fields (see hf_peft.hpp). @p prefix as for LoRA.
inline nlohmann::json ia3_from_hf(const nlohmann::json& in, const encoder_shape& shape, const std::string& prefix,
                                  const std::string& where) {
  refuse_unknown_fields(in,
                        {"target_modules", "feedforward_modules", "exclude_modules", "layers_to_transform",
                         "fan_in_fan_out", "modules_to_save", "init_ia3_weights"},
                        "(IA)3", where);
  // Hugging Face fills null target/feed-forward lists from its table (utils/constants.py),
  // which has BERT and RoBERTa only, before it saves; a hand-written config may still hold
  // null. For the other families Hugging Face asks for the lists, and so does peft.
  nlohmann::json cfg = in;
  const bool has_defaults = shape.model_type == "bert" || shape.model_type == "roberta";
  for (const char* k : {"target_modules", "feedforward_modules"})
    if ((!cfg.contains(k) || cfg[k].is_null()) && !has_defaults)
      refuse_field(where, k, "expected a list of module names or a regular expression (Hugging Face PEFT has no "
                             "default (IA)3 modules for " + shape.model_type + "), got null");
  if (!cfg.contains("target_modules") || cfg["target_modules"].is_null())
    cfg["target_modules"] = {"key", "value", "output.dense"};
  if (!cfg.contains("feedforward_modules") || cfg["feedforward_modules"].is_null())
    cfg["feedforward_modules"] = {"output.dense"};
  const std::set<site> sites = select_sites(cfg, shape, prefix, where);
  std::set<linear_id> ws;
  std::set<index> ls;
  split_product(sites, cfg["target_modules"], "(IA)3", where, ws, ls);

  // Which targets scale their input: a string is matched against the whole module path, a list
  // entry as a plain end of it (no dot boundary: "output.dense" also ends attention.output.dense),
  // as Hugging Face's ia3 model does.
  const auto& ff = cfg["feedforward_modules"];
  std::optional<std::regex> ff_re;
  if (ff.is_string()) {
    ff_re = compile(ff.get<std::string>(), "feedforward_modules", where);
  } else if (!ff.is_array()) {
    throw invalid_argument(where + ": field 'feedforward_modules' expected a list of module names or a regular "
                           "expression, got " + ff.dump());
  }
  auto is_ff = [&](const site& st) {
    const std::string p = module_path(prefix, shape, st.layer, st.w);
    if (ff_re) return std::regex_match(p, *ff_re);
    for (const auto& e : ff) {
      if (!e.is_string())
        throw invalid_argument(where + ": field 'feedforward_modules' expected strings, got " + ff.dump());
      const std::string n = e.get<std::string>();
      if (n.size() <= p.size() && p.compare(p.size() - n.size(), n.size(), n) == 0) return true;
    }
    return false;
  };
  nlohmann::json targets = nlohmann::json::array(), feedforward = nlohmann::json::array();
  for (auto w : ws) {
    targets.push_back(to_string(w));
    const bool first = is_ff({*ls.begin(), w});
    for (index l : ls)
      if (is_ff({l, w}) != first)
        throw invalid_argument(where + ": field 'feedforward_modules' makes " + to_string(w) +
                               " a feed-forward module in some layers only (" + ff.dump() +
                               "); peft's (IA)3 scales the same side of a linear in every layer");
    if (first) feedforward.push_back(to_string(w));
  }
  check_modules_to_save(cfg.value("modules_to_save", nlohmann::json()), where);

  nlohmann::json out = nlohmann::json::object();
  out["peft_type"] = "IA3";
  out["target_modules"] = targets;
  out["feedforward_modules"] = feedforward;
  out["layers_to_transform"] = std::vector<index>(ls.begin(), ls.end());
  for (const char* k : shape_keys)
    if (in.contains(k)) out[k] = in[k];
  if (!in.contains("model_type")) write_shape_fields(out, shape);
  return out;
}

/// peft's ia3 config fields → Hugging Face's (see hf_peft.hpp). IA3Config has no
/// layers_to_transform: a choice of layers is written as a regular expression.
inline void ia3_to_hf(const nlohmann::json& native, nlohmann::json& out) {
  std::vector<linear_id> ws, ff;
  for (const auto& n : native.at("target_modules"))
    ws.push_back(parse_linear_id(n.get<std::string>(), "to_saved_config"));
  for (const auto& n : native.at("feedforward_modules"))
    ff.push_back(parse_linear_id(n.get<std::string>(), "to_saved_config"));
  const index L = native.at("num_layers").get<index>();
  const hf_layer_names n = hf_layer_names_of(native.at("model_type").get<std::string>());
  const auto layers = native.at("layers_to_transform").get<std::vector<index>>();
  const bool every_layer = static_cast<index>(layers.size()) == L;
  const auto has = [](const std::vector<linear_id>& v, linear_id w) { return std::find(v.begin(), v.end(), w) != v.end(); };
  if (!every_layer || !names_exact(n, ws)) {
    out["target_modules"] = sites_regex(n, ws, layers, every_layer);
  } else {
    nlohmann::json names = nlohmann::json::array();
    for (auto w : ws) names.push_back(target_name(n, w));
    out["target_modules"] = names;
  }
  // A list entry matches any end of the path, so BERT's "output.dense" would make a targeted
  // attention.output.dense feed-forward too: then a regular expression says it exactly.
  bool ff_exact = true;
  for (auto w : ff)
    for (auto other : ws) {
      const std::string name = target_name(n, w), p = sub_path(n, other);
      if (!has(ff, other) && p.size() >= name.size() && p.compare(p.size() - name.size(), name.size(), name) == 0)
        ff_exact = false;
    }
  if (!ff_exact) {
    out["feedforward_modules"] = sites_regex(n, ff, layers, true);
  } else {
    nlohmann::json names = nlohmann::json::array();
    for (auto w : ff) names.push_back(target_name(n, w));
    out["feedforward_modules"] = names;
  }
  out.erase("layers_to_transform");
  out["exclude_modules"] = nullptr;
  out["fan_in_fan_out"] = false;
  out["init_ia3_weights"] = true;
  out["modules_to_save"] = nullptr;
  out["revision"] = nullptr;
}


/// Hugging Face PROMPT_TUNING config → peft's prompt_tuning config fields (the names are the
/// same; the encoder shape is added when the folder records none).
inline nlohmann::json prompt_tuning_from_hf(const nlohmann::json& in, const encoder_shape& shape,
                                            const std::string& where) {
  refuse_unknown_fields(in,
                        {"num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads",
                         "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
                         "modules_to_save"},
                        "prompt tuning", where);
  const auto& sub = field_or_null(in, "num_transformer_submodules");
  if (!sub.is_null() && !(sub.is_number_integer() && sub.get<index>() == 1))
    refuse_field(where, "num_transformer_submodules",
                 "expected 1 (an encoder has one prompt; 2 is an encoder-decoder's), got " + sub.dump());
  check_modules_to_save(field_or_null(in, "modules_to_save"), where);
  nlohmann::json out = in;
  // Hugging Face writes the encoder's layer count as num_layers; the other shape fields come
  // from the encoder at hand when the folder is not peft's.
  if (!in.contains("model_type")) {
    const auto layers = field_or_null(in, "num_layers");
    write_shape_fields(out, shape);
    if (layers.is_number_integer()) out["num_layers"] = layers;
  }
  return out;
}

/// peft's prompt_tuning config → Hugging Face's: the names are the same; the fields only
/// Hugging Face writes are added. A "TEXT" initialisation names its tokenizer (the model folder,
/// as Hugging Face refuses "TEXT" without one); with no model folder known it is recorded as
/// "RANDOM": a saved prompt is loaded, never initialised, so only the record changes.
inline void prompt_tuning_to_hf(nlohmann::json& out, const std::string& base_model) {
  const bool text = out.value("prompt_tuning_init", "") == "TEXT";
  if (text && base_model.empty()) out["prompt_tuning_init"] = "RANDOM";
  out["tokenizer_name_or_path"] = text && !base_model.empty() ? nlohmann::json(base_model) : nlohmann::json(nullptr);
  out["tokenizer_kwargs"] = nullptr;
  out["modules_to_save"] = nullptr;
  out["revision"] = nullptr;
}


/// Hugging Face PREFIX_TUNING config → peft's prefix_tuning config fields: the names are the
/// same; the text's positions follow the prefix (position_offset), as Hugging Face's BERT
/// runs it, and the saved table is the prefix itself (inference_mode).
inline nlohmann::json prefix_tuning_from_hf(const nlohmann::json& in, const encoder_shape& shape,
                                            const std::string& where) {
  refuse_unknown_fields(in,
                        {"num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads",
                         "encoder_hidden_size", "prefix_projection", "modules_to_save"},
                        "prefix tuning", where);
  const auto& sub = field_or_null(in, "num_transformer_submodules");
  if (!sub.is_null() && !(sub.is_number_integer() && sub.get<index>() == 1))
    refuse_field(where, "num_transformer_submodules",
                 "expected 1 (an encoder has one prefix; 2 is an encoder-decoder's), got " + sub.dump());
  for (const char* k : {"token_dim", "num_attention_heads"}) {
    const auto& v = field_or_null(in, k);
    const index want = std::string(k) == "token_dim" ? shape.hidden_size : shape.num_heads;
    if (!v.is_null() && !(v.is_number_integer() && v.get<index>() == want))
      refuse_field(where, k, "expected " + std::to_string(want) + " (the encoder's), got " + v.dump());
  }
  check_modules_to_save(field_or_null(in, "modules_to_save"), where);
  nlohmann::json out = in;
  if (!in.contains("model_type")) {  // Hugging Face's own: the encoder at hand
    const auto layers = field_or_null(in, "num_layers");
    write_shape_fields(out, shape);
    if (layers.is_number_integer()) out["num_layers"] = layers;  // checked against the encoder next
  }
  if (!out.contains("prefix_projection") || out["prefix_projection"].is_null()) out["prefix_projection"] = false;
  if (!out.contains("encoder_hidden_size") || out["encoder_hidden_size"].is_null())
    out["encoder_hidden_size"] = shape.hidden_size;
  out["position_offset"] = true;
  out["inference_mode"] = true;
  return out;
}

/// peft's prefix_tuning config (with position_offset) → Hugging Face's.
inline void prefix_tuning_to_hf(nlohmann::json& out) {
  out.erase("prefix_layout");
  out.erase("position_offset");
  out["inference_mode"] = true;
  out["modules_to_save"] = nullptr;
  out["revision"] = nullptr;
}

}  // namespace hf

PEFT_HF_API nlohmann::json to_saved_config(const nlohmann::json& native, const hf_save_info& info) {
  nlohmann::json out = native;
  nlohmann::json own = {{"version", version_string}};
  const std::string type = native.value("peft_type", "");
  // Prefix-tuning is written in Hugging Face's layout only when it computes what Hugging Face
  // computes (the text's positions after the prefix); otherwise it stays in peft's own form.
  const bool prefix_as_hf = type == "PREFIX_TUNING" && native.value("position_offset", false);
  const bool prompt_learning = type == "PROMPT_TUNING" || type == "PREFIX_TUNING";
  if (type == "LORA" || type == "IA3" || type == "PROMPT_TUNING" || prefix_as_hf) {
    for (const char* k : hf::shape_keys)
      if (out.contains(k)) {
        own[k] = out[k];
        // Prompt learning's configs have a num_layers of their own (the same number).
        if (!prompt_learning || std::string(k) != "num_layers") out.erase(k);
      }
    if (type == "LORA") {
      hf::lora_to_hf(native, out);
    } else if (type == "IA3") {
      hf::ia3_to_hf(native, out);
    } else if (type == "PROMPT_TUNING") {
      hf::prompt_tuning_to_hf(out, info.base_model_name_or_path);
    } else {
      hf::prefix_tuning_to_hf(out);
    }
    // As save_pretrained writes it (another method's field of that name is its own).
    out["inference_mode"] = true;
  }
  out["base_model_name_or_path"] = info.base_model_name_or_path.empty()
                                       ? nlohmann::json(nullptr)
                                       : nlohmann::json(info.base_model_name_or_path);
  out["task_type"] = info.task_type.empty() ? nlohmann::json(nullptr) : nlohmann::json(info.task_type);
  out[peft_cpp_key] = own;
  return out;
}

PEFT_HF_API std::string recorded_digest(const nlohmann::json& cfg, const std::string& where) {
  const nlohmann::json* v = nullptr;
  const auto own = cfg.find(peft_cpp_key);
  if (own != cfg.end() && own->is_object() && own->contains(hf::digest_key)) v = &own->at(hf::digest_key);
  if (!v && cfg.contains(hf::legacy_digest_key)) v = &cfg.at(hf::legacy_digest_key);
  if (!v) return "";
  if (!v->is_string())
    throw io_error(where + ": field '" + hf::digest_key + "' expected a string, got " + v->type_name());
  return v->get<std::string>();
}

PEFT_HF_API void split_saved_modules(const nlohmann::json& cfg, std::map<std::string, tensor>& tensors,
                                     std::map<std::string, tensor>& modules) {
  const auto ms = cfg.find("modules_to_save");
  if (ms == cfg.end() || !ms->is_array()) return;
  for (auto it = tensors.begin(); it != tensors.end();) {
    const std::string k = hf::without_base_model(it->first);
    bool moved = false;
    for (const auto& e : *ms) {
      if (!e.is_string()) continue;
      const std::string m = e.get<std::string>();
      if (m != "classifier" && m != "score") continue;  // other modules stay, and are refused
      if (k.compare(0, m.size() + 1, m + ".") != 0) continue;
      std::string rest = k.substr(m.size() + 1);
      const std::string wrap = "modules_to_save.default.";  // the in-memory name, should a file hold it
      if (rest.compare(0, wrap.size(), wrap) == 0) rest = rest.substr(wrap.size());
      modules["classifier." + rest] = std::move(it->second);
      moved = true;
      break;
    }
    it = moved ? tensors.erase(it) : std::next(it);
  }
}

PEFT_HF_API nlohmann::json to_native(const nlohmann::json& file_cfg, std::map<std::string, tensor>& tensors,
                                     const encoder_shape& shape, std::map<std::string, tensor>& modules,
                                     const std::string& where) {
  split_saved_modules(file_cfg, tensors, modules);
  nlohmann::json cfg = file_cfg;
  const auto own = cfg.find(peft_cpp_key);
  if (own != cfg.end()) {
    if (!own->is_object())
      throw invalid_argument(where + ": field '" + peft_cpp_key + "' expected an object, got " +
                             own->dump().substr(0, 80));
    for (const char* k : hf::shape_keys)
      if (own->contains(k) && !cfg.contains(k)) cfg[k] = own->at(k);
  }
  const auto pt = cfg.find("peft_type");
  const std::string type = pt != cfg.end() && pt->is_string() ? pt->get<std::string>() : "";
  if (type == "PROMPT_TUNING") {
    nlohmann::json native = hf::prompt_tuning_from_hf(cfg, shape, where);
    check_config_header(native, "PROMPT_TUNING", shape, where);
    return native;
  }
  // A prefix folder in peft's own form records its encoder at the top level; one in Hugging
  // Face's layout (written by it, or by peft under peft_cpp) does not.
  if (type == "PREFIX_TUNING" && !file_cfg.contains("model_type")) {
    nlohmann::json native = hf::prefix_tuning_from_hf(cfg, shape, where);
    check_config_header(native, "PREFIX_TUNING", shape, where);
    return native;
  }
  if (type != "LORA" && type != "IA3") return cfg;

  // Key layout: "base_model.model." or not, then the model's prefix ("bert.": a *For... model)
  // or not (a *Model: encoder.layer.<i>...).
  const std::string model_prefix = hf_model_prefix(shape.model_type);
  const std::string stem = hf_layer_names_of(shape.model_type).stem;
  const std::string base = "base_model.model.";
  const auto strip_base = hf::without_base_model;
  bool bare_model = false;
  for (const auto& kv : tensors)
    if (strip_base(kv.first).compare(0, stem.size(), stem) == 0) bare_model = true;
  const std::string prefix = bare_model ? "" : model_prefix;
  nlohmann::json native = type == "LORA" ? hf::lora_from_hf(cfg, shape, prefix, where)
                                         : hf::ia3_from_hf(cfg, shape, prefix, where);
  check_config_header(native, type.c_str(), shape, where);  // a folder for another encoder: say so first
  const std::vector<std::string> suffixes =
      type == "LORA" ? std::vector<std::string>{".lora_A.weight", ".lora_B.weight"} : std::vector<std::string>{".ia3_l"};
  const char* method = type == "LORA" ? "a LoRA" : "an (IA)3 vector";

  std::map<std::string, tensor> renamed;
  for (auto& kv : tensors) {
    const std::string k = strip_base(kv.first);
    std::string module, suffix;
    for (const std::string& sfx : suffixes) {
      if (k.size() > sfx.size() && k.compare(k.size() - sfx.size(), sfx.size(), sfx) == 0) {
        module = k.substr(0, k.size() - sfx.size());
        suffix = sfx;
      }
    }
    if (!module.empty()) {
      if (module.compare(0, stem.size(), stem) == 0) module = model_prefix + module;
      if (module.compare(0, model_prefix.size() + stem.size(), model_prefix + stem) != 0)
        throw invalid_argument(where + ": tensor '" + kv.first + "' is " + method + " on module '" + module +
                               "', expected one of the encoder's linears (" +
                               hf::linear_paths_text(model_prefix, hf_layer_names_of(shape.model_type)) +
                               "): peft puts " + method + " on those only");
      renamed.emplace(base + module + suffix, std::move(kv.second));
      continue;
    }
    renamed.emplace(kv.first, std::move(kv.second));  // reported by the policy as unexpected
  }
  tensors = std::move(renamed);
  return native;
}

}  // namespace peft::detail

#endif  // PEFT_IO_DETAIL_HF_PEFT_IMPL_HPP
