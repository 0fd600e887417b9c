// SPDX-License-Identifier: Apache-2.0
// What the example programs share on top of the library's task layer (peft/task/task.hpp,
// reached here as task::...): the command-line helpers, the training entry points every
// method and architecture runs through (compiled once, in task_runtime_<arch>.cpp), and their
// results. The task layer's functions are compiled once too, in task_common.cpp
// (PEFT_TASK_SEPARATE is defined for every example target).
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
#include <peft/core/file_util.hpp>
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
#include <peft/task/task.hpp>
#include <peft/train/trainer.hpp>

#include "cli.hpp"

namespace task {

using namespace peft::task;  // the library's task layer: load_model, encode, save_task, ...

namespace fs = std::filesystem;


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

/// The task in @p dir for a program: a saved task, or a bare adapter folder described by @p bare
/// (a folder that does not exist is an io_error; a bare one without --head/--labels, or a
/// saved task given them, is a usage error).
saved_task open_task(const model_files& m, const std::string& dir, const bare_task_options& bare,
                     const std::string& where = "");

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
