// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_HF_PEFT_HPP
#define PEFT_IO_HF_PEFT_HPP

/// @file hf_peft.hpp
/// Adapter folders in the form Hugging Face PEFT writes and reads (`PeftModel.save_pretrained`,
/// `PeftModel.from_pretrained`), both ways.
///
/// Writing: `save_policy` passes a policy's own config (`config_json()`) through
/// `to_saved_config`. For the methods Hugging Face PEFT knows (LoRA, IA3, PROMPT_TUNING, and
/// PREFIX_TUNING when the text's positions follow the prefix) the file then holds that
/// library's standard fields with its values: module names as the family's Hugging Face model
/// names them (core/hf_names.hpp: BERT's `query`, DistilBERT's `q_lin`, ALBERT's `ffn`, ...) in
/// `target_modules` (a regular expression when a list would match more linears than chosen),
/// `layers_to_transform` null for every layer, `task_type` and `base_model_name_or_path`. For
/// every method, what only peft reads (its version, the encoder shape the adapter was built
/// for, the weights digest of adapter_checkpoint.hpp) is under one key, `"peft_cpp"`, which
/// Hugging Face PEFT drops.
///
/// Reading: `to_native` turns a folder's config and tensors back into the policy's own config
/// and tensor names. A LoRA folder written by Hugging Face PEFT (no encoder shape: the
/// encoder it is loaded onto supplies it) has every config field honoured or refused by name:
///  - `target_modules`: a list (a linear is chosen when its module path equals an entry or
///    ends with "." + entry; peft's own names query/key/value/attn_out/ffn_in/ffn_out also
///    work) or a string (a regular expression the whole module path must match);
///  - `layers_to_transform` null, an integer or a list, `layers_pattern` null or naming
///    "layer" (the module paths are `<model>.encoder.layer.<i>...`; on ALBERT, whose layers of
///    a group run one module, `layers_to_transform` must be null); `exclude_modules` (a
///    list or a regular expression, by the same rules);
///  - `rank_pattern` / `alpha_pattern`: regular expressions matched against a dotted end of
///    each chosen module's path, the first matching key in sorted order winning (the order of
///    a config read from a file), resolved here into one full-path entry per linear (lora.hpp);
///  - `r`, `lora_alpha`, `use_rslora`, `lora_dropout`; `bias` "none" only, `use_dora` false
///    only (both refused otherwise); `fan_in_fan_out` true is read as false, as Hugging Face
///    does for `nn.Linear`; `modules_to_save` "classifier" only (its tensors are returned
///    apart, for a task head);
///  - the fields that only describe training or initialisation are ignored, except an
///    `init_lora_weights` that rewrote the frozen weights (PiSSA, OLoRA, CorDA, LoftQ,
///    LoRA-GA), which is refused; any other field with a value other than null, false or
///    empty is refused by name.
/// Tensor keys may carry the `base_model.model.` prefix or not, and the model's own prefix
/// (`bert.` for *ForSequenceClassification) or not (*Model); a LoRA tensor on a module
/// outside the encoder's six linears is refused by name.
///
/// IA3 folders: the same site rules, plus `feedforward_modules` (a list entry matches any end of
/// the module path, with no dot boundary, a string the whole path, as Hugging Face's ia3 model
/// does); keys `<module>.ia3_l`. PROMPT_TUNING folders: `prompt_embeddings` and the classifier
/// under `base_model.`; `num_transformer_submodules` other than 1 is refused. PREFIX_TUNING
/// folders: `prompt_embeddings` as `get_prompt` splits it, read with `position_offset` on (the
/// text's positions start after the prefix, as on Hugging Face's BERT). Every other field of
/// these configs with a value is refused by name.
///
/// The regular expressions are ECMAScript (std::regex), which agrees with Python's `re` on the
/// constructs target_modules use; one it cannot compile is refused with its text. At most
/// 1,024 characters, matched in time linear in the path (hf_peft_impl.hpp).
///
/// The definitions (io/detail/hf_peft_impl.hpp, which needs <regex>) are compiled once into
/// peft::instances (PEFT_TASK_SEPARATE) or, header-only, included here.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/encoder_shape.hpp"
#include "../core/types.hpp"

#if defined(PEFT_TASK_SEPARATE)
#define PEFT_HF_API
#else
#define PEFT_HF_API inline
#endif

namespace peft {

/// What `save_policy` records about the model an adapter belongs to, for Hugging Face PEFT.
struct hf_save_info {
  std::string base_model_name_or_path;  ///< the model folder or hub name; empty: null
  std::string task_type;                ///< e.g. "SEQ_CLS"; empty: null (a bare PeftModel)
};

/// The key under which peft keeps what only it reads in adapter_config.json.
inline constexpr const char* peft_cpp_key = "peft_cpp";

namespace detail {

/// The config `save_policy` writes for a policy whose own config is @p native (see the file
/// comment). The weights digest is added later, under `"peft_cpp"`.
PEFT_HF_API nlohmann::json to_saved_config(const nlohmann::json& native, const hf_save_info& info);

/// The weights digest a folder's config @p file_cfg records (`peft_cpp.weights_fnv1a64`, or
/// the top-level field of peft 0.1.0 folders); empty when none.
PEFT_HF_API std::string recorded_digest(const nlohmann::json& file_cfg, const std::string& where);

/// Moves the tensors of a folder's `modules_to_save` classifier ("classifier" or "score", with
/// or without `base_model.model.`) from @p tensors to @p modules as `classifier.<name>`.
PEFT_HF_API void split_saved_modules(const nlohmann::json& cfg, std::map<std::string, tensor>& tensors,
                                     std::map<std::string, tensor>& modules);

/// The policy's own config and tensors from a folder's config @p file_cfg and tensors
/// @p tensors (renamed in place), for an encoder of shape @p shape. Tensors of
/// `modules_to_save` modules are moved to @p modules, keyed by their module-relative names
/// (`classifier.weight`, ...).
/// @throws peft::invalid_argument naming the field or tensor that peft cannot honour
PEFT_HF_API nlohmann::json to_native(const nlohmann::json& file_cfg, std::map<std::string, tensor>& tensors,
                                     const encoder_shape& shape, std::map<std::string, tensor>& modules,
                                     const std::string& where);

}  // namespace detail
}  // namespace peft

#if !defined(PEFT_TASK_SEPARATE)
#include "detail/hf_peft_impl.hpp"
#endif

#endif  // PEFT_IO_HF_PEFT_HPP
