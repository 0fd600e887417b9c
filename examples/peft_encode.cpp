// SPDX-License-Identifier: Apache-2.0
// peft-encode: hidden states or sentence embeddings of a frozen encoder, as .npy.
//
//   peft-encode --model DIR (--input TEXT_FILE | --ids IDS.npy [--mask MASK.npy]) --output OUT.npy
//               [--pool none|cls|mean|pooler|sentence] [--precision fp32|bf16] [--threads N]
//
// DIR is a Hugging Face folder (config.json, model.safetensors or its shards, a tokenizer), a
// sentence-transformers folder (modules.json: --pool sentence, the default there, gives the
// embedding sentence-transformers gives: its pooling mode, then Normalize) or a USE-lite TF.js
// folder (model.json, shards, vocab.json). Bad input exits non-zero with one line on stderr.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/io/sentence_transformers.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/peft.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/hf_tokenizer.hpp>

#include "cli.hpp"

namespace fs = std::filesystem;

namespace {

using task::usage_error;
namespace cli = task::cli;

struct options {
  std::string model, input, ids, mask, output, pool, precision = "fp32";
  int threads = 0;
};

void add_options(cli::app& app, options& o) {
  app.add_option("--model", o.model, "model folder (Hugging Face or USE-lite TF.js)")->required();
  app.add_option("--input", o.input, "text file, one sentence per line (or --ids)");
  app.add_option("--ids", o.ids, "token ids [B, T] as .npy (or --input)");
  app.add_option("--mask", o.mask, "attention mask [B, T] as .npy (with --ids; default: ids != pad)");
  app.add_option("--output", o.output, "output .npy: [B, T, H] hidden states or [B, H] pooled rows")->required();
  app.add_option("--pool", o.pool,
                 "pooled rows: sentence (USE-lite's head, a sentence-transformers folder's pooling + Normalize, "
                 "else BERT's pooler) [USE-lite and sentence-transformers folders], none [others]")
      ->check(cli::one_of({"none", "cls", "mean", "pooler", "sentence"}));
  app.add_option("--precision", o.precision, "frozen weights in fp32 or bf16")->check(cli::one_of({"fp32", "bf16"}));
  app.add_option("--threads", o.threads, "OpenMP threads (0: the default)")->check(cli::integer(1));
}

void check(const options& o) {
  if (o.input.empty() == o.ids.empty()) throw usage_error("give exactly one of --input and --ids");
  if (!o.mask.empty() && o.ids.empty()) throw usage_error("--mask goes with --ids");
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw peft::io_error("cannot open input file '" + path + "'");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  if (lines.empty()) throw peft::invalid_argument("input file '" + path + "' is empty (expected one input per line)");
  return lines;
}

using tokenize_fn = std::function<std::vector<std::int32_t>(const std::string&, peft::index)>;

/// What --pool asks for: hidden states (neither), a pool_kind, or a sentence-transformers pipeline.
struct pooling {
  std::optional<peft::pool_kind> kind;
  std::optional<peft::sentence_pipeline> sentence;
  bool pooled() const { return kind || sentence; }
};

/// Encodes `b` and pools it; returns rows of the output tensor ([B x H] or [B*T x H]).
template <typename Arch>
peft::matrix<float> encode_batch(const peft::encoder<Arch, float>& enc, const peft::batch& b, const pooling& pool) {
  auto h = enc.forward(b);
  if (pool.sentence) return peft::sentence_embeddings(h, b, *pool.sentence);
  if (!pool.kind) return h;  // moved out; a conditional expression would copy it
  return peft::pool_forward(enc.weights(), h, b, *pool.kind);
}

/// --pool's value: none (hidden states) or a pool_kind; `sentence` is the checkpoint's own
/// sentence vector, so on a Hugging Face model it is BERT's pooler.
std::optional<peft::pool_kind> parse_pool(const std::string& name, bool use_lite) {
  if (name == "none") return std::nullopt;
  if (name == "sentence" && !use_lite) return peft::pool_kind::pooler;
  return peft::parse_pool_kind(name);
}

template <typename Arch>
int run(const options& o, peft::shared_weights<float> weights, const tokenize_fn& tokenize, std::int32_t pad_id,
        const pooling& kind) {
  if (o.precision == "bf16") weights = peft::to_bf16(weights);
  peft::encoder<Arch, float> enc(std::move(weights));
  const peft::index H = enc.hidden_size();
  constexpr peft::index chunk = 32;

  // Collect the batch rows: ids and masks, padded per chunk.
  std::vector<std::vector<std::int32_t>> seqs;
  peft::id_matrix all_ids, all_mask;
  if (!o.input.empty()) {
    const auto lines = read_lines(o.input);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      peft::index limit = enc.max_sequence_length();
      if (kind.sentence && kind.sentence->max_seq_length > 0) limit = std::min(limit, kind.sentence->max_seq_length);
      auto ids = tokenize(lines[i], limit);
      if (ids.empty())
        throw peft::invalid_argument("line " + std::to_string(i + 1) + " of '" + o.input +
                                     "' has no tokens (empty input)");
      seqs.push_back(std::move(ids));
    }
  } else {
    all_ids = peft::read_npy_ids(o.ids);
    if (all_ids.rows() == 0 || all_ids.cols() == 0)
      throw peft::invalid_argument("'" + o.ids + "' is empty (expected [B, T] with B, T >= 1)");
    if (!o.mask.empty()) {
      all_mask = peft::read_npy_ids(o.mask);
      if (all_mask.rows() != all_ids.rows() || all_mask.cols() != all_ids.cols())
        throw peft::invalid_argument("mask shape [" + std::to_string(all_mask.rows()) + ", " +
                                     std::to_string(all_mask.cols()) + "] does not match ids [" +
                                     std::to_string(all_ids.rows()) + ", " + std::to_string(all_ids.cols()) + "]");
    } else {
      all_mask = peft::id_matrix::Ones(all_ids.rows(), all_ids.cols());
    }
  }
  const peft::index B = seqs.empty() ? all_ids.rows() : static_cast<peft::index>(seqs.size());
  peft::index T = all_ids.cols();
  if (!seqs.empty())
    for (const auto& s : seqs) T = std::max<peft::index>(T, static_cast<peft::index>(s.size()));

  peft::tensor out;
  out.shape = !kind.pooled() ? std::vector<std::int64_t>{B, T, H} : std::vector<std::int64_t>{B, H};
  out.data.assign(static_cast<std::size_t>(out.numel()), 0.0f);
  for (peft::index start = 0; start < B; start += chunk) {
    const peft::index n = std::min(chunk, B - start);
    peft::batch b;
    if (!seqs.empty()) {
      std::vector<std::vector<std::int32_t>> part(seqs.begin() + start, seqs.begin() + start + n);
      b = peft::make_batch(part, pad_id);
    } else {
      b.ids = all_ids.middleRows(start, n);
      b.mask = all_mask.middleRows(start, n);
    }
    const auto rows = encode_batch(enc, b, kind);
    for (peft::index i = 0; i < n; ++i) {
      if (!kind.pooled()) {
        for (peft::index t = 0; t < b.time(); ++t) {
          if (!b.mask(i, t)) continue;  // padding stays zero
          float* dst = out.data.data() + ((start + i) * T + t) * H;
          for (peft::index c = 0; c < H; ++c) dst[c] = rows(i * b.time() + t, c);
        }
      } else {
        float* dst = out.data.data() + (start + i) * H;
        for (peft::index c = 0; c < H; ++c) dst[c] = rows(i, c);
      }
    }
  }
  peft::write_npy(o.output, out);
  return 0;
}

int main_impl(const options& o) {
  if (o.threads > 0) peft::set_num_threads(o.threads);
  if (!fs::is_directory(o.model)) throw peft::io_error("model folder '" + o.model + "' does not exist");
  const fs::path dir(o.model);
  if (fs::exists(dir / "model.json")) {
    const auto kind = parse_pool(o.pool.empty() ? "sentence" : o.pool, true);
    tokenize_fn tok;
    if (!o.input.empty()) {
      auto t = std::make_shared<peft::unigram_tokenizer>(
          peft::unigram_tokenizer::from_vocab_json((dir / "vocab.json").string()));
      tok = [t](const std::string& s, peft::index max_len) { return t->encode(s, max_len); };
    }
    return run<peft::use_lite>(o, peft::load_use_lite<float>(o.model), tok, 0, pooling{kind, std::nullopt});
  }
  // A sentence-transformers folder: its Transformer module holds the model.
  pooling kind;
  std::string model_dir = o.model;
  if (peft::is_sentence_transformers_folder(o.model) && (o.pool.empty() || o.pool == "sentence")) {
    kind.sentence = peft::read_sentence_transformers(o.model);
    model_dir = kind.sentence->transformer_dir;
  } else {
    kind.kind = parse_pool(o.pool.empty() ? "none" : o.pool, false);
  }
  const fs::path mdir(model_dir);
  if (!fs::exists(mdir / "config.json"))
    throw peft::io_error("'" + model_dir + "' has neither config.json (Hugging Face) nor model.json (USE-lite)");
  const auto cfg = peft::read_hf_config((mdir / "config.json").string());
  tokenize_fn tok;
  std::int32_t pad = static_cast<std::int32_t>(cfg.pad_token_id);
  if (!o.input.empty()) {
    const auto t = peft::load_hf_tokenizer(model_dir);
    pad = t->pad_id() >= 0 ? t->pad_id() : pad;
    tok = [t](const std::string& s, peft::index max_len) { return t->encode(s, max_len); };
  }
  auto weights = peft::load_hf_encoder<float>(model_dir);
  if (peft::arch_of_model_type(cfg.model_type) == "roberta") return run<peft::roberta>(o, weights, tok, pad, kind);
  return run<peft::bert>(o, weights, tok, pad, kind);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  cli::app app("peft-encode: hidden states or sentence embeddings of a frozen encoder, as .npy", "peft-encode");
  add_options(app, o);
  return cli::run(app, argc, argv, [&] {
    check(o);
    return main_impl(o);
  });
}
