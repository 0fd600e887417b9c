// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_TASK_HPP
#define PEFT_TASK_TASK_HPP

/// @file task.hpp
/// The task layer: what turns a model folder, a method and labelled text into a task that can
/// be trained, saved, loaded and served, without knowing the method or the model at compile
/// time. It sits above model/, policies/, io/ and the method registry (methods.hpp).
///
/// - `load_model(dir)`: a Hugging Face folder (config.json + safetensors, vocab.txt or
///   tokenizer.json) or a USE-lite TF.js folder, with its tokenizer.
/// - `task_settings`: how the task turns text into rows (method, template, pooling, lengths).
/// - `encode(...)`: a data set as the rows the encoder takes.
/// - `task_policy(...)`: the task's policy, fresh from the registry or loaded from a folder.
/// - A saved task is one folder: the policy (`adapter_config.json` +
///   `adapter_model.safetensors`, readable by Hugging Face PEFT tools), `head.safetensors`,
///   `labels.json` and `task.json`. `save_task` writes it as one unit (staged, then swapped in,
///   io/atomic_folder.hpp), so a kill at any point leaves the previous task loadable;
///   `read_saved_task` reads it back (or the previous version such a kill left).
/// - `read_bare_task(...)`: a bare adapter folder (any registered method, saved by other
///   code) described by a head file, labels and pooling.
///
/// Header-only by default. A program that compiles the definitions once (peft's own example
/// programs do, in one file) defines PEFT_TASK_SEPARATE everywhere and includes
/// task/detail/task_impl.hpp in exactly one file.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/encoder_shape.hpp"
#include "../data/data.hpp"
#include "../data/task_readers.hpp"
#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../methods.hpp"
#include "../model/arch.hpp"
#include "../model/weights.hpp"
#include "../policies/modular_prompt.hpp"
#include "../policies/policy_config.hpp"
#include "../text/prompt.hpp"
#include "../text/unigram.hpp"
#include "../text/hf_tokenizer.hpp"
#include "kinds.hpp"
#include "task_model.hpp"

#if defined(PEFT_TASK_SEPARATE)
#define PEFT_TASK_API
#else
#define PEFT_TASK_API inline
#endif

namespace peft::task {

namespace fs = std::filesystem;

/// A comma-separated list, empty items dropped ("a,,b" -> {"a", "b"}): labels, names.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  for (char c : s + ",") {
    if (c != ',') {
      item += c;
    } else if (!item.empty()) {
      out.push_back(item);
      item.clear();
    }
  }
  return out;
}

/// A model folder: weights plus the tokenizer that goes with them.
struct model_files {
  std::string dir;
  std::string model_type;  ///< config.json's model_type (bert, roberta, xlm-roberta, ...), or use_lite
  peft::shared_weights<float> weights;
  /// Hugging Face folders: WordPiece or byte-level BPE (peft::load_hf_tokenizer).
  std::shared_ptr<const peft::tokenizer> tokenizer;
  std::shared_ptr<peft::unigram_tokenizer> unigram;      ///< USE-lite
  std::int32_t pad_id = 0;
};

/// Loads a model folder (Hugging Face or USE-lite TF.js) and its tokenizer.
/// @throws peft::io_error naming what the folder lacks
PEFT_TASK_API model_files load_model(const std::string& dir);

/// Calls `f(Arch{})` with the architecture tag of `model_type` (peft::arch_of_model_type:
/// XLM-R and MPNet run as roberta, DistilBERT, ELECTRA and ALBERT as bert).
template <typename F>
decltype(auto) with_arch(const std::string& model_type, F&& f) {
  const std::string arch = peft::arch_of_model_type(model_type);
  if (arch == "use_lite") return f(peft::use_lite{});
  if (arch == "roberta") return f(peft::roberta{});
  if (arch == "bert") return f(peft::bert{});
  throw peft::invalid_argument("unknown model_type '" + model_type + "'");
}

/// The encoder shape of @p m's model (what policies are built for).
PEFT_TASK_API peft::encoder_shape model_shape(const model_files& m);

/// The first registered method whose checkpoints carry @p peft_type (BOTTLENECK_ADAPTER:
/// houlsby; every bottleneck variant loads the same way).
/// @throws peft::invalid_argument naming the type and the known ones
PEFT_TASK_API std::string method_of_peft_type(const std::string& peft_type);

/// The policy of a task of method @p method (a name in peft::methods()): loaded from
/// @p load_dir when it is given and the method has a policy (the folder must hold that
/// method's kind of checkpoint), else fresh with @p options applied. MPMP prompts start from
/// a library or a config of their own, so method mpmp is only loaded here.
/// @throws peft::invalid_argument for an unknown method, a bad option or a folder of another method
PEFT_TASK_API peft::any_policy<float> task_policy(const std::string& method, const peft::encoder_shape& shape,
                                                  std::uint64_t seed, const std::string& load_dir,
                                                  const peft::method_options& options = {});

/// How a task turns text into model input.
struct task_settings {
  std::string method;
  std::string model_type;
  /// What the task predicts (data/task_data.hpp): its head width is the size of its label map
  /// (classes, regression targets, labels, tags, or start/end), its pooling `tokens` for the
  /// token-level kinds.
  peft::task_kind kind = peft::task_kind::classification;
  double threshold = 0.5;           ///< multi-label: chosen on the dev split when there is one
  peft::index doc_stride = 128;     ///< reading comprehension: step between a context's windows, in pieces
  peft::index max_query_length = 64;   ///< reading comprehension: the question's pieces kept
  peft::index max_answer_length = 30;  ///< reading comprehension: longest answer, in pieces
  bool allow_null = false;          ///< reading comprehension: some questions are unanswerable (SQuAD 2.0)
  std::string template_spec;    ///< prompt template, empty for a classification head
  std::string verbalizer_spec;  ///< "label=word,..." with a template
  std::string pooling;          ///< classification head's pooling
  /// The model folder trained on (informative: task.json's "base_model" and the adapter's
  /// base_model_name_or_path for Hugging Face PEFT); empty when unknown.
  std::string base_model;
  peft::index max_length = 128;
  peft::index prompt_tokens = 0;  ///< MPMP: placeholders inserted after the first token
  std::int32_t placeholder_id = peft::mpmp_placeholder_id;
  /// A classification task cast as reading comprehension (MPMP's span head): the text each
  /// class is written as among the label options, in class order (text/label_options.hpp);
  /// empty: a head with a column per class.
  std::vector<std::string> choices;
  /// Training only (the saved adapter_config.json records them): fields of the method's config
  /// that differ from its defaults, e.g. {"r": 16} (peft::make_policy).
  peft::method_options policy_options = nlohmann::json::object();
  /// Training only: an adapter folder the policy starts from (train_task), instead of a fresh
  /// one built from policy_options.
  std::string init_adapter;

  nlohmann::json to_json() const {
    nlohmann::json j = {{"method", method},          {"model_type", model_type},
                        {"template", template_spec}, {"verbalizer", verbalizer_spec},
                        {"pooling", pooling},        {"max_length", max_length}};
    if (!base_model.empty()) j["base_model"] = base_model;
    if (prompt_tokens > 0) {
      j["prompt_tokens"] = prompt_tokens;
      j["placeholder_id"] = placeholder_id;
    }
    if (!choices.empty()) j["choices"] = choices;
    // Classification tasks keep the task.json they always had; the other kinds say theirs.
    if (kind != peft::task_kind::classification) j["kind"] = peft::task_kind_name(kind);
    if (kind == peft::task_kind::multi_label) j["threshold"] = threshold;
    if (kind == peft::task_kind::extractive_qa) {
      j["doc_stride"] = doc_stride;
      j["max_query_length"] = max_query_length;
      j["max_answer_length"] = max_answer_length;
      j["allow_null"] = allow_null;
    }
    return j;
  }
  static task_settings from_json(const nlohmann::json& j) {
    task_settings s;
    try {
      s.method = j.at("method").get<std::string>();
      s.model_type = j.at("model_type").get<std::string>();
      s.template_spec = j.at("template").get<std::string>();
      s.verbalizer_spec = j.at("verbalizer").get<std::string>();
      s.pooling = j.at("pooling").get<std::string>();
      if (j.contains("base_model")) s.base_model = j.at("base_model").get<std::string>();
      // Integers range-checked: get<index> would convert a float or a wide integer unchecked.
      auto integer = [&](const char* key, auto& out, bool required) {
        if (!j.contains(key) && !required) return;
        if (!peft::detail::json_to_integer(j.at(key), out))
          throw peft::io_error(std::string("task.json: field '") + key +
                               "' expected an integer in range, got " + j.at(key).dump().substr(0, 60));
      };
      integer("max_length", s.max_length, true);
      integer("prompt_tokens", s.prompt_tokens, false);
      integer("placeholder_id", s.placeholder_id, false);
      if (j.contains("kind")) {
        try {
          s.kind = peft::parse_task_kind(j.at("kind").get<std::string>());
        } catch (const peft::invalid_argument& e) {
          throw peft::io_error(std::string("task.json: field 'kind': ") + e.what());
        }
      }
      if (j.contains("threshold")) {
        s.threshold = j.at("threshold").get<double>();
        if (!(s.threshold > 0 && s.threshold < 1))
          throw peft::io_error("task.json: field 'threshold' expected in (0, 1), got " + j.at("threshold").dump());
      }
      integer("doc_stride", s.doc_stride, false);
      integer("max_query_length", s.max_query_length, false);
      integer("max_answer_length", s.max_answer_length, false);
      if (j.contains("allow_null")) s.allow_null = j.at("allow_null").get<bool>();
      if (j.contains("choices")) {
        s.choices = j.at("choices").get<std::vector<std::string>>();
        if (s.choices.empty() || s.kind != peft::task_kind::classification)
          throw peft::io_error("task.json: field 'choices' expected a non-empty list of label options of a "
                               "classification task, got " + std::to_string(s.choices.size()) + " options for a " +
                               peft::task_kind_name(s.kind) + " task");
      }
    } catch (const nlohmann::json::exception& e) {
      throw peft::io_error(std::string("task.json: ") + e.what());
    }
    return s;
  }
};

/// Tokenizes `data` for the task; labels through `labels` (unlabelled rows get -1).
/// @throws peft::invalid_argument naming the line for text with no tokens or a missing label
PEFT_TASK_API std::vector<peft::encoded_example> encode(const model_files& m, const task_settings& s,
                                                        const peft::dataset& data, const peft::label_map& labels,
                                                        const std::optional<peft::prompt_template>& tmpl,
                                                        bool require_labels);

/// A data file read as rows of a task's kind: `rows` for the sequence-level kinds, `tokens` for
/// token classification, `questions` for reading comprehension.
struct task_data {
  peft::task_kind kind = peft::task_kind::classification;
  peft::dataset rows;
  std::vector<peft::token_example> tokens;
  std::vector<peft::qa_example> questions;
  std::size_t size() const noexcept {
    return peft::is_sequence_kind(kind) ? rows.size()
           : kind == peft::task_kind::token_classification ? tokens.size() : questions.size();
  }
};

/// Reads @p path as data of @p kind: read_dataset (classification), read_task_jsonl (regression,
/// multi-label: JSONL), read_token_data (JSONL or CoNLL columns), read_qa_data (SQuAD JSON or JSONL).
/// @throws peft::io_error from the readers, naming the file and line
PEFT_TASK_API task_data read_task_data(const std::string& path, peft::task_kind kind);

/// The names of a task's head outputs, from its training data: the classes (classification,
/// in order of appearance), every label of a multi-label set or every tag (sorted), the targets
/// (regression: "target", or "target_0".. for several) or "start", "end" (reading comprehension).
/// @throws peft::invalid_argument for data with no labels to name
PEFT_TASK_API peft::label_map task_labels(const task_data& d);

/// The rows of @p d as the encoder takes them, with the labels of its kind through @p labels
/// (a template only for classification). Token classification labels each word's first piece
/// (encode_words, align_word_labels); reading comprehension makes a row per window of each
/// question (qa_windows, `s.doc_stride`, `s.max_query_length`).
/// @throws peft::invalid_argument naming the line for a row without a label when
///   @p require_labels, a label not in @p labels, or a regression row with another number of targets
PEFT_TASK_API std::vector<peft::encoded_example> encode_task(const model_files& m, const task_settings& s,
                                                             const task_data& d, const peft::label_map& labels,
                                                             const std::optional<peft::prompt_template>& tmpl,
                                                             bool require_labels);

/// The option text of each class of @p labels, in class order, for a classification task cast
/// as reading comprehension (task_settings::choices): @p spec is "LABEL=TEXT,..." (a label not
/// listed is written as its name; empty: every label as its name).
/// @throws peft::invalid_argument for an entry without '=', an empty text, or a label not in @p labels
inline std::vector<std::string> label_options(const peft::label_map& labels, const std::string& spec) {
  std::vector<std::string> out = labels.labels();
  std::size_t from = 0;
  while (from < spec.size()) {
    const std::size_t comma = std::min(spec.find(',', from), spec.size());
    const std::string entry = spec.substr(from, comma - from);
    from = comma + 1;
    const std::size_t eq = entry.find('=');
    if (eq == std::string::npos || eq + 1 == entry.size())
      throw peft::invalid_argument("label options: LABEL=TEXT expected, got '" + entry + "'");
    const std::string name = entry.substr(0, eq);
    const auto id = labels.find(name);
    if (!id) {
      std::string known;
      for (const auto& l : labels.labels()) known += (known.empty() ? "" : ", ") + l;
      throw peft::invalid_argument("label options: label '" + name + "' expected one of " + known);
    }
    out[static_cast<std::size_t>(*id)] = entry.substr(eq + 1);
  }
  return out;
}

/// What training and evaluation of task @p s need beyond its rows (task/kinds.hpp).
inline peft::task_objective task_objective_of(const task_settings& s, const peft::label_map& labels) {
  peft::task_objective o;
  o.kind = s.kind;
  o.labels = labels.labels();
  o.threshold = s.threshold;
  o.max_answer_length = s.max_answer_length;
  o.allow_null = s.allow_null;
  o.choices = !s.choices.empty();
  return o;
}

/// Files of a saved task (peft-train --save).
inline std::string task_file(const std::string& dir) { return (fs::path(dir) / "task.json").string(); }
inline std::string head_file(const std::string& dir) { return (fs::path(dir) / "head.safetensors").string(); }
inline std::string labels_file(const std::string& dir) { return (fs::path(dir) / "labels.json").string(); }

/// What a saved task needs to turn input into model rows and predictions into labels: its
/// settings, label map and, for prompt-based tasks, template and verbalizer.
struct saved_task {
  task_settings settings;
  peft::label_map labels;
  std::optional<peft::prompt_template> tmpl;
  std::optional<peft::verbalizer> verb;
  std::string dir;        ///< the folder holding the policy (a task's, or a bare adapter folder)
  std::string head_path;  ///< the head's safetensors file (head.safetensors in the task folder)
};

/// A head, labels and input settings that describe a bare adapter folder (no task.json).
struct bare_task_options {
  /// The classification head's safetensors file; empty: the classifier the folder saves
  /// through `modules_to_save` (Hugging Face PEFT's sequence classifiers), read with BERT's
  /// pooler as BertForSequenceClassification does.
  std::string head;
  /// Class names in class order, comma-separated, or a labels.json file; empty: the model's
  /// config.json `id2label`.
  std::string labels;
  std::string pooling;   ///< empty: cls (pooler for a modules_to_save classifier)
  long max_length = 0;   ///< 0: task_settings' default
};

/// The task of a bare adapter folder @p dir (adapter_config.json + adapter_model.safetensors of
/// any registered method, written by peft or by Hugging Face PEFT) with a classification head:
/// the method from the folder's peft_type, the rest from @p o (see bare_task_options).
/// @throws peft::invalid_argument when the head or the labels are neither given nor in the
///   folders, or the folder's peft_type is not registered; peft::io_error for an unreadable folder
PEFT_TASK_API saved_task read_bare_task(const model_files& m, const std::string& dir, const bare_task_options& o,
                          const std::string& where = "");

/// The classification head an adapter folder carries: a Hugging Face PEFT folder's
/// `modules_to_save` classifier (read through BERT's pooler, no class names) or an AdapterHub
/// folder's head (head_config.json: its pooling and `label2id` names).
struct folder_head {
  std::map<std::string, peft::tensor> tensors;  ///< classifier.weight, classifier.bias
  std::string pooling;                          ///< "pooler" or "cls"
  std::vector<std::string> labels;              ///< empty: not recorded in the folder
};
/// The head adapter folder @p dir carries, if any (see folder_head).
/// @throws peft::io_error / peft::invalid_argument for an unreadable folder or a head peft cannot use
PEFT_TASK_API std::optional<folder_head> read_folder_head(const std::string& dir);

/// The class names of @p m's config.json `id2label`, in id order (a transformers sequence
/// classifier's). @p where prefixes the message.
/// @throws peft::invalid_argument when the model has no usable id2label
PEFT_TASK_API std::vector<std::string> model_labels(const model_files& m, const std::string& where = "");

/// True when @p dir holds a saved task (task.json), or an interrupted save left its previous
/// version beside it; false for a bare adapter folder.
PEFT_TASK_API bool has_saved_task(const std::string& dir);

/// Reads the task saved in @p dir (or, after a save killed mid-swap, the previous version
/// save_task left beside it) and checks that it was trained on @p m's kind of model.
/// @p where prefixes the messages (e.g. "task 'sentiment': ").
/// @throws peft::io_error for a folder without task.json or an unreadable one;
///   peft::invalid_argument for a checkpoint of another model type
PEFT_TASK_API saved_task read_saved_task(const model_files& m, const std::string& dir, const std::string& where = "");

template <typename Head>
void save_head(const std::string& dir, const Head& head) {
  peft::save_safetensors(head_file(dir), peft::store_tensors(head.parameters()), {{"format", "pt"}});
}
/// Loads a head's tensors from the safetensors file @p path (a task's head.safetensors, or a
/// head saved next to a bare adapter folder), or, when @p path is an adapter folder, from the
/// classifier it saves through `modules_to_save`.
template <typename Head>
void load_head_file(const std::string& path, Head& head) {
  std::map<std::string, peft::tensor> t;
  if (fs::is_directory(path)) {
    const auto saved = read_folder_head(path);
    if (saved) t = saved->tensors;
  } else {
    const auto f = peft::safetensors_file::open(path);
    for (const auto& n : f.names()) t[n] = f.load(n);
  }
  if constexpr (std::is_same_v<Head, peft::classification_head<float>>) {
    // The tensors say whether the head has a tanh hidden layer (RoBERTa's classifier,
    // AdapterHub's two-layer head): rebuild it to match before loading.
    const bool hidden = t.count("classifier.dense.weight") > 0;
    if (hidden != head.hidden_layer())
      head = Head(head.input_width(), head.num_classes(), head.pooling(), head.dropout(), 0, hidden);
  }
  peft::load_store_tensors(head.parameters(), t, "load_head: '" + path + "'");
}
template <typename Head>
void load_head(const std::string& dir, Head& head) {
  load_head_file(head_file(dir), head);
}

/// Saves a task to @p dir as one unit: @p policy (as peft::save_policy; nothing for the head
/// alone), @p head (head.safetensors), @p labels (labels.json) and @p settings (task.json) are
/// written into a staging folder that then replaces @p dir atomically.
/// @throws peft::io_error when writing fails (the previous task is then unchanged) or @p dir
///   is a folder with other content
PEFT_TASK_API void save_task(const std::string& dir, const task_settings& settings, const peft::label_map& labels,
                             const peft::any_policy<float>& policy, const std::map<std::string, peft::tensor>& head);

}  // namespace peft::task

#if !defined(PEFT_TASK_SEPARATE)
#include "detail/task_impl.hpp"
#endif

#endif  // PEFT_TASK_TASK_HPP
