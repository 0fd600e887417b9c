// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_HF_TOKENIZER_HPP
#define PEFT_TEXT_HF_TOKENIZER_HPP

/// @file hf_tokenizer.hpp
/// The tokenizer of a Hugging Face model folder, whichever kind it is.

#include <filesystem>
#include <memory>
#include <string>

#include "bpe.hpp"
#include "sentencepiece.hpp"
#include "sentencepiece_model.hpp"
#include "tokenizer.hpp"
#include "wordpiece.hpp"

namespace peft {

/// Loads the tokenizer of the model folder @p dir, in this order:
/// - `tokenizer.json`: WordPiece (BERT family), byte-level BPE (RoBERTa, GPT-2) or
///   SentencePiece-Unigram (XLM-R, ALBERT), chosen by its `model.type`;
/// - `sentencepiece.bpe.model` or `spiece.model`: SentencePiece's own model file, as XLM-R's
///   or ALBERT's slow tokenizer uses it (sentencepiece_model.hpp); only when peft is built with
///   libsentencepiece (`PEFT_WITH_SENTENCEPIECE`), else an io_error that says how to build it;
/// - `vocab.json` + `merges.txt`: byte-level BPE (the files transformers' slow RoBERTa and
///   GPT-2 tokenizers read);
/// - `vocab.txt`: WordPiece, lower-casing (bert-base-uncased).
/// @throws peft::io_error naming the folder when none is there, the model type when it is not
///         one of these, or the file and field when a file is malformed
inline std::shared_ptr<const tokenizer> load_hf_tokenizer(const std::string& dir) {
  static const char* where = "load_hf_tokenizer";
  namespace fs = std::filesystem;
  const fs::path p(dir);
  if (fs::exists(p / "tokenizer.json")) {
    const std::string path = (p / "tokenizer.json").string();
    const nlohmann::json j = detail::read_tokenizer_json(path, where);
    const std::string type = j.contains("model") && j["model"].is_object() && j["model"].contains("type") &&
                                     j["model"]["type"].is_string()
                                 ? j["model"]["type"].get<std::string>()
                                 : std::string();
    if (type == "WordPiece") return std::make_shared<wordpiece_tokenizer>(wordpiece_tokenizer::from_json(j, path, where));
    if (type == "BPE") return std::make_shared<bpe_tokenizer>(bpe_tokenizer::from_json(j, path, where));
    if (type == "Unigram")
      return std::make_shared<sentencepiece_tokenizer>(sentencepiece_tokenizer::from_json(j, path, where));
    throw io_error(std::string(where) + ": " + path + ": model.type expected \"WordPiece\", \"BPE\" or \"Unigram\", got " +
                   (type.empty() ? std::string("none") : "\"" + type + "\""));
  }
  if (!detail::sentencepiece_model_file(dir).empty()) return load_sentencepiece_model(dir);
  if (fs::exists(p / "vocab.json") && fs::exists(p / "merges.txt"))
    return std::make_shared<bpe_tokenizer>(
        bpe_tokenizer::from_vocab_merges((p / "vocab.json").string(), (p / "merges.txt").string()));
  if (fs::exists(p / "vocab.txt"))
    return std::make_shared<wordpiece_tokenizer>(wordpiece_tokenizer::from_vocab_txt((p / "vocab.txt").string()));
  throw io_error(std::string(where) + ": '" + dir +
                 "' has no tokenizer.json, sentencepiece.bpe.model, spiece.model, vocab.json + merges.txt, or vocab.txt "
                 "(a tokenizer is needed)");
}

}  // namespace peft

#endif  // PEFT_TEXT_HF_TOKENIZER_HPP
