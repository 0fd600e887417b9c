// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_MLM_HEAD_HPP
#define PEFT_MODEL_MLM_HEAD_HPP

/// @file mlm_head.hpp
/// The frozen masked-LM head a checkpoint ships (dense, activation, LayerNorm, decoder tied to
/// the word embeddings): logits for selected rows, and their input-gradient for prompt-based
/// fine-tuning.

#include <cstdint>
#include <string>
#include <vector>

#include "../core/types.hpp"
#include "../ops/activation.hpp"
#include "../ops/layer_norm.hpp"
#include "../ops/linear.hpp"
#include "weights.hpp"

namespace peft {

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
  ops::activation_forward(w.config.mlm_activation(), u, g);
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
  ops::activation_backward(w.config.mlm_activation(), cache.u, dg);
  matrix<Scalar> dh;
  ops::linear_backward_input(dg, w.mlm_transform.weight, dh);
  return dh;
}

}  // namespace peft

#endif  // PEFT_MODEL_MLM_HEAD_HPP
