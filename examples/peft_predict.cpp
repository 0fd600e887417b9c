// SPDX-License-Identifier: Apache-2.0
// peft-predict: predictions of a task saved by peft-train --save, or of a bare adapter folder
// (adapter_config.json + adapter_model.safetensors of any registered method, written by peft
// or by other code) with a classification head and its labels given separately.
//
//   peft-predict --model DIR --adapter TASKDIR --input FILE [--output PRED.jsonl] [--threads N]
//   peft-predict --model DIR --adapter ADAPTERDIR --head HEAD.safetensors --labels L1,L2|labels.json
//                [--pooling cls|mean|pooler] [--max-length N] --input FILE [...]
//
// Writes one JSON object per input row to --output (or stdout), as the task's kind predicts:
//   classification        {"label": ..., "scores": {label: probability, ...}}
//   regression            {"values": {target: value, ...}}
//   multi_label           {"labels": [...], "scores": {label: probability, ...}} (the task's threshold)
//   token_classification  {"words": [...], "tags": [...]} (words past --max-length get no tag)
//   extractive_qa         {"id": ..., "answer": ...} (one per question)
// and prints the metrics (to stderr when predictions go to stdout) when every input row is
// labelled: {"accuracy": ...} for classification, the kind's metrics otherwise.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "task_common.hpp"

namespace {

using task::usage_error;
namespace cli = task::cli;

struct options {
  std::string model, adapter, input, output;
  std::string head, labels, pooling;  ///< a bare adapter folder's head, labels and pooling
  long max_length = 0;
  int threads = 0;
};

void add_options(cli::app& app, options& o) {
  app.add_option("--model", o.model, "model folder (Hugging Face or USE-lite)")->required();
  app.add_option("--adapter", o.adapter,
                 "a task saved by peft-train --save, or a bare adapter folder of any method "
                 "(adapter_config.json + adapter_model.safetensors; then --head and --labels, unless it saves its "
                 "classifier as Hugging Face PEFT does (modules_to_save) and the model's config.json has id2label)")
      ->required();
  app.add_option("--input", o.input,
                 "rows to predict, in the task kind's format (classification: JSONL, TSV, CSV; labels optional)")
      ->required();
  app.add_option("--output", o.output, "predictions, one JSON line per row (default: stdout)");
  const std::string bare = "A bare adapter folder";
  app.add_option("--head", o.head, "the classification head's safetensors")->group(bare);
  app.add_option("--labels", o.labels, "class names in class order (L1,L2,...), or a labels.json")->group(bare);
  app.add_option("--pooling", o.pooling, "the head's pooling (default: cls)")
      ->check(cli::one_of({"cls", "mean", "pooler", "sentence"}))
      ->group(bare);
  app.add_option("--max-length", o.max_length, "longest input in tokens (0: 128)")->check(cli::integer(2))->group(bare);
  app.add_option("--threads", o.threads, "OpenMP threads (0: the default)")->check(cli::integer(1));
}

/// One JSON line per prediction of a task of another kind than classification (see the top).
void write_kind_predictions(std::ostream& out, peft::task_kind kind, const peft::label_map& labels,
                            const task::task_data& input, const task::run_result& r) {
  switch (kind) {
    case peft::task_kind::classification: break;
    case peft::task_kind::regression:
    case peft::task_kind::multi_label:
      for (const auto& p : r.probabilities) {
        nlohmann::json scores = nlohmann::json::object(), chosen = nlohmann::json::array();
        for (std::size_t c = 0; c < p.size(); ++c) {
          scores[labels.label(static_cast<std::int32_t>(c))] = p[c];
          if (p[c] >= r.threshold) chosen.push_back(labels.label(static_cast<std::int32_t>(c)));
        }
        out << (kind == peft::task_kind::regression ? nlohmann::json{{"values", scores}}
                                                    : nlohmann::json{{"labels", chosen}, {"scores", scores}})
                   .dump()
            << "\n";
      }
      break;
    case peft::task_kind::token_classification:
      for (std::size_t i = 0; i < r.word_tags.size(); ++i)
        out << nlohmann::json{{"words", input.tokens[i].words}, {"tags", r.word_tags[i]}}.dump() << "\n";
      break;
    case peft::task_kind::extractive_qa:
      for (std::size_t i = 0; i < r.answers.size(); ++i)
        out << nlohmann::json{{"id", r.answer_ids[i]}, {"answer", r.answers[i]}}.dump() << "\n";
      break;
  }
}

int run(const options& o) {
  if (o.threads > 0) peft::set_num_threads(o.threads);
  const auto m = task::load_model(o.model);
  const task::saved_task t = task::open_task(m, o.adapter, {o.head, o.labels, o.pooling, o.max_length});
  const auto& s = t.settings;
  const auto& labels = t.labels;
  const auto& tmpl = t.tmpl;
  const auto& verb = t.verb;
  const auto input = task::read_task_data(o.input, s.kind);
  const auto data = task::encode_task(m, s, input, labels, tmpl, false);
  const auto r = task::predict_task(m, s, labels.size(), verb ? verb->ids() : std::vector<std::int32_t>{}, t.dir,
                                    t.head_path, data, task::task_objective_of(s, labels));
  std::ostringstream out;
  if (s.kind != peft::task_kind::classification) {
    write_kind_predictions(out, s.kind, labels, input, r);
    if (o.output.empty()) {
      std::cout << out.str();
    } else {
      peft::atomic_write(o.output, out.str());
    }
    if (!r.metrics.empty()) {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& [name, value] : r.metrics) j[name] = value;
      j["examples"] = input.size();
      (o.output.empty() ? std::cerr : std::cout) << j.dump() << std::endl;
    }
    return 0;
  }
  std::size_t right = 0, labelled = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    nlohmann::json scores = nlohmann::json::object();
    for (std::size_t c = 0; c < r.probabilities[i].size(); ++c)
      scores[labels.label(static_cast<std::int32_t>(c))] = r.probabilities[i][c];
    out << nlohmann::json{{"label", labels.label(static_cast<std::int32_t>(r.predictions[i]))}, {"scores", scores}}.dump()
        << "\n";
    if (data[i].label >= 0) {
      ++labelled;
      right += r.predictions[i] == data[i].label;
    }
  }
  if (o.output.empty()) {
    std::cout << out.str();
  } else {
    peft::atomic_write(o.output, out.str());
  }
  if (labelled == data.size() && labelled > 0) {
    const double acc = double(right) / double(labelled);
    (o.output.empty() ? std::cerr : std::cout) << nlohmann::json{{"accuracy", acc}, {"examples", labelled}}.dump()
                                               << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  cli::app app("peft-predict: predictions of a saved task or a bare adapter folder", "peft-predict");
  add_options(app, o);
  return cli::run(app, argc, argv, [&] { return run(o); });
}
