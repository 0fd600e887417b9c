// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_HEADS_HPP
#define PEFT_MODEL_HEADS_HPP

/// @file heads.hpp
/// The frozen heads a checkpoint ships: poolings, the BERT pooler, the USE-lite sentence
/// head and the masked-LM head (decoder tied to the word embeddings).

#include <cmath>
#include <string>

#include "../core/types.hpp"
#include "../ops/activation.hpp"
#include "../ops/layer_norm.hpp"
#include "../ops/linear.hpp"
#include "batch.hpp"
#include "weights.hpp"

namespace peft {

/// How `peft-encode` and the heads reduce `[B*T x H]` hidden states to one row per sequence.
enum class pooling { none, cls, mean, sentence };

inline pooling parse_pooling(const std::string& s) {
  if (s == "none") return pooling::none;
  if (s == "cls") return pooling::cls;
  if (s == "mean") return pooling::mean;
  if (s == "sentence") return pooling::sentence;
  throw invalid_argument("parse_pooling: pooling expected none, cls, mean or sentence, got '" + s + "'");
}

namespace detail {
inline void check_hidden(const char* where, index rows, const batch& b) {
  if (rows != b.rows())
    throw invalid_argument(std::string(where) + ": hidden rows expected " + std::to_string(b.rows()) + " (B*T), got " +
                           std::to_string(rows));
}
}  // namespace detail

/// Hidden state of each sequence's first token, `[B x H]`.
template <typename Scalar>
matrix<Scalar> cls_pool(const matrix<Scalar>& h, const batch& b) {
  detail::check_hidden("cls_pool", h.rows(), b);
  matrix<Scalar> out(b.size(), h.cols());
  for (index i = 0; i < b.size(); ++i) out.row(i) = h.row(i * b.time());
  return out;
}

/// Mean of the hidden states of each sequence's real tokens, `[B x H]`.
template <typename Scalar>
matrix<Scalar> mean_pool(const matrix<Scalar>& h, const batch& b) {
  detail::check_hidden("mean_pool", h.rows(), b);
  matrix<Scalar> out = matrix<Scalar>::Zero(b.size(), h.cols());
  for (index i = 0; i < b.size(); ++i) {
    index n = 0;
    for (index t = 0; t < b.time(); ++t)
      if (b.mask(i, t)) {
        out.row(i) += h.row(i * b.time() + t);
        ++n;
      }
    if (n > 0) out.row(i) /= static_cast<Scalar>(n);
  }
  return out;
}

/// Backward of mean_pool: spreads `d_pooled` (`[B x H]`) over the real tokens.
template <typename Scalar>
matrix<Scalar> mean_pool_backward(const matrix<Scalar>& d_pooled, const batch& b) {
  matrix<Scalar> dh = matrix<Scalar>::Zero(b.rows(), d_pooled.cols());
  for (index i = 0; i < b.size(); ++i) {
    const index n = b.length(i);
    for (index t = 0; t < b.time(); ++t)
      if (b.mask(i, t)) dh.row(i * b.time() + t) = d_pooled.row(i) / static_cast<Scalar>(n);
  }
  return dh;
}

/// BERT pooler: tanh(W h_cls + b), `[B x H]`.
template <typename Scalar>
matrix<Scalar> bert_pooler(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b) {
  if (!w.has_pooler()) throw invalid_argument("bert_pooler: the checkpoint has no pooler weights");
  matrix<Scalar> out;
  ops::linear_forward(cls_pool(h, b), w.pooler.weight, w.pooler.bias, out);
  out = out.array().tanh();
  return out;
}

/// USE-lite sentence embedding: L2-normalised tanh(dense(mean_pool(h))), `[B x 512]`.
template <typename Scalar>
matrix<Scalar> use_sentence_embedding(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b) {
  if (w.sentence_dense.empty()) throw invalid_argument("use_sentence_embedding: the model has no sentence head");
  matrix<Scalar> out;
  ops::linear_forward(mean_pool(h, b), w.sentence_dense.weight, w.sentence_dense.bias, out);
  out = out.array().tanh();
  for (index i = 0; i < out.rows(); ++i) {
    // tf.nn.l2_normalize: x / sqrt(max(sum(x^2), 1e-12))
    const Scalar n2 = std::max(out.row(i).squaredNorm(), static_cast<Scalar>(1e-12));
    out.row(i) /= std::sqrt(n2);
  }
  return out;
}

/// Pools `h` as `kind` asks: `sentence` is USE-lite's sentence head or BERT's pooler.
template <typename Scalar>
matrix<Scalar> pool(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b, pooling kind) {
  switch (kind) {
    case pooling::none: return h;
    case pooling::cls: return cls_pool(h, b);
    case pooling::mean: return mean_pool(h, b);
    case pooling::sentence:
      return w.config.model_type == "use_lite" ? use_sentence_embedding(w, h, b) : bert_pooler(w, h, b);
  }
  return h;
}

/// Masked-LM head: what the forward records for its input-gradient.
template <typename Scalar>
struct mlm_cache {
  matrix<Scalar> u;  ///< dense output, before GELU
  ops::layer_norm_cache<Scalar> norm;
};

/// Masked-LM logits for selected rows `h` (`[N x H]`): dense -> GELU -> LayerNorm ->
/// decoder tied to the word embeddings (+ bias). Returns `[N x vocab]`, or only the columns
/// in `vocab_subset` when given (label words of a verbalizer).
template <typename Scalar>
matrix<Scalar> mlm_logits(const encoder_weights<Scalar>& w, const matrix<Scalar>& h,
                          const std::vector<std::int32_t>* vocab_subset = nullptr,
                          nondeduced_t<mlm_cache<Scalar>>* cache = nullptr) {
  if (!w.has_mlm_head()) throw invalid_argument("mlm_logits: the checkpoint has no masked-LM head");
  const index H = w.mlm_transform.in_features();
  if (h.cols() != H)
    throw invalid_argument("mlm_logits: hidden width expected " + std::to_string(H) + ", got " + std::to_string(h.cols()));
  matrix<Scalar> u, g;
  ops::linear_forward(h, w.mlm_transform.weight, w.mlm_transform.bias, u);
  ops::activation_forward(w.config.hidden_act, u, g);
  ops::layer_norm_forward(g, w.mlm_norm.gamma, w.mlm_norm.beta, w.config.layer_norm_eps, g,
                          cache ? &cache->norm : nullptr);
  if (cache) cache->u = u;
  if (!vocab_subset) return ops::linear_forward_ret(g, w.word_embeddings, w.mlm_bias);
  const index V = w.word_embeddings.rows();
  matrix<Scalar> out(h.rows(), static_cast<index>(vocab_subset->size()));
  for (std::size_t c = 0; c < vocab_subset->size(); ++c) {
    const auto id = (*vocab_subset)[c];
    if (id < 0 || id >= V)
      throw invalid_argument("mlm_logits: label-word id expected in [0, " + std::to_string(V) + "), got " +
                             std::to_string(id));
    out.col(static_cast<index>(c)) = g * w.word_embeddings.row(id).transpose();
    out.col(static_cast<index>(c)).array() += w.mlm_bias[id];
  }
  return out;
}

/// Input-gradient of `mlm_logits` (frozen head): `d_logits` is `[N x vocab]` or
/// `[N x |vocab_subset|]`, matching the forward call.
template <typename Scalar>
matrix<Scalar> mlm_logits_backward(const encoder_weights<Scalar>& w, const matrix<Scalar>& d_logits,
                                   const mlm_cache<Scalar>& cache,
                                   const std::vector<std::int32_t>* vocab_subset = nullptr) {
  matrix<Scalar> dg;
  if (!vocab_subset) {
    dg.noalias() = d_logits * w.word_embeddings;
  } else {
    dg = matrix<Scalar>::Zero(d_logits.rows(), w.word_embeddings.cols());
    for (std::size_t c = 0; c < vocab_subset->size(); ++c)
      dg.noalias() += d_logits.col(static_cast<index>(c)) * w.word_embeddings.row((*vocab_subset)[c]);
  }
  ops::layer_norm_backward(dg, w.mlm_norm.gamma, cache.norm, dg);
  ops::activation_backward(w.config.hidden_act, cache.u, dg);
  matrix<Scalar> dh;
  ops::linear_backward_input(dg, w.mlm_transform.weight, dh);
  return dh;
}

}  // namespace peft

#endif  // PEFT_MODEL_HEADS_HPP
