// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_RUN_HPP
#define PEFT_TASK_RUN_HPP

/// @file run.hpp
/// Training and prediction of a task, for any model folder (load_model) and any registered
/// method chosen at run time: the entry points peft's programs are thin front-ends over.
///
/// - `train_task`: `fit` a fresh policy (from the method registry) and head on labelled rows.
/// - `train_list_task`: LiST self-training (teacher and student adapters over one encoder).
/// - `train_mpmp_task`: MPMP downstream tuning of a prompt library (or prompts from scratch),
///   by gradient or gradient-free.
/// - `predict_task`: a saved policy and head applied to rows.
/// - `add_saved_task`: a saved task added to a `multi_task_server`.
/// - `save_task(dir, settings, labels, result)`: a trained task saved as one unit (task.hpp).
///
/// Each picks the architecture from the model's `model_type`, then the head kind (a prompt
/// head when label words are given, else a classification head). Header-only by default,
/// which compiles every architecture, method and head into the including file; with
/// PEFT_TASK_SEPARATE (which peft::instances defines for what links it) they are compiled
/// once, in src/instances/task*.cpp.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../methods.hpp"
#include "../serve/multi_task.hpp"
#include "../train/mpmp.hpp"
#include "../train/self_training.hpp"
#include "../train/trainer.hpp"
#include "task.hpp"

namespace peft::task {

/// What training or predicting one task produced.
struct run_result {
  double accuracy = 0;  ///< on the labelled rows evaluated (0 when they carry no labels)
  double macro_f1 = 0;
  peft::index trainable_params = 0;
  peft::index backbone_params = 0;
  double train_seconds = 0;
  double examples_per_second = 0;
  /// train_task with a dev set: fit's best evaluation score (the final one without eval_every):
  /// the accuracy for classification, the first metric of the task's kind otherwise.
  double dev_accuracy = -1;
  long dev_step = 0;         ///< the step of that evaluation
  std::vector<peft::index> predictions;              ///< per evaluated row
  /// Per evaluated row: the class probabilities (classification), the predicted values
  /// (regression) or each label's probability (multi-label).
  std::vector<std::vector<double>> probabilities;
  /// The metrics of the task's kind on the evaluated rows when they are labelled (kinds.hpp).
  std::vector<std::pair<std::string, double>> metrics;
  double threshold = 0.5;                            ///< multi-label: chosen on the dev rows when given
  std::vector<std::vector<std::string>> word_tags;   ///< token classification: a tag per kept word of each row
  std::vector<std::string> answers;                  ///< reading comprehension: each question's answer
  std::vector<std::string> answer_ids;               ///< ... and the question's id
  double teacher_accuracy = -1;                      ///< LiST: the phase-0 model on the test rows
  std::vector<peft::list_session_report> sessions;   ///< LiST: one report per session
  std::vector<peft::mpmp_stage_report> mpmp_stages;  ///< MPMP: one report per stage
  std::string mpmp_head;                             ///< MPMP: library task whose head was used
  peft::any_policy<float> policy;                    ///< training: the trained policy
  std::map<std::string, peft::tensor> head;          ///< training: the trained head's tensors
};

/// Trains `settings.method` on `train` (labels in [0, classes)), evaluates on `test`, and
/// returns the trained policy and head with the results (save them with save_task). The task's
/// kind is `fit.task`'s (task_objective_of(settings, labels)): `classes` is its head width, and
/// a multi-label task's threshold is chosen on `dev` when it is given. `dev` (may
/// be empty) is what `fit.eval_every` / `fit.patience` evaluate. `label_words` (one vocabulary
/// id per class) selects a prompt head over the masked-LM head of a BERT checkpoint instead of
/// a classification head with `settings.pooling`.
/// @throws peft::invalid_argument for an unknown method or model type, label words on a model
///   without a masked-LM head, or what fit rejects
PEFT_TASK_API run_result train_task(const model_files& m, const task_settings& settings, peft::index classes,
                                    const std::vector<std::int32_t>& label_words,
                                    const std::vector<peft::encoded_example>& train,
                                    const std::vector<peft::encoded_example>& dev,
                                    const std::vector<peft::encoded_example>& test,
                                    const peft::fit_options& fit, std::uint64_t seed);

/// LiST self-training (method `list`): LiST adapters + the task's head as teacher and student
/// over the one encoder, with `list` as given. Returns the final student like train_task, and
/// the teacher's accuracy and one report per session.
PEFT_TASK_API run_result train_list_task(const model_files& m, const task_settings& settings,
                                         peft::index classes, const std::vector<std::int32_t>& label_words,
                                         const std::vector<peft::encoded_example>& train,
                                         const std::vector<peft::encoded_example>& pool,
                                         const std::vector<peft::encoded_example>& test,
                                         const peft::list_options& list);

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
/// prompts from scratch), then `mpmp.tune.stage` (or black-box tuning); the head starts from
/// the library task with the same label names when there is one. `dev` picks the kept
/// parameters (may be empty). Returns the policy and head like train_task.
/// @throws peft::invalid_argument when the rows' placeholders do not match the library's, the
///   named library task is missing or does not fit the labels, or black-box tuning has no
///   library head to keep frozen
PEFT_TASK_API run_result train_mpmp_task(const model_files& m, const task_settings& settings,
                                         const peft::label_map& labels,
                                         const std::vector<peft::encoded_example>& train,
                                         const std::vector<peft::encoded_example>& dev,
                                         const std::vector<peft::encoded_example>& test,
                                         const mpmp_settings& mpmp, std::uint64_t seed);

/// Predicts `data` with the policy saved in @p policy_dir (a task's folder, or a bare adapter
/// folder; ignored for method head) and the head in the safetensors file @p head_path. Rows
/// with labels are scored too, with the metrics of @p objective's kind.
PEFT_TASK_API run_result predict_task(const model_files& m, const task_settings& settings,
                                      peft::index classes, const std::vector<std::int32_t>& label_words,
                                      const std::string& policy_dir, const std::string& head_path,
                                      const std::vector<peft::encoded_example>& data,
                                      const peft::task_objective& objective = {});

/// Adds task @p t (read by read_saved_task or read_bare_task) to @p server under @p name: its
/// policy, loaded from `t.dir`, and its head (the prompt head for a template task on BERT).
template <typename Arch>
void add_saved_task(peft::multi_task_server<Arch, float>& server, const model_files& m,
                    const std::string& name, const saved_task& t);

/// Saves what train_task (or its siblings) returned as one unit (task.hpp's save_task).
inline void save_task(const std::string& dir, const task_settings& settings, const peft::label_map& labels,
                      const run_result& trained) {
  save_task(dir, settings, labels, trained.policy, trained.head);
}

}  // namespace peft::task

#if !defined(PEFT_TASK_SEPARATE)
#include "detail/run_impl.hpp"
#endif

#endif  // PEFT_TASK_RUN_HPP
