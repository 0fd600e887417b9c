// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_SENTENCE_TRANSFORMERS_HPP
#define PEFT_IO_SENTENCE_TRANSFORMERS_HPP

/// @file sentence_transformers.hpp
/// sentence-transformers folders (`modules.json` listing a Transformer, a Pooling and
/// optionally a Normalize module, as `SentenceTransformer.save` writes them), and the sentence
/// embedding they define: the encoder's hidden states pooled over the real tokens by the
/// Pooling module's mode, then L2-normalised when a Normalize module follows.

#include <cmath>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "../core/batch.hpp"
#include "../core/file_util.hpp"
#include "../core/limits.hpp"
#include "../core/types.hpp"
#include "../error.hpp"

namespace peft {

/// What a sentence-transformers folder asks for after the encoder.
struct sentence_pipeline {
  /// The Pooling module's mode.
  enum class pooling { cls, mean, max, mean_sqrt_len };
  pooling mode = pooling::mean;
  bool normalize = false;      ///< a Normalize module follows the pooling
  index max_seq_length = 0;    ///< sentence_bert_config.json's limit (0: the encoder's)
  std::string transformer_dir;  ///< the folder of the Transformer module (config.json, weights, tokenizer)
};

/// Whether @p dir is a sentence-transformers folder (it has `modules.json`).
inline bool is_sentence_transformers_folder(const std::string& dir) {
  return std::filesystem::exists(std::filesystem::path(dir) / "modules.json");
}

/// Reads `modules.json`, the Pooling module's `config.json` and `sentence_bert_config.json`.
/// @throws peft::io_error naming the file and field: no Transformer or Pooling module, a module
///   type peft does not run (Dense, CNN, ...), a pooling mode other than exactly one of cls,
///   mean, max and mean-sqrt-len (weighted mean, last token and concatenated modes are
///   refused), or malformed JSON
inline sentence_pipeline read_sentence_transformers(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string where = "read_sentence_transformers";
  auto read_json = [&](const fs::path& p) {
    try {
      return detail::parse_json_limited(detail::read_file(p.string(), where.c_str()), where + ": '" + p.string() + "'");
    } catch (const nlohmann::json::exception& e) {
      throw io_error(where + ": '" + p.string() + "' is not valid JSON (" + e.what() + ")");
    }
  };
  const fs::path root(dir), modules_path = root / "modules.json";
  const std::string at = where + ": '" + modules_path.string() + "'";
  const nlohmann::json modules = read_json(modules_path);
  if (!modules.is_array()) throw io_error(at + ": an array of modules expected, got " + modules.dump().substr(0, 60));
  sentence_pipeline p;
  bool transformer = false, pooling = false;
  for (std::size_t k = 0; k < modules.size(); ++k) {
    const auto& m = modules[k];
    const std::string name = "module " + std::to_string(k);
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string())
      throw io_error(at + ": " + name + " expected an object with a string \"type\", got " + m.dump().substr(0, 60));
    const std::string type = m["type"].get<std::string>();
    const std::string path = m.contains("path") && m["path"].is_string() ? m["path"].get<std::string>() : "";
    if (path.find("..") != std::string::npos)
      throw io_error(at + ": " + name + " path expected inside the folder, got \"" + path + "\"");
    const std::string short_type = type.substr(type.rfind('.') == std::string::npos ? 0 : type.rfind('.') + 1);
    if (short_type == "Transformer") {
      if (transformer) throw io_error(at + ": one Transformer module expected, got a second (" + name + ")");
      transformer = true;
      p.transformer_dir = (root / path).string();
    } else if (short_type == "Pooling") {
      if (!transformer || pooling) throw io_error(at + ": one Pooling module after the Transformer expected at " + name);
      pooling = true;
      const fs::path cfg_path = root / path / "config.json";
      const nlohmann::json c = read_json(cfg_path);
      const std::string cat = where + ": '" + cfg_path.string() + "'";
      if (!c.is_object()) throw io_error(cat + ": an object expected");
      auto flag = [&](const char* key) {
        if (!c.contains(key) || c[key].is_null()) return false;
        if (!c[key].is_boolean()) throw io_error(cat + ": '" + key + "' expected a boolean, got " + c[key].dump());
        return c[key].get<bool>();
      };
      for (const char* refused : {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
        if (flag(refused)) throw io_error(cat + ": '" + refused + "' is not supported (cls, mean, max, mean_sqrt_len are)");
      const std::pair<const char*, sentence_pipeline::pooling> modes[] = {
          {"pooling_mode_cls_token", sentence_pipeline::pooling::cls},
          {"pooling_mode_mean_tokens", sentence_pipeline::pooling::mean},
          {"pooling_mode_max_tokens", sentence_pipeline::pooling::max},
          {"pooling_mode_mean_sqrt_len_tokens", sentence_pipeline::pooling::mean_sqrt_len}};
      int on = 0;
      for (const auto& [key, mode] : modes)
        if (flag(key)) {
          p.mode = mode;
          ++on;
        }
      if (on != 1)
        throw io_error(cat + ": exactly one pooling mode expected (cls, mean, max or mean_sqrt_len), got " +
                       std::to_string(on) + (on > 1 ? " (concatenated modes are not supported)" : ""));
    } else if (short_type == "Normalize") {
      if (!pooling) throw io_error(at + ": Normalize expected after the Pooling module, got it at " + name);
      p.normalize = true;
    } else {
      throw io_error(at + ": " + name + " has type '" + type +
                     "', expected sentence_transformers.models.Transformer, Pooling or Normalize");
    }
  }
  if (!transformer || !pooling) throw io_error(at + ": a Transformer and a Pooling module expected");
  const fs::path sb = root / "sentence_bert_config.json";
  if (fs::exists(sb)) {
    const nlohmann::json c = read_json(sb);
    if (c.is_object() && c.contains("max_seq_length") && !c["max_seq_length"].is_null() &&
        (!detail::json_to_integer(c["max_seq_length"], p.max_seq_length) || p.max_seq_length < 1))
      throw io_error(where + ": '" + sb.string() + "': 'max_seq_length' expected a positive integer, got " +
                     c["max_seq_length"].dump());
  }
  return p;
}

/// The sentence embeddings `[B x H]` of hidden states @p h (`[B*T x H]`) under @p p: the
/// first token, the mean, the maximum or the sum over sqrt(length) of each sequence's real
/// tokens, then divided by its L2 norm (at least 1e-12) when @p p normalises.
template <typename Scalar>
matrix<Scalar> sentence_embeddings(const matrix<Scalar>& h, const batch& b, const sentence_pipeline& p) {
  if (h.rows() != b.rows())
    throw invalid_argument("sentence_embeddings: hidden rows expected " + std::to_string(b.rows()) + " (B*T), got " +
                           std::to_string(h.rows()));
  const index T = b.time();
  matrix<Scalar> out = matrix<Scalar>::Zero(b.size(), h.cols());
  for (index i = 0; i < b.size(); ++i) {
    index n = 0;
    bool first = true;
    for (index t = 0; t < T; ++t) {
      if (!b.mask(i, t)) continue;
      const auto row = h.row(i * T + t);
      if (p.mode == sentence_pipeline::pooling::cls) {
        out.row(i) = row;
        n = 1;
        break;
      }
      if (p.mode == sentence_pipeline::pooling::max)
        out.row(i) = first ? matrix<Scalar>(row) : matrix<Scalar>(out.row(i).cwiseMax(row));
      else
        out.row(i) += row;
      first = false;
      ++n;
    }
    if (p.mode == sentence_pipeline::pooling::mean) out.row(i) /= static_cast<Scalar>(std::max<index>(n, 1));
    if (p.mode == sentence_pipeline::pooling::mean_sqrt_len)
      out.row(i) /= static_cast<Scalar>(std::sqrt(static_cast<double>(std::max<index>(n, 1))));
    if (p.normalize) out.row(i) /= std::max(out.row(i).norm(), static_cast<Scalar>(1e-12));
  }
  return out;
}

}  // namespace peft

#endif  // PEFT_IO_SENTENCE_TRANSFORMERS_HPP
