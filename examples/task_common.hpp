// SPDX-License-Identifier: Apache-2.0
// Shared by peft-train, peft-predict and peft-demo: loading a model folder, the method
// registry (method name -> policy type and defaults), encoding a data set for a task, and
// the task checkpoint (policy + head + label map + task settings). The non-template functions
// are compiled once, in task_common.cpp (part of peft_task_runtime, which every program that
// includes this header links).
#ifndef PEFT_EXAMPLES_TASK_COMMON_HPP
#define PEFT_EXAMPLES_TASK_COMMON_HPP

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <peft/data/data.hpp>
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/atomic_folder.hpp>
#include <peft/io/file_util.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/mpmp_library.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/methods.hpp>
#include <peft/peft.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/side_tuning.hpp>
#include <peft/text/prompt.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/wordpiece.hpp>
#include <peft/train/mpmp.hpp>
#include <peft/train/trainer.hpp>

#include "cli.hpp"

namespace task {

namespace fs = std::filesystem;


/// The number in option @p flag's value @p v, which must lie in [min, max].
/// @throws usage_error naming the flag, the range and the value
inline double to_double(const std::string& flag, const std::string& v, double min, double max) {
  try {
    std::size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size() && x >= min && x <= max) return x;
  } catch (const std::exception&) {
  }
  throw usage_error(flag + " expects a number in [" + std::to_string(min) + ", " + std::to_string(max) +
                    "], got '" + v + "'");
}

/// The integer in option @p flag's value @p v, which must be >= min.
/// @throws usage_error naming the flag, the bound and the value
inline long to_long(const std::string& flag, const std::string& v, long min) {
  try {
    std::size_t used = 0;
    const long x = std::stol(v, &used);
    if (used == v.size() && x >= min) return x;
  } catch (const std::exception&) {
  }
  throw usage_error(flag + " expects an integer >= " + std::to_string(min) + ", got '" + v + "'");
}

using cli::split_list;
inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
/// Sample standard deviation (n - 1), 0 for fewer than two values.
inline double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

/// A model folder: weights plus the tokenizer that goes with them.
struct model_files {
  std::string dir;
  std::string model_type;  ///< bert, roberta, use_lite
  peft::shared_weights<float> weights;
  std::shared_ptr<peft::wordpiece_tokenizer> wordpiece;  ///< HF folders with vocab.txt / tokenizer.json
  std::shared_ptr<peft::unigram_tokenizer> unigram;      ///< USE-lite
  std::int32_t pad_id = 0;
};

/// Loads a model folder (Hugging Face or USE-lite TF.js) and its tokenizer.
/// @throws peft::io_error naming what the folder lacks
model_files load_model(const std::string& dir);

/// Calls `f(Arch{})` with the architecture tag of `model_type`.
template <typename F>
decltype(auto) with_arch(const std::string& model_type, F&& f) {
  if (model_type == "use_lite") return f(peft::use_lite{});
  if (model_type == "roberta") return f(peft::roberta{});
  if (model_type == "bert") return f(peft::bert{});
  throw peft::invalid_argument("unknown model_type '" + model_type + "'");
}

/// The policy of a task of method @p method (a name in peft::methods()): loaded from
/// @p load_dir when it is given and the method has a policy (the folder must hold that
/// method's kind of checkpoint), else fresh. MPMP prompts are built by train_mpmp_task, so
/// method mpmp is only loaded here. Compiled once, in task_common.cpp.
/// @p options apply to a fresh policy only.
/// @throws peft::invalid_argument for an unknown method, a bad option or a folder of another method
/// The first registered method whose checkpoints carry @p peft_type (BOTTLENECK_ADAPTER:
/// houlsby; every bottleneck variant loads the same way).
/// @throws peft::invalid_argument naming the type and the known ones
std::string method_of_peft_type(const std::string& peft_type);

peft::any_policy<float> task_policy(const std::string& method, const peft::encoder_shape& shape,
                                    std::uint64_t seed, const std::string& load_dir,
                                    const peft::method_options& options = {});

/// The encoder shape of @p m's model (what policies are built for).
peft::encoder_shape model_shape(const model_files& m);

/// How a task turns text into model input.
struct task_settings {
  std::string method;
  std::string model_type;
  std::string template_spec;    ///< prompt template, empty for a classification head
  std::string verbalizer_spec;  ///< "label=word,..." with a template
  std::string pooling;          ///< classification head's pooling
  peft::index max_length = 128;
  peft::index prompt_tokens = 0;  ///< MPMP: placeholders inserted after the first token
  std::int32_t placeholder_id = peft::mpmp_placeholder_id;
  /// Training only (the saved adapter_config.json records them): fields of the method's config
  /// that differ from its defaults, e.g. {"r": 16} (peft::make_policy).
  peft::method_options policy_options = nlohmann::json::object();

  nlohmann::json to_json() const {
    nlohmann::json j = {{"method", method},          {"model_type", model_type},
                        {"template", template_spec}, {"verbalizer", verbalizer_spec},
                        {"pooling", pooling},        {"max_length", max_length}};
    if (prompt_tokens > 0) {
      j["prompt_tokens"] = prompt_tokens;
      j["placeholder_id"] = placeholder_id;
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
    } catch (const nlohmann::json::exception& e) {
      throw peft::io_error(std::string("task.json: ") + e.what());
    }
    return s;
  }
};

/// Tokenizes `data` for the task; labels through `labels` (unlabelled rows get -1).
std::vector<peft::encoded_example> encode(const model_files& m, const task_settings& s,
                                          const peft::dataset& data, const peft::label_map& labels,
                                          const std::optional<peft::prompt_template>& tmpl,
                                          bool require_labels);

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
  std::string head;      ///< the classification head's safetensors file
  std::string labels;    ///< class names in class order, comma-separated, or a labels.json file
  std::string pooling;   ///< empty: cls
  long max_length = 0;   ///< 0: task_settings' default
};

/// The task of a bare adapter folder @p dir (adapter_config.json + adapter_model.safetensors of
/// any registered method, written by peft or by other code) with a classification head: the
/// method from the folder's peft_type, the rest from @p o.
/// @throws usage_error when @p o lacks the head or the labels; peft::io_error or
///   peft::invalid_argument for an unreadable folder or an unregistered peft_type
saved_task read_bare_task(const model_files& m, const std::string& dir, const bare_task_options& o,
                          const std::string& where = "");

/// True when @p dir holds a saved task (task.json), or an interrupted save left its previous
/// version beside it; false for a bare adapter folder.
bool has_saved_task(const std::string& dir);

/// Reads the task saved in @p dir (or, after a save killed mid-swap, the previous version
/// save_task left beside it) and checks that it was trained on @p m's kind of model.
/// @p where prefixes the messages (e.g. "task 'sentiment': ").
/// @throws peft::io_error for a folder without task.json or an unreadable one;
///   peft::invalid_argument for a checkpoint of another model type
saved_task read_saved_task(const model_files& m, const std::string& dir, const std::string& where = "");

template <typename Head>
void save_head(const std::string& dir, const Head& head) {
  peft::save_safetensors(head_file(dir), peft::store_tensors(head.parameters()), {{"format", "pt"}});
}
/// Loads a head's tensors from the safetensors file @p path (a task's head.safetensors, or a
/// head saved next to a bare adapter folder).
template <typename Head>
void load_head_file(const std::string& path, Head& head) {
  const auto f = peft::safetensors_file::open(path);
  std::map<std::string, peft::tensor> t;
  for (const auto& n : f.names()) t[n] = f.load(n);
  peft::load_store_tensors(head.parameters(), t, "load_head: '" + path + "'");
}
template <typename Head>
void load_head(const std::string& dir, Head& head) {
  load_head_file(head_file(dir), head);
}

/// What training or predicting one task produced.
struct run_result {
  double accuracy = 0;
  double macro_f1 = 0;
  peft::index trainable_params = 0;
  peft::index backbone_params = 0;
  double train_seconds = 0;
  double examples_per_second = 0;
  std::vector<peft::index> predictions;              ///< per test example
  std::vector<std::vector<double>> probabilities;    ///< per test example, per class
  double teacher_accuracy = -1;                      ///< LiST: the phase-0 model on the test set
  std::vector<peft::list_session_report> sessions;   ///< LiST: one report per session
  std::vector<peft::mpmp_stage_report> mpmp_stages;  ///< MPMP: one report per stage
  std::string mpmp_head;                             ///< MPMP: library task whose head was used
  peft::any_policy<float> policy;                    ///< training: the trained policy
  std::map<std::string, peft::tensor> head;          ///< training: the trained head's tensors
};

/// Saves a trained task to @p dir as one unit: its policy (adapter_config.json +
/// adapter_model.safetensors, as peft::save_policy), head.safetensors, labels.json and
/// task.json are written into a staging folder that then replaces @p dir atomically
/// (peft::save_folder_atomically), so a kill at any point leaves the previous task loadable.
/// @throws peft::io_error when writing fails (the previous task is then unchanged) or @p dir
///   is a folder with other content
void save_task(const std::string& dir, const task_settings& settings, const peft::label_map& labels,
               const run_result& trained);

/// Trains `settings.method` on `train` (labels in [0, classes)), evaluates on `test`, and
/// returns the trained policy and head with the results (save them with save_task). `dev`
/// (may be empty) is what `fit.eval_every` / `fit.patience` evaluate. `label_words` selects a prompt head
/// (masked-LM checkpoints) instead of a classification head. Compiled once, in
/// task_runtime.cpp, for every architecture and method.
run_result train_task(const model_files& m, const task_settings& settings, peft::index classes,
                      const std::vector<std::int32_t>& label_words,
                      const std::vector<peft::encoded_example>& train,
                      const std::vector<peft::encoded_example>& dev,
                      const std::vector<peft::encoded_example>& test, const peft::fit_options& fit,
                      std::uint64_t seed);

/// LiST self-training (method `list`): LiST adapters + the task's head as teacher and
/// student over the one encoder; `list.teacher_lr` etc. are used as given. Returns the final
/// student like train_task.
run_result train_list_task(const model_files& m, const task_settings& settings, peft::index classes,
                           const std::vector<std::int32_t>& label_words,
                           const std::vector<peft::encoded_example>& train,
                           const std::vector<peft::encoded_example>& pool,
                           const std::vector<peft::encoded_example>& test, const peft::list_options& list);

/// MPMP downstream settings for train_mpmp_task.
struct mpmp_settings {
  std::string library;                  ///< pre-trained prompt library folder; empty: prompts from scratch
  std::string library_head;             ///< library task whose head to start from; empty: by label names
  peft::modular_prompt_config scratch;  ///< config of the from-scratch prompts (no library)
  bool blackbox = false;                ///< gradient-free tuning (BO on the router, CMA-ES on z)
  peft::mpmp_tune_options tune;
  peft::mpmp_blackbox_options bbt;
  double fresh_head_lr = 3e-2;  ///< a fresh head (no library head matches) in every stage
};

/// MPMP downstream tuning (method `mpmp`): a fresh router over the library's prompts (or
/// prompts from scratch), then `settings.tune.stage` (or black-box tuning); the head starts
/// from the library task with the same label names when there is one. `dev` picks the kept
/// parameters (may be empty). Returns the policy and head like train_task.
run_result train_mpmp_task(const model_files& m, const task_settings& settings, const peft::label_map& labels,
                           const std::vector<peft::encoded_example>& train,
                           const std::vector<peft::encoded_example>& dev,
                           const std::vector<peft::encoded_example>& test, const mpmp_settings& mpmp,
                           std::uint64_t seed);

/// Predicts `data` with the policy saved in @p policy_dir (a task's folder, or a bare adapter
/// folder; ignored for method head) and the head in the safetensors file @p head_path.
run_result predict_task(const model_files& m, const task_settings& settings, peft::index classes,
                        const std::vector<std::int32_t>& label_words, const std::string& policy_dir,
                        const std::string& head_path, const std::vector<peft::encoded_example>& data);

}  // namespace task

#endif
