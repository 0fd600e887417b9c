// SPDX-License-Identifier: Apache-2.0
// peft-mpmp-pretrain: builds an MPMP prompt library by multi-task pre-training of deep (or
// shallow) modular prompts over a frozen encoder, one router row per task (Hzfinfdu/MPMP
// Deep/run.py), and either one classification head per task (--head task) or, as the
// reference, one span head shared by every task, each task's labels written after its text as
// options (--head span; --options NAME:LABEL=TEXT,... writes a label as other text than its
// name). The library is read by `peft-train --method mpmp --mpmp-library LIB` and by
// peft-mpmp-table.
//
//   peft-mpmp-pretrain --model DIR --task NAME=TRAIN[,DEV] [--task ...] --save LIB
//                      [--head task|span] [--options NAME:LABEL=TEXT,...]
//                      [--steps 2000] [--batch 32] [--router-lr 5e-4] [--prompt-lr 1e-4]
//                      [--head-lr 1e-3] [--prompt-tokens 50] [--modules 8] [--intrinsic-dim 300]
//                      [--shallow 0|1] [--dev-fraction 0.1] [--eval-every N] [--max-length 128]
//                      [--seed 1] [--threads N]
//
// A task without a DEV file keeps `--dev-fraction` of its examples (drawn with the seed) as
// dev data. The parameters with the best mean dev accuracy are saved. The last line on stdout
// is one JSON object with the per-task dev accuracies and costs.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "task_common.hpp"

namespace {

using task::usage_error;
namespace cli = task::cli;

struct task_spec {
  std::string name, train, dev;
};

struct options {
  std::string model, save, head = "task";
  std::vector<task_spec> tasks;
  std::map<std::string, std::string> options;  ///< --options: task name -> LABEL=TEXT,...
  peft::mpmp_pretrain_options pre;
  peft::modular_prompt_config prompts;
  double dev_fraction = 0.1;
  long max_length = 128;
  int threads = 0;
  int shallow = 0;
};

void add_options(cli::app& app, options& o) {
  o.pre.steps = 2000;
  app.add_option("--model", o.model, "model folder (Hugging Face or USE-lite)")->required();
  app.add_repeated(
         "--task",
         [&o](const std::vector<std::string>& vs) {
           for (const auto& v : vs) {
             const auto eq = v.find('=');
             task_spec t;
             t.name = v.substr(0, eq);
             const auto files = task::split_list(v.substr(eq + 1));
             if (files.size() > 2) throw usage_error("expects NAME=TRAIN[,DEV], got '" + v + "'");
             t.train = files.at(0);
             if (files.size() == 2) t.dev = files[1];
             for (const auto& other : o.tasks)
               if (other.name == t.name) throw usage_error("name '" + t.name + "' given twice");
             o.tasks.push_back(t);
           }
         },
         "NAME=TRAIN[,DEV]: an upstream task (no DEV: --dev-fraction of TRAIN); repeatable")
      ->required()
      ->check(cli::name_value("NAME=TRAIN[,DEV]"));
  app.add_option("--save", o.save, "library folder to write")->required();
  app.add_option("--head", o.head, "a classification head per task, or one span head over label options")
      ->check(cli::one_of({"task", "span"}));
  app.add_repeated(
         "--options",
         [&o](const std::vector<std::string>& vs) {
           for (const auto& v : vs) {
             const auto colon = v.find(':');
             if (colon == std::string::npos || colon == 0) throw usage_error("expects NAME:LABEL=TEXT,..., got '" + v + "'");
             o.options[v.substr(0, colon)] = v.substr(colon + 1);
           }
         },
         "NAME:LABEL=TEXT,...: with --head span, task NAME writes LABEL as TEXT among its options; repeatable");
  app.add_option("--steps", o.pre.steps, "optimizer steps")->check(cli::integer(1));
  app.add_option("--batch", o.pre.batch_size, "batch size")->check(cli::integer(1));
  app.add_option("--router-lr", o.pre.router_lr, "router learning rate")->check(cli::number(1e-12, 10));
  app.add_option("--prompt-lr", o.pre.prompt_lr, "prompt learning rate")->check(cli::number(1e-12, 10));
  app.add_option("--head-lr", o.pre.head_lr, "heads' learning rate")->check(cli::number(1e-12, 10));
  app.add_option("--prompt-tokens", o.prompts.num_prompt_tokens, "prompt tokens")->check(cli::integer(1));
  app.add_option("--modules", o.prompts.num_modules, "modules per layer")->check(cli::integer(1));
  app.add_option("--intrinsic-dim", o.prompts.intrinsic_dim, "intrinsic dimension")->check(cli::integer(1));
  app.add_option("--shallow", o.shallow, "prompts before layer 0 only: 0|1")->check(cli::integer(0, 1));
  app.add_option("--dev-fraction", o.dev_fraction, "share of a task without DEV kept for dev")
      ->check(cli::number(0, 0.9));
  app.add_option("--eval-every", o.pre.eval_every, "steps between dev evaluations (0: the default)")
      ->check(cli::integer(0));
  app.add_option("--max-length", o.max_length, "longest input in tokens")->check(cli::integer(2));
  app.add_option("--seed", o.pre.seed, "seed")->check(cli::integer(0));
  app.add_option("--threads", o.threads, "OpenMP threads (0: the default)")->check(cli::integer(1));
}

int run(const options& o) {
  const bool span = o.head == "span";
  if (!span && !o.options.empty()) throw usage_error("--options goes with --head span");
  for (const auto& [name, spec] : o.options) {
    bool known = false;
    for (const auto& t : o.tasks) known = known || t.name == name;
    if (!known) throw usage_error("--options names task '" + name + "', which no --task gives");
  }
  if (o.threads > 0) peft::set_num_threads(o.threads);
  const auto m = task::load_model(o.model);
  task::task_settings s;
  s.method = "mpmp";
  s.model_type = m.model_type;
  s.pooling = peft::to_string(peft::default_pool_kind(m.model_type));
  s.max_length = o.max_length;
  s.prompt_tokens = o.prompts.num_prompt_tokens;
  if (span) s.pooling = "tokens";
  std::vector<peft::mpmp_task_data> tasks;
  peft::mpmp_library_info info;
  info.head = span ? peft::mpmp_span_head : peft::mpmp_task_heads;
  for (std::size_t t = 0; t < o.tasks.size(); ++t) {
    const auto& spec = o.tasks[t];
    peft::dataset train = peft::read_dataset(spec.train), dev;
    if (!spec.dev.empty()) {
      dev = peft::read_dataset(spec.dev);
    } else if (o.dev_fraction > 0) {
      // Hold out a seeded random share of the file as dev data.
      std::vector<std::size_t> order(train.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      peft::rng gen(o.pre.seed + 7919 * (t + 1));
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
      const auto n_dev = static_cast<std::size_t>(o.dev_fraction * double(train.size()));
      const std::vector<std::size_t> d(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_dev));
      const std::vector<std::size_t> r(order.begin() + static_cast<std::ptrdiff_t>(n_dev), order.end());
      dev = peft::subset(train, d);
      train = peft::subset(train, r);
    }
    const auto labels = peft::label_map::from_dataset(train);
    task::task_settings ts = s;
    if (span) {
      const auto spec_it = o.options.find(spec.name);
      ts.choices = task::label_options(labels, spec_it == o.options.end() ? "" : spec_it->second);
    }
    peft::mpmp_task_data td;
    td.name = spec.name;
    td.train = task::encode(m, ts, train, labels, std::nullopt, true);
    td.dev = task::encode(m, ts, dev, labels, std::nullopt, true);
    td.objective.choices = span;
    std::fprintf(stderr, "task %s: %zu train, %zu dev, %zu labels\n", spec.name.c_str(), td.train.size(), td.dev.size(),
                 labels.size());
    tasks.push_back(std::move(td));
    info.tasks.push_back({spec.name, labels.labels(), s.pooling, ts.choices});
  }
  peft::mpmp_pretrain_options pre = o.pre;
  pre.pad_id = m.pad_id;
  pre.progress_out = stderr;
  peft::modular_prompt_config cfg = o.prompts;
  cfg.num_tasks = static_cast<peft::index>(tasks.size());
  nlohmann::json out;
  task::with_arch(m.model_type, [&](auto arch) {
    using Arch = decltype(arch);
    const peft::encoder<Arch, float> enc(m.weights);
    peft::modular_prompt<float> policy(enc.shape(), cfg, pre.seed);
    std::vector<peft::classification_head<float>> heads;
    if (span)  // one span head: start and end logits at every position
      heads.emplace_back(enc.hidden_size(), 2, peft::pool_kind::tokens, 0.1, pre.seed + 1);
    else
      for (std::size_t t = 0; t < tasks.size(); ++t)
        heads.emplace_back(enc.hidden_size(), static_cast<peft::index>(info.tasks[t].labels.size()),
                           peft::parse_pool_kind(s.pooling), 0.1, pre.seed + t + 1);
    const auto r = peft::mpmp_pretrain(enc, policy, heads, tasks, pre);
    out = {{"library", o.save},
           {"model_type", m.model_type},
           {"head", info.head},
           {"steps", r.steps},
           {"seconds", r.seconds},
           {"final_loss", r.final_loss},
           {"best_step", r.best_step},
           {"mean_dev_accuracy", r.mean_dev_accuracy},
           {"prompt_parameters", policy.total_parameters()},
           {"router_parameters_per_task", policy.num_slots() * cfg.num_modules}};
    out["tasks"] = nlohmann::json::array();
    for (std::size_t t = 0; t < tasks.size(); ++t)
      out["tasks"].push_back({{"name", tasks[t].name}, {"steps", r.task_steps[t]}, {"dev_accuracy", r.dev_accuracy[t]}});
    info.extra = {{"pretrain",
                   {{"steps", pre.steps},
                    {"batch", pre.batch_size},
                    {"router_lr", pre.router_lr},
                    {"prompt_lr", pre.prompt_lr},
                    {"head_lr", pre.head_lr},
                    {"seed", pre.seed},
                    {"max_length", o.max_length}}},
                  {"result", out}};
    peft::save_mpmp_library(o.save, policy, heads, info);
  });
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  cli::app app("peft-mpmp-pretrain: an MPMP prompt library from upstream tasks", "peft-mpmp-pretrain");
  add_options(app, o);
  return cli::run(app, argc, argv, [&] {
    o.prompts.deep = o.shallow == 0;
    return run(o);
  });
}
