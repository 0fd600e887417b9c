// SPDX-License-Identifier: Apache-2.0
// peft-predict: predictions of a task saved by peft-train --save, or of a bare adapter folder
// (adapter_config.json + adapter_model.safetensors of any registered method, written by peft
// or by other code) with a classification head and its labels given separately.
//
//   peft-predict --model DIR --adapter TASKDIR --input FILE [--output PRED.jsonl] [--threads N]
//   peft-predict --model DIR --adapter ADAPTERDIR --head HEAD.safetensors --labels L1,L2|labels.json
//                [--pooling cls|mean|pooler] [--max-length N] --input FILE [...]
//
// Writes one JSON object per input row, {"label": ..., "scores": {label: probability, ...}},
// to --output (or stdout), and prints the accuracy (to stderr when predictions go to stdout)
// when every input row has a label.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "task_common.hpp"

namespace {

constexpr const char* usage =
    "usage: peft-predict --model DIR --adapter TASKDIR --input FILE [--output PRED.jsonl] [--threads N]\n"
    "       peft-predict --model DIR --adapter ADAPTERDIR --head HEAD.safetensors --labels L1,L2|labels.json\n"
    "                    [--pooling cls|mean|pooler] [--max-length N] --input FILE [...]\n"
    "  TASKDIR: a task saved by peft-train --save (task.json names its head, labels and settings)\n"
    "  ADAPTERDIR: a bare adapter folder of any method (adapter_config.json + adapter_model.safetensors)\n"
    "  --labels: the class names in class order (class 0 first), or a labels.json written by peft-train\n";

using task::usage_error;

struct options {
  std::string model, adapter, input, output;
  std::string head, labels, pooling;  ///< a bare adapter folder's head, labels and pooling
  long max_length = 0;
  int threads = 0;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    if (i + 1 >= argc) throw usage_error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--adapter") o.adapter = v;
    else if (a == "--input") o.input = v;
    else if (a == "--output") o.output = v;
    else if (a == "--head") o.head = v;
    else if (a == "--labels") o.labels = v;
    else if (a == "--pooling") o.pooling = v;
    else if (a == "--max-length") o.max_length = task::to_long(a, v, 2);
    else if (a == "--threads") {
      try {
        o.threads = std::stoi(v);
      } catch (const std::exception&) {
        o.threads = 0;
      }
      if (o.threads < 1) throw usage_error("--threads expects a positive integer, got '" + v + "'");
    } else {
      throw usage_error("unknown option " + a);
    }
  }
  if (o.model.empty() || o.adapter.empty() || o.input.empty())
    throw usage_error("--model, --adapter and --input are required");
  if (!o.pooling.empty()) {
    try {
      (void)peft::parse_pool_kind(o.pooling);
    } catch (const peft::error& e) {
      throw usage_error(std::string("--pooling: ") + e.what());
    }
  }
  return o;
}

/// The task in --adapter: a saved task (task.json), or a bare adapter folder described by
/// --head, --labels, --pooling and --max-length.
task::saved_task read_task(const task::model_files& m, const options& o) {
  const task::bare_task_options bare{o.head, o.labels, o.pooling, o.max_length};
  if (!task::has_saved_task(o.adapter)) return task::read_bare_task(m, o.adapter, bare);
  if (!o.head.empty() || !o.labels.empty() || !o.pooling.empty() || o.max_length > 0)
    throw usage_error("--head, --labels, --pooling and --max-length go with a bare adapter folder; '" + o.adapter +
                      "' holds a saved task (task.json)");
  return task::read_saved_task(m, o.adapter);
}

int run(const options& o) {
  if (o.threads > 0) peft::set_num_threads(o.threads);
  const auto m = task::load_model(o.model);
  const task::saved_task t = read_task(m, o);
  const auto& s = t.settings;
  const auto& labels = t.labels;
  const auto& tmpl = t.tmpl;
  const auto& verb = t.verb;
  const auto data = task::encode(m, s, peft::read_dataset(o.input), labels, tmpl, false);
  const auto r = task::predict_task(m, s, labels.size(), verb ? verb->ids() : std::vector<std::int32_t>{}, t.dir,
                                    t.head_path, data);
  std::ostringstream out;
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
  try {
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "peft-predict: " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    return run(o);
  } catch (const usage_error& e) {  // options that do not fit the folder given
    std::cerr << "peft-predict: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "peft-predict: " << e.what() << "\n";
    return 1;
  }
}
