// SPDX-License-Identifier: Apache-2.0
// peft-mpmp-pretrain: builds an MPMP prompt library by multi-task pre-training of deep (or
// shallow) modular prompts over a frozen encoder, one router row and classification head per
// task (Hzfinfdu/MPMP Deep/run.py). The library is read by `peft-train --method mpmp
// --mpmp-library LIB` and by peft-mpmp-table.
//
//   peft-mpmp-pretrain --model DIR --task NAME=TRAIN[,DEV] [--task ...] --save LIB
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
#include <string>

#include "task_common.hpp"

namespace {

using task::to_double;
using task::to_long;
using task::usage_error;

constexpr const char* usage =
    "usage: peft-mpmp-pretrain --model DIR --task NAME=TRAIN[,DEV] [--task ...] --save LIB\n"
    "                          [--steps 2000] [--batch 32] [--router-lr 5e-4] [--prompt-lr 1e-4] [--head-lr 1e-3]\n"
    "                          [--prompt-tokens 50] [--modules 8] [--intrinsic-dim 300] [--shallow 0|1]\n"
    "                          [--dev-fraction 0.1] [--eval-every N] [--max-length 128] [--seed 1] [--threads N]\n";

struct task_spec {
  std::string name, train, dev;
};

struct options {
  std::string model, save;
  std::vector<task_spec> tasks;
  peft::mpmp_pretrain_options pre;
  peft::modular_prompt_config prompts;
  double dev_fraction = 0.1;
  long max_length = 128;
  int threads = 0;
};

options parse(int argc, char** argv) {
  options o;
  o.pre.steps = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    if (i + 1 >= argc) throw usage_error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--save") o.save = v;
    else if (a == "--task") {
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
        throw usage_error("--task expects NAME=TRAIN[,DEV], got '" + v + "'");
      task_spec t;
      t.name = v.substr(0, eq);
      const auto files = task::split_list(v.substr(eq + 1));
      if (files.empty() || files.size() > 2) throw usage_error("--task expects NAME=TRAIN[,DEV], got '" + v + "'");
      t.train = files[0];
      if (files.size() == 2) t.dev = files[1];
      for (const auto& other : o.tasks)
        if (other.name == t.name) throw usage_error("--task name '" + t.name + "' given twice");
      o.tasks.push_back(t);
    }
    else if (a == "--steps") o.pre.steps = to_long(a, v, 1);
    else if (a == "--batch") o.pre.batch_size = to_long(a, v, 1);
    else if (a == "--router-lr") o.pre.router_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--prompt-lr") o.pre.prompt_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--head-lr") o.pre.head_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--eval-every") o.pre.eval_every = to_long(a, v, 0);
    else if (a == "--seed") o.pre.seed = static_cast<std::uint64_t>(to_long(a, v, 0));
    else if (a == "--prompt-tokens") o.prompts.num_prompt_tokens = to_long(a, v, 1);
    else if (a == "--modules") o.prompts.num_modules = to_long(a, v, 1);
    else if (a == "--intrinsic-dim") o.prompts.intrinsic_dim = to_long(a, v, 1);
    else if (a == "--shallow") o.prompts.deep = to_long(a, v, 0) == 0;
    else if (a == "--dev-fraction") o.dev_fraction = to_double(a, v, 0, 0.9);
    else if (a == "--max-length") o.max_length = to_long(a, v, 2);
    else if (a == "--threads") o.threads = static_cast<int>(to_long(a, v, 1));
    else throw usage_error("unknown option " + a);
  }
  if (o.model.empty()) throw usage_error("--model is required");
  if (o.save.empty()) throw usage_error("--save is required");
  if (o.tasks.empty()) throw usage_error("at least one --task NAME=TRAIN[,DEV] is required");
  return o;
}

int run(const options& o) {
  if (o.threads > 0) peft::set_num_threads(o.threads);
  const auto m = task::load_model(o.model);
  task::task_settings s;
  s.method = "mpmp";
  s.model_type = m.model_type;
  s.pooling = peft::to_string(peft::default_pool_kind(m.model_type));
  s.max_length = o.max_length;
  s.prompt_tokens = o.prompts.num_prompt_tokens;
  std::vector<peft::mpmp_task_data> tasks;
  peft::mpmp_library_info info;
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
    peft::mpmp_task_data td;
    td.name = spec.name;
    td.train = task::encode(m, s, train, labels, std::nullopt, true);
    td.dev = task::encode(m, s, dev, labels, std::nullopt, true);
    std::fprintf(stderr, "task %s: %zu train, %zu dev, %zu labels\n", spec.name.c_str(), td.train.size(), td.dev.size(),
                 labels.size());
    tasks.push_back(std::move(td));
    info.tasks.push_back({spec.name, labels.labels(), s.pooling});
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
    for (std::size_t t = 0; t < tasks.size(); ++t)
      heads.emplace_back(enc.hidden_size(), static_cast<peft::index>(info.tasks[t].labels.size()),
                         peft::parse_pool_kind(s.pooling), 0.1, pre.seed + t + 1);
    const auto r = peft::mpmp_pretrain(enc, policy, heads, tasks, pre);
    out = {{"library", o.save},
           {"model_type", m.model_type},
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
  try {
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "peft-mpmp-pretrain: " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "peft-mpmp-pretrain: " << e.what() << "\n";
    return 1;
  }
}
