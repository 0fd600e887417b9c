// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_ADAPTERHUB_HPP
#define PEFT_IO_ADAPTERHUB_HPP

/// @file adapterhub.hpp
/// Bottleneck adapters, their prediction heads and AdapterFusion layers in the folders
/// AdapterHub's `adapters` library (1.x) writes with `save_adapter(..., use_safetensors=True)`
/// and `save_adapter_fusion`, both ways. The facts are in docs/hf_peft_adapterhub.md, section B.
///
/// An adapter folder holds `adapter_config.json` (top-level `config`, `hidden_size`,
/// `model_class`, `model_name`, `model_type`, `name`, `version`) and `adapter.safetensors`
/// with keys `[bert.]encoder.layer.<i>.{attention.output|output}.adapters.<name>.
/// {adapter_down.0,adapter_up}.{weight,bias}` (the model prefix present or not, as AdapterHub's
/// loader accepts both). Reading maps the nested bottleneck config onto `bottleneck_config`:
///  - `mh_adapter` / `output_adapter` → the location (attention output, FFN output, both);
///  - `reduction_factor` (a number, or a map holding only `"default"`) → the bottleneck size
///    `int(hidden // reduction_factor)`, at least 1; `leave_out` → the layers not adapted;
///  - `non_linearity` (lower-cased, as AdapterHub does): relu, swish / silu, gelu (exact),
///    gelu_new (tanh form), and for a file without `version` the legacy names (gelu → tanh
///    form, gelu_orig → exact);
///  - `scaling` (a number), `original_ln_before`, `residual_before_ln` (true or false);
///  - `original_ln_after` must be true and `ln_before`, `ln_after`, `is_parallel`, `use_gating`,
///    `phm_layer`, `cross_adapter`, `inv_adapter` unset, `residual_before_ln` not "post_add",
///    `scaling` not "learned" / "channel": anything else is refused by name, as is any field
///    this reader does not know that holds a value. Fields that only steer training or
///    initialisation (`dropout`, `init_weights`, `stochastic_depth`, the PHM settings of a
///    non-PHM adapter) are accepted and not used.
/// The weights must be safetensors: a folder with only the torch pickle `pytorch_adapter.bin`
/// is refused with the way to convert it.
///
/// Heads (`head_config.json` + `model_head.safetensors`): a static transformers head
/// (`config` null, `classifier.weight` / `.bias`: BertForSequenceClassification's, read through
/// BERT's pooler) and a flex classification head (`heads.<name>.<i>.*`, on token 0 or, with
/// `use_pooler`, the pooler) with one layer, or two with tanh between them (AdapterHub's
/// default), become peft's classification head (task/heads.hpp: `classifier.*`, or
/// `classifier.dense.*` + `classifier.out_proj.*`), with the labels from `label2id`. Other
/// head types, depths and activations are refused by name.
///
/// AdapterFusion (`adapter_fusion_config.json` + `model_adapter_fusion.safetensors`, keys
/// `[bert.]encoder.layer.<i>.output.adapter_fusion_layer.<a,b>.{query,key,value}.*`): the
/// fused adapters are read from the folders named after them next to the fusion folder (the
/// layout `save_all_adapters` / `save_adapter_fusion` give), or from folders the caller names.
///
/// Writing produces the same files (configs with every field AdapterHub's dataclasses write,
/// keys sorted, `version` "adapters.1.2.0" — the format followed — and peft's own record under
/// `"peft_cpp"`, a top-level key AdapterHub's loader does not read); keys without the model
/// prefix and `model_class` `<Model>Model`, or with the prefix and
/// `<Model>ForSequenceClassification` when a head is written. Only what AdapterHub can compute
/// is written: an adapter after the hidden dropout, with biases, a non-linearity AdapterHub
/// names, a bottleneck size some reduction factor gives, on a BERT, RoBERTa, XLM-R or ELECTRA
/// encoder (their adapters sit at BERT's module paths; DistilBERT's and ALBERT's do not).

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "../core/encoder_shape.hpp"
#include "../core/file_util.hpp"
#include "../core/hf_names.hpp"
#include "../error.hpp"
#include "../policies/adapter_fusion.hpp"
#include "../policies/bottleneck_adapter.hpp"
#include "../policies/policy_tensors.hpp"
#include "../version.hpp"
#include "adapter_checkpoint.hpp"
#include "atomic_folder.hpp"
#include "safetensors.hpp"

namespace peft {

inline constexpr const char* adapterhub_config_file = adapter_config_file;  // the same name as HF PEFT's
inline constexpr const char* adapterhub_weights_file = "adapter.safetensors";
inline constexpr const char* adapterhub_pickle_file = "pytorch_adapter.bin";
inline constexpr const char* adapterhub_head_config_file = "head_config.json";
inline constexpr const char* adapterhub_head_weights_file = "model_head.safetensors";
inline constexpr const char* adapterhub_fusion_config_file = "adapter_fusion_config.json";
inline constexpr const char* adapterhub_fusion_weights_file = "model_adapter_fusion.safetensors";
/// The `version` written: the `adapters` release whose format these files follow.
inline constexpr const char* adapterhub_format_version = "adapters.1.2.0";

/// A classification head as an AdapterHub folder holds it, in peft's terms.
struct adapterhub_head {
  std::vector<std::string> labels;              ///< class names in class order (from label2id)
  std::string pooling;                          ///< "cls" (token 0) or "pooler" (BERT's pooler)
  std::map<std::string, tensor> tensors;        ///< classifier.weight [classes x H], classifier.bias
};

/// What `save_adapterhub` records about the model.
struct adapterhub_save_info {
  std::string model_name;  ///< `model_name` (the model folder or hub name); empty: null
};

/// True for an AdapterHub adapter_config.json: a nested `config` object and no `peft_type`.
inline bool is_adapterhub_config(const nlohmann::json& cfg) {
  return cfg.is_object() && !cfg.contains("peft_type") && cfg.contains("config") && cfg["config"].is_object();
}

/// True when @p dir holds an AdapterFusion folder (adapter_fusion_config.json).
inline bool is_adapterhub_fusion_folder(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(dir) / adapterhub_fusion_config_file, ec);
}

namespace detail {

/// Field @p k of @p j, or null: compared as JSON, so a field of the wrong type is a mismatch, not a throw.
inline nlohmann::json field_of(const nlohmann::json& j, const char* k) {
  return j.is_object() && j.contains(k) ? j[k] : nlohmann::json();
}

/// The model-class stem AdapterHub's classes use for a model type ("Bert", "XLMRoberta"); empty
/// for an encoder whose adapters peft does not write in AdapterHub's layout.
inline std::string adapterhub_class_stem(const std::string& model_type) {
  if (model_type == "bert") return "Bert";
  if (model_type == "roberta") return "Roberta";
  if (model_type == "xlm-roberta") return "XLMRoberta";
  if (model_type == "electra") return "Electra";
  return "";
}

/// Why AdapterHub folders are not written for @p model_type (adapterhub_class_stem is empty).
inline std::string adapterhub_refusal(const std::string& model_type) {
  if (model_type == "distilbert" || model_type == "albert")
    return "AdapterHub keeps a " + model_type + " encoder's adapters under module names of its own (" +
           (model_type == "albert" ? std::string("one shared layer per group")
                                   : std::string("transformer.layer.<i>.attention_adapters / output_adapters")) +
           "), which peft neither reads nor writes yet; save the adapter in peft's own format";
  return "AdapterHub has no model class for a " + model_type + " encoder";
}

/// Strips a leading model prefix ("bert.", "roberta.", any one segment) from a key that
/// continues with "encoder.layer.".
inline std::string without_model_prefix(const std::string& key) {
  if (key.compare(0, 14, "encoder.layer.") == 0) return key;
  const auto dot = key.find('.');
  if (dot != std::string::npos && key.compare(dot + 1, 14, "encoder.layer.") == 0) return key.substr(dot + 1);
  return key;
}

/// The tensors of an AdapterHub weights file, the model prefix removed.
inline std::map<std::string, tensor> read_adapterhub_weights(const std::string& dir, const char* file,
                                                             const std::string& where) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto path = fs::path(dir) / file;
  if (!fs::exists(path, ec)) {
    const std::string pickle = std::string(file) == adapterhub_weights_file ? adapterhub_pickle_file
                               : std::string(file) == adapterhub_head_weights_file
                                   ? "pytorch_model_head.bin"
                                   : "pytorch_model_adapter_fusion.bin";
    if (fs::exists(fs::path(dir) / pickle, ec))
      throw io_error(where + ": '" + dir + "' holds its weights as the torch pickle '" + pickle +
                     "', which peft does not read (unpickling runs code); convert it to '" + file +
                     "' (AdapterHub: model.save_adapter(dir, name, use_safetensors=True), or "
                     "safetensors.torch.save_file(torch.load(path), '" + file + "'))");
    throw io_error(where + ": '" + path.string() + "' missing (expected AdapterHub's safetensors weights)");
  }
  const auto f = safetensors_file::open(path.string());
  std::map<std::string, tensor> out;
  for (const auto& name : f.names()) {
    const std::string key = without_model_prefix(name);
    if (!out.emplace(key, f.load(name)).second)
      throw invalid_argument(where + ": tensor '" + key + "' appears both with and without the model prefix");
  }
  return out;
}

/// Refuses @p key of @p c when its value is not one of the values peft computes with.
inline void adapterhub_refuse(const nlohmann::json& c, const char* key, const nlohmann::json& ok,
                              const std::string& where, const std::string& why) {
  if (c.contains(key) && c[key] != ok)
    throw invalid_argument(where + ": config field '" + key + "' expected " + ok.dump() + ", got " + c[key].dump() +
                           " (" + why + ")");
}

/// The peft bottleneck_config (as `bottleneck_adapter::config_json()` writes it) for an
/// AdapterHub adapter_config.json @p file on an encoder of shape @p shape.
inline nlohmann::json adapterhub_to_native(const nlohmann::json& file, const encoder_shape& shape,
                                           const std::string& where) {
  const auto& c = file.at("config");
  if (c.contains("architecture") && !c["architecture"].is_null() && c["architecture"] != "bottleneck")
    throw invalid_argument(where + ": config field 'architecture' is " + c["architecture"].dump() +
                           "; peft reads AdapterHub's bottleneck adapters (no architecture, or \"bottleneck\")");
  for (const char* k : {"mh_adapter", "output_adapter", "reduction_factor", "non_linearity"})
    if (!c.contains(k)) throw invalid_argument(where + ": config field '" + std::string(k) + "' missing");
  if (!file.contains("model_type") || !file["model_type"].is_string())
    throw invalid_argument(where + ": field 'model_type' expected a string, got " +
                           (file.contains("model_type") ? file["model_type"].dump() : std::string("nothing")));
  const std::string model_type = file["model_type"].get<std::string>();
  if (model_type != shape.model_type)
    throw invalid_argument(where + ": field 'model_type' is \"" + model_type + "\" but the encoder is \"" +
                           shape.model_type + "\"");
  if (adapterhub_class_stem(model_type).empty()) throw invalid_argument(where + ": " + adapterhub_refusal(model_type));
  if (file.contains("hidden_size") && file["hidden_size"].is_number_integer() &&
      file["hidden_size"].get<index>() != shape.hidden_size)
    throw invalid_argument(where + ": field 'hidden_size' is " + file["hidden_size"].dump() + " but the encoder's is " +
                           std::to_string(shape.hidden_size));
  if (!file.contains("name") || !file["name"].is_string())
    throw invalid_argument(where + ": field 'name' expected the adapter's name, got " +
                           (file.contains("name") ? file["name"].dump() : std::string("nothing")));

  const std::string why = "peft's bottleneck computes LN(h + A + x) with the block's own LayerNorm";
  adapterhub_refuse(c, "original_ln_after", true, where, why);
  adapterhub_refuse(c, "ln_before", false, where, "no LayerNorm inside the adapter");
  adapterhub_refuse(c, "ln_after", false, where, "no LayerNorm inside the adapter");
  adapterhub_refuse(c, "is_parallel", false, where, "parallel adapters are not implemented");
  adapterhub_refuse(c, "use_gating", false, where, "gated adapters are not implemented");
  adapterhub_refuse(c, "phm_layer", false, where, "Compacter / PHM layers are not implemented");
  adapterhub_refuse(c, "cross_adapter", false, where, "cross adapters are not implemented");
  adapterhub_refuse(c, "inv_adapter", nullptr, where, "invertible adapters are not implemented");
  if (c.contains("residual_before_ln") && !c["residual_before_ln"].is_boolean())
    throw invalid_argument(where + ": config field 'residual_before_ln' expected true or false, got " +
                           c["residual_before_ln"].dump() + " (\"post_add\" is not implemented)");
  if (c.contains("scaling") && !c["scaling"].is_number())
    throw invalid_argument(where + ": config field 'scaling' expected a number, got " + c["scaling"].dump() +
                           " (learned scaling is not implemented)");
  static const char* const known[] = {
      "architecture", "mh_adapter", "output_adapter", "reduction_factor", "non_linearity", "original_ln_before",
      "original_ln_after", "residual_before_ln", "adapter_residual_before_ln", "ln_before", "ln_after",
      "init_weights", "init_weights_seed", "is_parallel", "scaling", "use_gating", "inv_adapter",
      "inv_adapter_reduction_factor", "cross_adapter", "leave_out", "dropout", "phm_layer", "phm_dim",
      "factorized_phm_W", "shared_W_phm", "shared_phm_rule", "factorized_phm_rule", "phm_c_init", "phm_init_range",
      "learn_phm", "hypercomplex_nonlinearity", "phm_rank", "phm_bias", "stochastic_depth"};
  for (const auto& kv : c.items()) {
    bool is_known = false;
    for (const char* k : known) is_known = is_known || kv.key() == k;
    const auto& v = kv.value();
    const bool empty = v.is_null() || v == false || (v.is_array() && v.empty()) || (v.is_object() && v.empty());
    if (!is_known && !empty)
      throw invalid_argument(where + ": config field '" + kv.key() + "' (" + v.dump() +
                             ") is not one peft reads; refusing rather than computing something else");
  }

  const bool mh = c["mh_adapter"] == true, out = c["output_adapter"] == true;
  if (!c["mh_adapter"].is_boolean() || !c["output_adapter"].is_boolean() || (!mh && !out))
    throw invalid_argument(where + ": config fields 'mh_adapter' / 'output_adapter' expected booleans, at least one "
                           "true, got " + c["mh_adapter"].dump() + " / " + c["output_adapter"].dump());
  double rf = 0;
  const auto& r = c["reduction_factor"];
  if (r.is_number()) {
    rf = r.get<double>();
  } else if (r.is_object() && r.size() == 1 && r.contains("default") && r["default"].is_number()) {
    rf = r["default"].get<double>();
  } else {
    throw invalid_argument(where + ": config field 'reduction_factor' expected a number (or {\"default\": x}), got " +
                           r.dump() + " (per-layer reduction factors are not implemented)");
  }
  if (!(rf > 0) || !std::isfinite(rf))
    throw invalid_argument(where + ": config field 'reduction_factor' expected > 0, got " + r.dump());
  if (!c["non_linearity"].is_string())
    throw invalid_argument(where + ": config field 'non_linearity' expected a string, got " + c["non_linearity"].dump());
  std::string act = c["non_linearity"].get<std::string>();
  for (auto& ch : act) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!file.contains("version")) {  // files of adapter-transformers before the rename
    if (act == "gelu") {
      act = "gelu_new";
    } else if (act == "gelu_orig") {
      act = "gelu";
    }
  }
  std::string native_act;
  if (act == "relu") native_act = "relu";
  if (act == "swish" || act == "silu") native_act = "swish";
  if (act == "gelu") native_act = "gelu";
  if (act == "gelu_new") native_act = "gelu_new";
  if (native_act.empty())
    throw invalid_argument(where + ": config field 'non_linearity' is \"" + act +
                           "\"; peft's adapters compute relu, swish / silu, gelu and gelu_new");
  std::vector<index> layers;
  std::vector<bool> left(static_cast<std::size_t>(shape.num_layers), false);
  if (c.contains("leave_out") && !c["leave_out"].is_null()) {
    if (!c["leave_out"].is_array())
      throw invalid_argument(where + ": config field 'leave_out' expected a list of layers, got " + c["leave_out"].dump());
    for (const auto& v : c["leave_out"]) {
      if (!v.is_number_integer() || v.get<index>() < 0 || v.get<index>() >= shape.num_layers)
        throw invalid_argument(where + ": config field 'leave_out' expected layers in [0, " +
                               std::to_string(shape.num_layers) + "), got " + v.dump());
      left[static_cast<std::size_t>(v.get<index>())] = true;
    }
  }
  bool any = false;
  for (index l = 0; l < shape.num_layers; ++l)
    if (!left[static_cast<std::size_t>(l)]) layers.push_back(l);
  any = !layers.empty();
  if (!any) throw invalid_argument(where + ": config field 'leave_out' leaves out every layer");
  if (static_cast<index>(layers.size()) == shape.num_layers) layers.clear();  // every layer

  const double scaling = c.contains("scaling") ? c["scaling"].get<double>() : 1.0;
  for (const char* k : {"original_ln_before", "residual_before_ln"})
    if (c.contains(k) && !c[k].is_boolean())
      throw invalid_argument(where + ": config field '" + std::string(k) + "' expected true or false, got " +
                             c[k].dump());
  nlohmann::json n;
  n["peft_type"] = "BOTTLENECK_ADAPTER";
  n["bottleneck_size"] = 0;
  n["reduction_factor"] = rf;
  n["location"] = mh && out ? "both" : mh ? "attention" : "ffn";
  n["layers"] = layers;
  n["placement"] = "post_dropout";
  n["non_linearity"] = native_act;
  n["bias"] = true;
  n["init_weights"] = "normal";
  n["init_std"] = 0.02;  // AdapterHub's "bert" init
  n["adapter_name"] = file["name"];
  n["scaling"] = scaling;
  n["original_ln_before"] = c.value("original_ln_before", false);
  n["residual_before_ln"] = c.value("residual_before_ln", true);
  write_shape_fields(n, shape);
  return n;
}

/// AdapterHub's adapter_config.json `config` for a peft bottleneck config @p n (config_json()).
/// @throws invalid_argument naming what AdapterHub cannot compute
inline nlohmann::json adapterhub_from_native(const nlohmann::json& n, const encoder_shape& shape,
                                             const std::string& where) {
  if (n.value("placement", "") != "post_dropout")
    throw invalid_argument(where + ": AdapterHub adapters run after the hidden dropout; this adapter's placement is " +
                           n.value("placement", std::string("?")));
  if (n.value("bias", false) != true)
    throw invalid_argument(where + ": AdapterHub adapters have biases; this adapter has none (LiST's linear adapter)");
  const std::string act = n.value("non_linearity", std::string());
  if (act != "relu" && act != "swish" && act != "gelu" && act != "gelu_new")
    throw invalid_argument(where + ": non_linearity \"" + act + "\" has no AdapterHub name");
  for (index w : shape.output_width)
    if (w != shape.hidden_size)
      throw invalid_argument(where + ": AdapterHub adapters need every layer " + std::to_string(shape.hidden_size) +
                             " wide");
  double rf = n.value("reduction_factor", 0.0);
  const index m = n.value("bottleneck_size", index{0});
  const index H = shape.hidden_size;
  if (m > 0) {
    // AdapterHub stores a reduction factor: write one that gives m exactly.
    if (H % m != 0)
      throw invalid_argument(where + ": bottleneck size " + std::to_string(m) + " does not divide the width " +
                             std::to_string(H) + " (AdapterHub stores a reduction factor, int(width // factor))");
    rf = static_cast<double>(H / m);
  }
  const std::string loc = n.value("location", std::string());
  nlohmann::json leave = nlohmann::json::array();
  const auto layers = n.value("layers", std::vector<index>{});
  if (!layers.empty())
    for (index l = 0; l < shape.num_layers; ++l)
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) leave.push_back(l);
  // Every field of AdapterHub's BnConfig, as its asdict() writes them.
  nlohmann::json c = {{"adapter_residual_before_ln", false},
                      {"cross_adapter", false},
                      {"dropout", 0.0},
                      {"factorized_phm_W", true},
                      {"factorized_phm_rule", false},
                      {"hypercomplex_nonlinearity", "glorot-uniform"},
                      {"init_weights", "bert"},
                      {"init_weights_seed", nullptr},
                      {"inv_adapter", nullptr},
                      {"inv_adapter_reduction_factor", nullptr},
                      {"is_parallel", false},
                      {"learn_phm", true},
                      {"leave_out", leave},
                      {"ln_after", false},
                      {"ln_before", false},
                      {"mh_adapter", loc == "attention" || loc == "both"},
                      {"non_linearity", act},
                      {"original_ln_after", true},
                      {"original_ln_before", n.value("original_ln_before", false)},
                      {"output_adapter", loc == "ffn" || loc == "both"},
                      {"phm_bias", true},
                      {"phm_c_init", "normal"},
                      {"phm_dim", 4},
                      {"phm_init_range", 0.0001},
                      {"phm_layer", false},
                      {"phm_rank", 1},
                      {"reduction_factor", rf},
                      {"residual_before_ln", n.value("residual_before_ln", true)},
                      {"scaling", n.value("scaling", 1.0)},
                      {"shared_W_phm", false},
                      {"shared_phm_rule", true},
                      {"stochastic_depth", 0.0},
                      {"use_gating", false}};
  return c;
}

/// The top-level fields every AdapterHub config file carries.
inline nlohmann::json adapterhub_header(const encoder_shape& shape, const std::string& model_class,
                                        const std::string& name, const adapterhub_save_info& info) {
  nlohmann::json j;
  j["hidden_size"] = shape.hidden_size;
  j["model_class"] = model_class;
  j["model_name"] = info.model_name.empty() ? nlohmann::json(nullptr) : nlohmann::json(info.model_name);
  j["model_type"] = shape.model_type;
  j["name"] = name;
  j["version"] = adapterhub_format_version;
  j[peft_cpp_key] = {{"version", version_string}};  // peft's own record; AdapterHub's loader does not read it
  return j;
}

}  // namespace detail

/// Loads the bottleneck adapter of an AdapterHub folder @p dir for an encoder of shape @p shape.
/// @throws io_error for a missing or malformed file (a pickle-only folder: how to convert it);
///   invalid_argument naming the config field or tensor peft cannot honour
template <typename Scalar = float>
bottleneck_adapter<Scalar> load_adapterhub_adapter(const std::string& dir, const encoder_shape& shape) {
  const std::string cfg_path = (std::filesystem::path(dir) / adapterhub_config_file).string();
  const std::string where = "load_adapterhub_adapter: '" + cfg_path + "'";
  const nlohmann::json file = detail::read_json_object(cfg_path, "load_adapterhub_adapter");
  if (!is_adapterhub_config(file))
    throw invalid_argument(where + ": expected AdapterHub's layout (a nested \"config\" object, no peft_type)");
  auto a = bottleneck_adapter<Scalar>::from_config(detail::adapterhub_to_native(file, shape, where), shape);
  auto tensors = detail::read_adapterhub_weights(dir, adapterhub_weights_file, "load_adapterhub_adapter");
  set_policy_tensors(a, tensors, "load_adapterhub_adapter: '" + dir + "/" + adapterhub_weights_file + "'");
  return a;
}

/// The classification head an AdapterHub folder @p dir saves (head_config.json), if any.
/// @throws io_error / invalid_argument for a head peft cannot read, naming the field
inline std::optional<adapterhub_head> read_adapterhub_head(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string path = (fs::path(dir) / adapterhub_head_config_file).string();
  if (!fs::exists(path, ec)) return std::nullopt;
  const std::string where = "read_adapterhub_head: '" + path + "'";
  const nlohmann::json file = detail::read_json_object(path, "read_adapterhub_head");
  auto t = detail::read_adapterhub_weights(dir, adapterhub_head_weights_file, "read_adapterhub_head");
  adapterhub_head h;
  nlohmann::json label2id;
  std::map<std::string, tensor> mapped;
  if (!file.contains("config") || file["config"].is_null()) {
    // A static transformers head (e.g. BertForSequenceClassification): its own classifier over the pooler.
    label2id = detail::field_of(file, "label2id");
    h.pooling = "pooler";
    for (auto& kv : t) {
      if (kv.first != "classifier.weight" && kv.first != "classifier.bias")
        throw invalid_argument(where + ": tensor '" + kv.first +
                               "' is not a linear classifier's (classifier.weight / classifier.bias); peft's heads "
                               "are one linear layer");
      mapped.emplace(kv.first, std::move(kv.second));
    }
  } else {
    const auto& c = file["config"];
    if (detail::field_of(c, "head_type") != "classification")
      throw invalid_argument(where + ": config field 'head_type' expected \"classification\", got " +
                             (c.contains("head_type") ? c["head_type"].dump() : std::string("nothing")));
    const auto& layers = c.contains("layers") ? c["layers"] : nlohmann::json();
    if (layers != 1 && layers != 2)
      throw invalid_argument(where + ": config field 'layers' expected 1 or 2 (peft's head: a linear layer, or a "
                             "tanh hidden layer and a linear layer), got " + layers.dump());
    const bool two = layers == 2;
    if (two && detail::field_of(c, "activation_function") != "tanh")
      throw invalid_argument(where + ": config field 'activation_function' expected \"tanh\" with 2 layers, got " +
                             (c.contains("activation_function") ? c["activation_function"].dump() : "nothing"));
    if (c.contains("bias") && c["bias"] != true)
      throw invalid_argument(where + ": config field 'bias' expected true, got " + c["bias"].dump());
    h.pooling = detail::field_of(c, "use_pooler") == true ? "pooler" : "cls";
    label2id = detail::field_of(c, "label2id");
    if (!detail::field_of(file, "name").is_string())
      throw invalid_argument(where + ": field 'name' expected the head's name (its keys are heads.<name>.*), got " +
                             detail::field_of(file, "name").dump());
    // PredictionHead.build: Dropout, then per layer Linear (+ activation, Dropout before the next).
    const std::string pre = "heads." + file.value("name", std::string()) + ".";
    const std::map<std::string, std::string> names =
        two ? std::map<std::string, std::string>{{pre + "1.weight", "classifier.dense.weight"},
                                                 {pre + "1.bias", "classifier.dense.bias"},
                                                 {pre + "4.weight", "classifier.out_proj.weight"},
                                                 {pre + "4.bias", "classifier.out_proj.bias"}}
            : std::map<std::string, std::string>{{pre + "1.weight", "classifier.weight"},
                                                 {pre + "1.bias", "classifier.bias"}};
    for (auto& kv : t) {
      const auto it = names.find(kv.first);
      if (it == names.end())
        throw invalid_argument(where + ": tensor '" + kv.first + "' is not one of the " + layers.dump() +
                               "-layer head's (" + pre + (two ? "1.* and " + pre + "4.*)" : "1.*)"));
      mapped.emplace(it->second, std::move(kv.second));
    }
  }
  const std::string out = mapped.count("classifier.dense.weight") ? "classifier.out_proj." : "classifier.";
  for (const char* part : {"weight", "bias"})
    if (!mapped.count(out + part) || (out != "classifier." && !mapped.count(std::string("classifier.dense.") + part)))
      throw invalid_argument(where + ": the head's " + part + " is missing from '" + adapterhub_head_weights_file + "'");
  if (!label2id.is_object() || label2id.empty())
    throw invalid_argument(where + ": field 'label2id' expected the class names, got " + label2id.dump());
  h.labels.assign(label2id.size(), std::string());
  for (const auto& kv : label2id.items()) {
    if (!kv.value().is_number_integer() || kv.value().get<long long>() < 0 ||
        kv.value().get<long long>() >= static_cast<long long>(label2id.size()) ||
        !h.labels[kv.value().get<std::size_t>()].empty())
      throw invalid_argument(where + ": field 'label2id' expected ids 0.." + std::to_string(label2id.size() - 1) +
                             " once each, got " + label2id.dump());
    h.labels[kv.value().get<std::size_t>()] = kv.key();
  }
  if (mapped.at(out + "weight").shape.size() != 2 ||
      mapped.at(out + "weight").shape[0] != static_cast<std::int64_t>(h.labels.size()))
    throw invalid_argument(where + ": classifier weight expected " + std::to_string(h.labels.size()) +
                           " rows (one per label)");
  h.tensors = std::move(mapped);
  return h;
}

namespace detail {
inline std::map<std::string, tensor> with_model_prefix(const std::map<std::string, tensor>& t, const std::string& prefix) {
  std::map<std::string, tensor> out;
  for (const auto& kv : t) out.emplace(prefix + kv.first, kv.second);
  return out;
}
}  // namespace detail

/// Saves @p a as an AdapterHub folder @p dir (adapter_config.json + adapter.safetensors and,
/// with @p head, head_config.json + model_head.safetensors as a static transformers head for
/// "pooler" pooling or a one-layer flex head on token 0 for "cls"), replacing @p dir as one unit.
/// @throws invalid_argument naming what AdapterHub cannot compute (nothing is written);
///   io_error when writing fails (a previous save in @p dir is then unchanged)
template <typename Scalar>
void save_adapterhub_adapter(const std::string& dir, const bottleneck_adapter<Scalar>& a,
                             const adapterhub_save_info& info = {}, const adapterhub_head* head = nullptr) {
  const std::string where = "save_adapterhub_adapter: '" + dir + "'";
  const encoder_shape& shape = a.shape();
  const std::string stem = detail::adapterhub_class_stem(shape.model_type);
  if (stem.empty()) throw invalid_argument(where + ": " + detail::adapterhub_refusal(shape.model_type));
  const bool hidden = head && head->tensors.count("classifier.dense.weight") > 0;
  const bool static_head = head && head->pooling == "pooler" && !hidden;
  if (head && head->pooling != "pooler" && head->pooling != "cls")
    throw invalid_argument(where + ": the head's pooling is " + head->pooling +
                           "; AdapterHub's classification heads read token 0 or the pooler");
  const std::string model_class = !head ? stem + "Model" : static_head ? stem + "ForSequenceClassification"
                                                                       : stem + "AdapterModel";
  nlohmann::json file = detail::adapterhub_header(shape, model_class, a.config().adapter_name, info);
  file["config"] = detail::adapterhub_from_native(a.config_json(), shape, where);
  const std::string prefix = head ? detail::hf_model_prefix(shape.model_type) : "";
  const auto tensors = detail::with_model_prefix(policy_tensors(a), prefix);
  nlohmann::json head_file;
  std::map<std::string, tensor> head_tensors;
  if (head) {
    nlohmann::json label2id = nlohmann::json::object();
    for (std::size_t i = 0; i < head->labels.size(); ++i) label2id[head->labels[i]] = i;
    head_file = detail::adapterhub_header(shape, model_class, a.config().adapter_name, info);
    if (static_head) {
      head_file["config"] = nullptr;
      head_file["name"] = nullptr;  // AdapterHub's PredictionHeadLoader saves a static head without a name
      head_file["label2id"] = label2id;
      head_file["num_labels"] = head->labels.size();
      head_tensors = head->tensors;
    } else {
      head_file["config"] = {{"activation_function", hidden ? nlohmann::json("tanh") : nlohmann::json(nullptr)},
                             {"bias", true},
                             {"dropout_prob", nullptr},
                             {"head_type", "classification"},
                             {"label2id", label2id},
                             {"layers", hidden ? 2 : 1},
                             {"num_labels", head->labels.size()},
                             {"use_pooler", head->pooling == "pooler"}};
      const std::string pre = "heads." + a.config().adapter_name + ".";
      for (const auto& kv : head->tensors) {
        const std::string& k = kv.first;
        const std::string part = k.substr(k.rfind('.') + 1);  // weight / bias
        const bool dense = k.compare(0, 17, "classifier.dense.") == 0;
        head_tensors.emplace(pre + (dense ? "1." : hidden ? "4." : "1.") + part, kv.second);
      }
    }
  }
  save_folder_atomically(dir, adapterhub_config_file, [&](const std::string& staging) {
    namespace fs = std::filesystem;
    atomic_write((fs::path(staging) / adapterhub_config_file).string(), file.dump(2) + "\n");
    save_safetensors((fs::path(staging) / adapterhub_weights_file).string(), tensors);
    if (head) {
      atomic_write((fs::path(staging) / adapterhub_head_config_file).string(), head_file.dump(2) + "\n");
      save_safetensors((fs::path(staging) / adapterhub_head_weights_file).string(), head_tensors);
    }
  });
}

/// Loads an AdapterFusion folder @p dir: its fusion layers, and the fused adapters from
/// @p adapter_dirs, or, when that is empty, from the folders named after them next to @p dir.
/// @throws io_error / invalid_argument naming the file, field or tensor
template <typename Scalar = float>
adapter_fusion<Scalar> load_adapterhub_fusion(const std::string& dir, const encoder_shape& shape,
                                              std::vector<std::string> adapter_dirs = {}) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / adapterhub_fusion_config_file).string();
  const std::string where = "load_adapterhub_fusion: '" + path + "'";
  const nlohmann::json file = detail::read_json_object(path, "load_adapterhub_fusion");
  if (!file.contains("adapter_names") || !file["adapter_names"].is_array() || file["adapter_names"].empty())
    throw invalid_argument(where + ": field 'adapter_names' expected the fused adapters' names");
  std::vector<std::string> names;
  for (const auto& v : file["adapter_names"]) {
    if (!v.is_string()) throw invalid_argument(where + ": field 'adapter_names' expected strings, got " + v.dump());
    names.push_back(v.get<std::string>());
  }
  if (adapter_dirs.empty()) {
    const fs::path parent = fs::path(dir).lexically_normal().parent_path();
    for (const auto& n : names) adapter_dirs.push_back((parent / n).string());
  }
  if (adapter_dirs.size() != names.size())
    throw invalid_argument(where + ": " + std::to_string(names.size()) + " adapters fused, " +
                           std::to_string(adapter_dirs.size()) + " adapter folders given");
  const auto& c = file.contains("config") ? file["config"] : nlohmann::json();
  if (!c.is_object()) throw invalid_argument(where + ": field 'config' expected the fusion config object");
  adapter_fusion_config fc;
  auto flag = [&](const char* k, bool fallback) {
    if (!c.contains(k)) return fallback;
    if (!c[k].is_boolean())
      throw invalid_argument(where + ": config field '" + std::string(k) + "' expected a boolean, got " + c[k].dump());
    return c[k].get<bool>();
  };
  fc.query = flag("query", true);
  fc.key = flag("key", true);
  fc.value = flag("value", true);
  fc.value_initialized = flag("value_initialized", true);
  fc.regularization = flag("regularization", true);
  if (flag("query_before_ln", false))
    throw invalid_argument(where + ": config field 'query_before_ln' expected false (the query is the adapters' input)");
  if (flag("residual_before", false))
    throw invalid_argument(where + ": config field 'residual_before' expected false (not implemented)");
  if (flag("temperature", false))
    throw invalid_argument(where + ": config field 'temperature' expected false (the annealed temperature is "
                           "not implemented; peft's is fixed at 1)");
  if (!flag("value_before_softmax", true))
    throw invalid_argument(where + ": config field 'value_before_softmax' expected true (not implemented otherwise)");
  if (!fc.query && !fc.key && !fc.value)
    throw invalid_argument(where + ": config fields query, key and value all false (AdapterHub's single dense "
                           "scorer) are not implemented");
  fc.dropout = c.contains("dropout_prob") && c["dropout_prob"].is_number() ? c["dropout_prob"].get<double>() : 0.1;
  std::vector<std::shared_ptr<const bottleneck_adapter<Scalar>>> ads;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto a = std::make_shared<bottleneck_adapter<Scalar>>(load_adapterhub_adapter<Scalar>(adapter_dirs[i], shape));
    if (a->config().adapter_name != names[i])
      throw invalid_argument(where + ": adapter folder '" + adapter_dirs[i] + "' holds adapter '" +
                             a->config().adapter_name + "', expected '" + names[i] + "'");
    ads.push_back(std::move(a));
  }
  adapter_fusion<Scalar> f(shape, std::move(ads), fc, 0);
  auto t = detail::read_adapterhub_weights(dir, adapterhub_fusion_weights_file, "load_adapterhub_fusion");
  auto all = f.export_tensors();
  for (auto& kv : all)
    if (kv.first.find(".adapter_fusion_layer.") == std::string::npos) t.emplace(kv.first, kv.second);
  f.import_tensors(t);
  return f;
}

/// Saves @p f as AdapterHub does with `save_all_adapters` + `save_adapter_fusion`: each fused
/// adapter in `<parent>/<name>/` and the fusion in `<parent>/<a,b>/`.
template <typename Scalar>
void save_adapterhub_fusion(const std::string& parent, const adapter_fusion<Scalar>& f,
                            const adapterhub_save_info& info = {}) {
  namespace fs = std::filesystem;
  const std::string where = "save_adapterhub_fusion: '" + parent + "'";
  const encoder_shape& shape = f.shape();
  const std::string stem = detail::adapterhub_class_stem(shape.model_type);
  if (stem.empty()) throw invalid_argument(where + ": " + detail::adapterhub_refusal(shape.model_type));
  for (const auto& a : f.adapters()) (void)detail::adapterhub_from_native(a->config_json(), shape, where);
  for (const auto& a : f.adapters())
    save_adapterhub_adapter((fs::path(parent) / a->config().adapter_name).string(), *a, info);
  const auto& fc = f.config();
  nlohmann::json file = detail::adapterhub_header(shape, stem + "Model", f.fusion_name(), info);
  nlohmann::json names = nlohmann::json::array();
  for (const auto& a : f.adapters()) names.push_back(a->config().adapter_name);
  file["adapter_names"] = names;
  file["config"] = {{"dropout_prob", fc.dropout},
                    {"key", fc.key},
                    {"query", fc.query},
                    {"query_before_ln", false},
                    {"regularization", fc.regularization},
                    {"residual_before", false},
                    {"temperature", false},
                    {"value", fc.value},
                    {"value_before_softmax", true},
                    {"value_initialized", fc.value_initialized}};
  if (fc.temperature != 1.0)
    throw invalid_argument(where + ": temperature " + std::to_string(fc.temperature) +
                           " has no AdapterHub setting (its fixed temperature is 1)");
  std::map<std::string, tensor> t;
  for (auto& kv : store_tensors(f.parameters())) t.emplace(kv.first, std::move(kv.second));
  save_folder_atomically((fs::path(parent) / f.fusion_name()).string(), adapterhub_fusion_config_file,
                         [&](const std::string& staging) {
                           atomic_write((fs::path(staging) / adapterhub_fusion_config_file).string(),
                                        file.dump(2) + "\n");
                           save_safetensors((fs::path(staging) / adapterhub_fusion_weights_file).string(), t);
                         });
}

}  // namespace peft

#endif  // PEFT_IO_ADAPTERHUB_HPP
