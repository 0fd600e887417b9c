// SPDX-License-Identifier: Apache-2.0
// peft-serve: many tasks saved by peft-train --save, served over one frozen encoder.
//
//   peft-serve --model DIR --task NAME=OUTDIR [--task NAME=OUTDIR ...] [--batch N] [--threads N]
//              [--head NAME=FILE --labels NAME=L1,L2|labels.json [--pooling NAME=cls|mean|pooler]]
//
// The model folder is loaded once; every --task adds that checkpoint's policy (any method
// peft-predict supports; several tasks may use the same folder under different names) and
// head to a peft::multi_task_server. A task folder without task.json is a bare adapter folder
// (any registered method, written by peft or by other code): --head, --labels and --pooling,
// keyed by the task's name, describe its head. Requests are JSON lines on stdin:
//
//   {"task": "sentiment", "text": "great food"}            (optional "text_b" for pair tasks,
//                                                          optional "id", echoed back)
//
// Up to --batch lines (default 64) are gathered into one mixed-task call (rows grouped by task
// inside the call), and one JSON line per request is written to stdout, in input order:
//
//   {"task": "sentiment", "label": "pos", "scores": {"neg": 0.1, "pos": 0.9}}
//
// Blank lines are skipped. A bad line (not a JSON object, unknown task, "text" missing or not
// a string, text the tokenizer cannot encode) stops the program: the requests before it are
// answered first, then one line "peft-serve: line N: ..." goes to stderr and the exit status
// is 2. A bad command line or checkpoint also exits with 2 or 1 (as peft-predict).
//
// At exit a JSON line on stderr reports the number of requests, the peak resident set while
// loading, the resident set after loading, its peak while serving (VmHWM, reset after loading),
// and the bytes of the backbone against those of all the tasks' policies and heads.
#include <malloc.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <peft/serve/multi_task.hpp>

#include "task_common.hpp"

namespace {

using task::usage_error;
namespace cli = task::cli;

struct options {
  std::string model;
  std::vector<std::pair<std::string, std::string>> tasks;  // name, checkpoint folder
  std::map<std::string, task::bare_task_options> bare;     // by task name: a bare folder's head
  long batch = 64;
  int threads = 0;
};

/// "NAME=VALUE" split at the first '='.
std::pair<std::string, std::string> split_name(const std::string& v) {
  const auto eq = v.find('=');
  return {v.substr(0, eq), v.substr(eq + 1)};
}

void add_options(cli::app& app, options& o) {
  app.add_option("--model", o.model, "model folder (Hugging Face or USE-lite)")->required();
  app.add_repeated(
         "--task",
         [&o](const std::vector<std::string>& vs) {
           for (const auto& v : vs) {
             auto [name, dir] = split_name(v);
             for (const auto& t : o.tasks)
               if (t.first == name) throw usage_error("the name '" + name + "' is given twice");
             o.tasks.emplace_back(name, dir);
           }
         },
         "NAME=DIR: a task saved by peft-train --save, or a bare adapter folder (then --head, --labels); repeatable")
      ->required()
      ->check(cli::name_value("NAME=DIR"));
  const std::string bare = "Bare adapter folders (keyed by the --task name)";
  auto keyed = [&](const std::string& flag, std::string task::bare_task_options::*field, const std::string& help) {
    app.add_repeated(
           flag,
           [&o, field](const std::vector<std::string>& vs) {
             for (const auto& v : vs) {
               auto [name, value] = split_name(v);
               o.bare[name].*field = value;
             }
           },
           help)
        ->check(cli::name_value("NAME=VALUE"))
        ->group(bare);
  };
  keyed("--head", &task::bare_task_options::head, "NAME=FILE: the head's safetensors");
  keyed("--labels", &task::bare_task_options::labels, "NAME=L1,L2,...: class names in class order, or a labels.json");
  keyed("--pooling", &task::bare_task_options::pooling, "NAME=cls|mean|pooler: the head's pooling (default cls)");
  app.add_option("--batch", o.batch, "requests gathered into one call")->check(cli::integer(1));
  app.add_option("--threads", o.threads, "OpenMP threads (0: the default)")->check(cli::integer(1));
  app.footer(
      "Reads {\"task\": NAME, \"text\": ...} lines on stdin (optional \"text_b\", \"id\"); writes one prediction\n"
      "line per request, in input order.");
}

/// Checks that every bare-folder option names a task.
void check(const options& o) {
  for (const auto& b : o.bare) {
    bool known = false;
    for (const auto& t : o.tasks) known = known || t.first == b.first;
    if (!known) throw usage_error("--head/--labels/--pooling name task '" + b.first + "', which no --task gives");
  }
}

/// A field of /proc/self/status ("VmRSS", "VmHWM") in MiB, or -1 when unavailable.
double proc_status_mb(const std::string& key) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;  // kB
  return -1;
}

/// Hands freed memory back to the system and resets the peak-RSS mark (VmHWM) to the current
/// resident set (Linux >= 4.0), so that a later peak is the serving's own, not the loading's
/// (the loaders hold a checkpoint's file and its copy at once).
void reset_peak_rss() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
}

double mb(std::size_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

/// A line that cannot be served: reported with its line number, exit status 2.
struct request_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename Arch>
int serve(const options& o, const task::model_files& m, std::istream& in, std::ostream& out) {
  const peft::encoder<Arch, float> enc(m.weights);
  peft::multi_task_server<Arch, float> server(enc, m.pad_id);
  std::map<std::string, task::saved_task> tasks;
  for (const auto& entry : o.tasks) {
    const std::string& name = entry.first;  // not a structured binding: the lambda captures it
    const std::string& dir = entry.second;
    const auto bare = o.bare.find(name);
    task::saved_task t = task::open_task(m, dir, bare == o.bare.end() ? task::bare_task_options{} : bare->second,
                                         "task '" + name + "': ");
    task::add_saved_task(server, m, name, t);  // compiled once, in peft::instances
    tasks.emplace(name, std::move(t));
  }
  const double load_peak = proc_status_mb("VmHWM");
  reset_peak_rss();
  const double rss_loaded = proc_status_mb("VmRSS");

  std::vector<peft::serve_request> batch;
  std::vector<nlohmann::json> ids;  // each request's "id", or null
  long requests = 0, batches = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    const auto preds = server.predict(batch);
    std::ostringstream buf;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& t = tasks.at(batch[i].task);
      const auto& labels = t.labels;
      nlohmann::json scores = nlohmann::json::object(), line;
      if (t.settings.kind == peft::task_kind::classification) {
        for (std::size_t c = 0; c < preds[i].probabilities.size(); ++c)
          scores[labels.label(static_cast<std::int32_t>(c))] = preds[i].probabilities[c];
        line = {{"task", batch[i].task},
                {"label", labels.label(static_cast<std::int32_t>(preds[i].label))},
                {"scores", scores}};
      } else {  // regression: the outputs are the values; multi-label: each label's sigmoid
        const bool values = t.settings.kind == peft::task_kind::regression;
        nlohmann::json chosen = nlohmann::json::array();
        for (std::size_t c = 0; c < preds[i].logits.size(); ++c) {
          const double z = static_cast<double>(preds[i].logits[c]);
          const double v = values ? z : 1.0 / (1.0 + std::exp(-z));
          scores[labels.label(static_cast<std::int32_t>(c))] = v;
          if (!values && v >= t.settings.threshold) chosen.push_back(labels.label(static_cast<std::int32_t>(c)));
        }
        line = values ? nlohmann::json{{"task", batch[i].task}, {"values", scores}}
                      : nlohmann::json{{"task", batch[i].task}, {"labels", chosen}, {"scores", scores}};
      }
      if (!ids[i].is_null()) line["id"] = ids[i];
      buf << line.dump() << "\n";
    }
    out << buf.str() << std::flush;
    requests += static_cast<long>(batch.size());
    ++batches;
    batch.clear();
    ids.clear();
  };

  std::string text;
  std::size_t line_no = 0;
  std::string error;
  while (std::getline(in, text)) {
    ++line_no;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        throw request_error(std::string("not valid JSON: ") + e.what());
      }
      if (!j.is_object()) throw request_error("expected a JSON object, got " + j.dump().substr(0, 60));
      if (!j.contains("task") || !j["task"].is_string())
        throw request_error("\"task\" (a string) is missing");
      const std::string name = j["task"].get<std::string>();
      const auto t = tasks.find(name);
      if (t == tasks.end()) {
        std::string known;
        for (const auto& k : tasks) known += (known.empty() ? "" : ", ") + k.first;
        throw request_error("unknown task '" + name + "' (loaded: " + known + ")");
      }
      if (!j.contains("text") || !j["text"].is_string())
        throw request_error("\"text\" (a string) is missing");
      peft::example ex;
      ex.text = j["text"].get<std::string>();
      if (j.contains("text_b") && !j["text_b"].is_null()) {
        if (!j["text_b"].is_string()) throw request_error("\"text_b\" expected a string");
        if (!j["text_b"].get<std::string>().empty()) ex.text_b = j["text_b"].get<std::string>();
      }
      ex.line = line_no;
      std::vector<peft::encoded_example> enc_rows;
      try {
        task::task_data one;
        one.kind = t->second.settings.kind;
        one.rows = {ex};
        enc_rows = task::encode_task(m, t->second.settings, one, t->second.labels, t->second.tmpl, false);
      } catch (const peft::error& e) {
        throw request_error(e.what());
      }
      batch.push_back({name, std::move(enc_rows.front())});
      ids.push_back(j.contains("id") ? j["id"] : nlohmann::json());
    } catch (const request_error& e) {
      error = e.what();
      // task::encode already names the line; do not say it twice.
      if (error.rfind("line ", 0) != 0) error = "line " + std::to_string(line_no) + ": " + error;
      break;
    }
    if (static_cast<long>(batch.size()) >= o.batch) flush();
  }
  flush();  // the good requests before a bad line are answered too
  std::cerr << nlohmann::json{{"requests", requests},
                              {"batches", batches},
                              {"tasks", server.num_tasks()},
                              {"load_peak_rss_mb", load_peak},
                              {"rss_after_load_mb", rss_loaded},
                              {"peak_rss_mb", proc_status_mb("VmHWM")},
                              {"backbone_mb", mb(server.backbone_bytes())},
                              {"tasks_mb", mb(server.task_bytes())}}
                   .dump()
            << std::endl;
  if (!error.empty()) {
    std::cerr << "peft-serve: " << error << "\n";
    return 2;
  }
  return 0;
}

int run(const options& o) {
  if (o.threads > 0) peft::set_num_threads(o.threads);
  const auto m = task::load_model(o.model);
  return task::with_arch(m.model_type,
                         [&](auto arch) { return serve<decltype(arch)>(o, m, std::cin, std::cout); });
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  cli::app app("peft-serve: many saved tasks served over one frozen encoder", "peft-serve");
  add_options(app, o);
  return cli::run(app, argc, argv, [&] {
    check(o);
    return run(o);
  });
}
