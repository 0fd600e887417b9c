// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_HEADS_HPP
#define PEFT_TASK_HEADS_HPP

/// @file heads.hpp
/// Trainable task heads. A head owns a `parameter_store` like a policy does, and maps the
/// encoder output to class logits:
///  - `classification_head`: a linear layer over a pooled row (CLS, mean, BERT pooler or the
///    USE-lite sentence embedding), or over every position (`pool_kind::tokens`: token
///    classification, an answer span's start/end logits), with dropout on its input in train mode; optionally with
///    one tanh hidden layer first (dropout, dense, tanh, dropout, out_proj), the head of
///    transformers' RoBERTa classifier and AdapterHub's default classification head;
///  - `prompt_head`: prompt-based fine-tuning (LM-BFF / LiST): the masked-LM head at the
///    `[MASK]` position restricted to the label words. Its dense + LayerNorm and the label
///    words' output biases are trainable copies of the checkpoint's; the decoder stays tied
///    to the frozen word embeddings.

#include <cstdint>
#include <string>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../ops/activation.hpp"
#include "../ops/dropout.hpp"
#include "../ops/layer_norm.hpp"
#include "../ops/linear.hpp"
#include "../core/batch.hpp"
#include "../model/mlm_head.hpp"
#include "../model/pooling.hpp"
#include "../model/weights.hpp"

namespace peft {

/// Linear classifier over a pooled encoder output, optionally after one tanh hidden layer.
/// Blocks: `classifier.weight`, `classifier.bias`; with the hidden layer (as RoBERTa's
/// classifier names them) `classifier.dense.weight` [W x W], `classifier.dense.bias`,
/// `classifier.out_proj.weight` [classes x W], `classifier.out_proj.bias`.
template <typename Scalar>
class classification_head {
public:
  using scalar_type = Scalar;
  struct cache_type {
    pool_cache<Scalar> pool;
    matrix<Scalar> input;   ///< input of the output layer (after its dropout)
    matrix<Scalar> drop;    ///< dropout scales before the output layer (empty in eval)
    matrix<Scalar> hidden_input;  ///< with the hidden layer: pooled rows after dropout
    matrix<Scalar> hidden_drop;   ///< their dropout scales (empty in eval)
    matrix<Scalar> tanh_out;      ///< tanh output before the second dropout
  };

  /// @param input_width width of the pooled row; @param classes number of outputs (>= 1): classes,
  ///   regression targets, labels of a multi-label task, tags, or 2 (an answer's start and end)
  /// @param hidden_layer a tanh dense layer of width input_width before the output layer
  classification_head(index input_width, index classes, pool_kind pooling, double dropout,
                      std::uint64_t seed, bool hidden_layer = false);

  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  index num_parameters() const noexcept { return m_params.size(); }
  index num_classes() const noexcept { return m_params.block(out()).rows; }
  index input_width() const noexcept { return m_params.block(0).cols; }
  bool hidden_layer() const noexcept { return m_hidden; }
  pool_kind pooling() const noexcept { return m_pooling; }
  double dropout() const noexcept { return m_dropout; }

  /// Logits `[B x classes]` from encoder hidden states `h` (`[B*T x H]`).
  matrix<Scalar> forward(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b, mode m,
                         rng* gen, cache_type* cache) const;

  /// Logits from already pooled rows `[B x input_width]` (e.g. cached features).
  matrix<Scalar> forward_pooled(matrix<Scalar> x, mode m, rng* gen, cache_type* cache) const;

  /// Accumulates parameter gradients; returns d pooled rows (`[B x input_width]`).
  matrix<Scalar> backward_pooled(const matrix<Scalar>& d_logits, const cache_type& cache);

  /// Accumulates parameter gradients; returns d h (`[B*T x H]`) for the encoder's backward.
  matrix<Scalar> backward(const encoder_weights<Scalar>& w, const matrix<Scalar>& d_logits, const batch& b,
                          const cache_type& cache, index hidden);

private:
  index out() const noexcept { return m_hidden ? 2 : 0; }
  matrix<Scalar> weight() const { return m_params.value(out()); }
  vector<Scalar> bias() const { return m_params.value(out() + 1).col(0); }
  /// Dropout on @p x in train mode; the scales go to @p mask (emptied otherwise).
  void drop(matrix<Scalar>& x, mode m, rng* gen, matrix<Scalar>* mask) const;

  parameter_store<Scalar> m_params;
  pool_kind m_pooling;
  double m_dropout;
  bool m_hidden = false;
};

template <typename Scalar>
classification_head<Scalar>::classification_head(index input_width, index classes, pool_kind pooling,
                                                 double dropout, std::uint64_t seed, bool hidden_layer)
    : m_pooling(pooling), m_dropout(dropout), m_hidden(hidden_layer) {
  // One output is a regression head's single target (or a multi-label head's single label).
  if (classes < 1)
    throw invalid_argument("classification_head: outputs expected >= 1, got " + std::to_string(classes));
  if (input_width < 1) throw invalid_argument("classification_head: input width expected >= 1");
  if (dropout < 0 || dropout >= 1) throw invalid_argument("classification_head: dropout expected in [0, 1)");
  if (hidden_layer) {
    m_params.add("classifier.dense.weight", input_width, input_width, param_group::weight);
    m_params.add("classifier.dense.bias", input_width, 1, param_group::bias);
  }
  m_params.add(hidden_layer ? "classifier.out_proj.weight" : "classifier.weight", classes, input_width,
               param_group::weight);
  m_params.add(hidden_layer ? "classifier.out_proj.bias" : "classifier.bias", classes, 1, param_group::bias);
  rng gen(seed);
  for (index b : {index(0), out()}) {
    auto w = m_params.value(b);
    for (index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<Scalar>(0.02 * gen.normal());  // BERT init
    if (!hidden_layer) break;
  }
}

template <typename Scalar>
void classification_head<Scalar>::drop(matrix<Scalar>& x, mode m, rng* gen, matrix<Scalar>* mask) const {
  if (m == mode::train && m_dropout > 0) {
    if (!gen)
      throw invalid_argument("classification_head::forward: train mode with dropout needs a generator");
    matrix<Scalar> scales;
    ops::make_dropout_mask(x.rows(), x.cols(), m_dropout, *gen, scales);
    x.array() *= scales.array();
    if (mask) *mask = std::move(scales);
  } else if (mask) {
    mask->resize(0, 0);
  }
}

template <typename Scalar>
matrix<Scalar> classification_head<Scalar>::forward(const encoder_weights<Scalar>& w, const matrix<Scalar>& h,
                                                    const batch& b, mode m, rng* gen,
                                                    cache_type* cache) const {
  matrix<Scalar> x = pool_forward(w, h, b, m_pooling, cache ? &cache->pool : nullptr);
  return forward_pooled(x, m, gen, cache);
}

template <typename Scalar>
matrix<Scalar> classification_head<Scalar>::forward_pooled(matrix<Scalar> x, mode m, rng* gen,
                                                           cache_type* cache) const {
  if (x.cols() != input_width())
    throw invalid_argument("classification_head::forward: input width expected " +
                           std::to_string(input_width()) + ", got " + std::to_string(x.cols()));
  if (m_hidden) {
    drop(x, m, gen, cache ? &cache->hidden_drop : nullptr);
    matrix<Scalar> a;
    ops::linear_forward(x, matrix<Scalar>(m_params.value(0)), vector<Scalar>(m_params.value(1).col(0)), a);
    a = a.array().tanh().matrix();
    if (cache) {
      cache->hidden_input = std::move(x);
      cache->tanh_out = a;
    }
    x = std::move(a);
  }
  drop(x, m, gen, cache ? &cache->drop : nullptr);
  matrix<Scalar> logits;
  ops::linear_forward(x, weight(), bias(), logits);
  if (cache) cache->input = std::move(x);
  return logits;
}

template <typename Scalar>
matrix<Scalar> classification_head<Scalar>::backward_pooled(const matrix<Scalar>& d_logits,
                                                            const cache_type& cache) {
  auto dw = m_params.grad(out());
  vector<Scalar> db = vector<Scalar>::Zero(num_classes());
  ops::linear_backward_weight(cache.input, d_logits, dw, &db);
  m_params.grad(out() + 1) += db;
  matrix<Scalar> dx;
  ops::linear_backward_input(d_logits, weight(), dx);
  if (cache.drop.size() != 0) dx.array() *= cache.drop.array();
  if (!m_hidden) return dx;
  // Through tanh and the hidden dense layer.
  dx.array() *= Scalar(1) - cache.tanh_out.array().square();
  auto dwh = m_params.grad(0);
  vector<Scalar> dbh = vector<Scalar>::Zero(input_width());
  ops::linear_backward_weight(cache.hidden_input, dx, dwh, &dbh);
  m_params.grad(1) += dbh;
  matrix<Scalar> din;
  ops::linear_backward_input(dx, matrix<Scalar>(m_params.value(0)), din);
  if (cache.hidden_drop.size() != 0) din.array() *= cache.hidden_drop.array();
  return din;
}

template <typename Scalar>
matrix<Scalar> classification_head<Scalar>::backward(const encoder_weights<Scalar>& w,
                                                     const matrix<Scalar>& d_logits, const batch& b,
                                                     const cache_type& cache, index hidden) {
  return pool_backward(w, backward_pooled(d_logits, cache), b, m_pooling, cache.pool, hidden);
}

/// Prompt-based classification head: masked-LM scores at the mask position, restricted to
/// the verbalizer's label words (one token id per class).
template <typename Scalar>
class prompt_head {
public:
  using scalar_type = Scalar;
  struct cache_type {
    matrix<Scalar> x;  ///< hidden states at the mask positions [B x H]
    matrix<Scalar> u;  ///< dense output before GELU
    ops::layer_norm_cache<Scalar> norm;
    std::vector<index> rows;  ///< row of each sequence's mask in h
  };

  /// Copies the checkpoint's masked-LM dense, LayerNorm and the label words' biases.
  prompt_head(const encoder_weights<Scalar>& w, std::vector<std::int32_t> label_words);

  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  index num_parameters() const noexcept { return m_params.size(); }
  index num_classes() const noexcept { return static_cast<index>(m_words.size()); }
  const std::vector<std::int32_t>& label_words() const noexcept { return m_words; }

  /// Logits `[B x classes]`; `mask_pos[b]` is the time index of sequence b's `[MASK]`.
  matrix<Scalar> forward(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b,
                         const std::vector<index>& mask_pos, cache_type* cache) const;

  /// Accumulates parameter gradients; returns d h (`[B*T x H]`, non-zero at mask rows only).
  matrix<Scalar> backward(const encoder_weights<Scalar>& w, const matrix<Scalar>& d_logits, const batch& b,
                          const cache_type& cache);

private:
  std::vector<std::int32_t> m_words;
  parameter_store<Scalar> m_params;
  activation m_act = activation::gelu_erf;
  double m_eps = 1e-12;
};

template <typename Scalar>
prompt_head<Scalar>::prompt_head(const encoder_weights<Scalar>& w, std::vector<std::int32_t> label_words)
    : m_words(std::move(label_words)) {
  if (!w.has_mlm_head()) throw invalid_argument("prompt_head: the checkpoint has no masked-LM head");
  if (m_words.size() < 2)
    throw invalid_argument("prompt_head: label words expected >= 2, got " + std::to_string(m_words.size()));
  const index V = w.word_embeddings.rows(), H = w.mlm_transform.in_features();
  for (auto id : m_words)
    if (id < 0 || id >= V)
      throw invalid_argument("prompt_head: label-word id expected in [0, " + std::to_string(V) + "), got " +
                             std::to_string(id));
  m_params.add("lm_head.dense.weight", H, H, param_group::weight);
  m_params.add("lm_head.dense.bias", H, 1, param_group::bias);
  m_params.add("lm_head.layer_norm.weight", H, 1, param_group::norm);
  m_params.add("lm_head.layer_norm.bias", H, 1, param_group::norm);
  m_params.add("lm_head.label_bias", static_cast<index>(m_words.size()), 1, param_group::bias);
  m_params.value(0) = w.mlm_transform.weight;
  m_params.value(1) = w.mlm_transform.bias;
  m_params.value(2) = w.mlm_norm.gamma;
  m_params.value(3) = w.mlm_norm.beta;
  for (std::size_t c = 0; c < m_words.size(); ++c)
    m_params.value(4)(static_cast<index>(c), 0) = w.mlm_bias[m_words[c]];
  m_act = w.config.hidden_act;
  m_eps = w.config.layer_norm_eps;
}

template <typename Scalar>
matrix<Scalar> prompt_head<Scalar>::forward(const encoder_weights<Scalar>& w, const matrix<Scalar>& h,
                                            const batch& b, const std::vector<index>& mask_pos,
                                            cache_type* cache) const {
  if (static_cast<index>(mask_pos.size()) != b.size())
    throw invalid_argument("prompt_head::forward: mask positions expected " + std::to_string(b.size()) +
                           ", got " + std::to_string(mask_pos.size()));
  matrix<Scalar> x(b.size(), h.cols());
  std::vector<index> rows;
  for (index i = 0; i < b.size(); ++i) {
    const index t = mask_pos[static_cast<std::size_t>(i)];
    if (t < 0 || t >= b.time() || !b.mask(i, t))
      throw invalid_argument("prompt_head::forward: mask position of sequence " + std::to_string(i) +
                             " is outside its tokens");
    rows.push_back(i * b.time() + t);
    x.row(i) = h.row(rows.back());
  }
  matrix<Scalar> u, g;
  const matrix<Scalar> W = m_params.value(0);
  const vector<Scalar> bias = m_params.value(1).col(0);
  ops::linear_forward(x, W, bias, u);
  ops::activation_forward(m_act, u, g);
  const vector<Scalar> gamma = m_params.value(2).col(0), beta = m_params.value(3).col(0);
  ops::layer_norm_forward(g, gamma, beta, m_eps, g, cache ? &cache->norm : nullptr);
  matrix<Scalar> logits(b.size(), num_classes());
  for (index c = 0; c < num_classes(); ++c)
    logits.col(c) = (g * w.word_embeddings.row(m_words[static_cast<std::size_t>(c)]).transpose()).array() +
                    m_params.value(4)(c, 0);
  if (cache) {
    cache->x = std::move(x);
    cache->u = std::move(u);
    cache->rows = std::move(rows);
  }
  return logits;
}

template <typename Scalar>
matrix<Scalar> prompt_head<Scalar>::backward(const encoder_weights<Scalar>& w, const matrix<Scalar>& d_logits,
                                             const batch& b, const cache_type& cache) {
  const index H = cache.x.cols();
  matrix<Scalar> dg = matrix<Scalar>::Zero(d_logits.rows(), H);
  for (index c = 0; c < num_classes(); ++c)
    dg.noalias() += d_logits.col(c) * w.word_embeddings.row(m_words[static_cast<std::size_t>(c)]);
  m_params.grad(4) += d_logits.colwise().sum().transpose();
  vector<Scalar> dgamma = vector<Scalar>::Zero(H), dbeta = vector<Scalar>::Zero(H);
  const vector<Scalar> gamma = m_params.value(2).col(0);
  ops::layer_norm_backward(dg, gamma, cache.norm, dg, &dgamma, &dbeta);
  m_params.grad(2) += dgamma;
  m_params.grad(3) += dbeta;
  ops::activation_backward(m_act, cache.u, dg);
  auto dW = m_params.grad(0);
  vector<Scalar> db = vector<Scalar>::Zero(H);
  ops::linear_backward_weight(cache.x, dg, dW, &db);
  m_params.grad(1) += db;
  matrix<Scalar> dx;
  const matrix<Scalar> W = m_params.value(0);
  ops::linear_backward_input(dg, W, dx);
  matrix<Scalar> dh = matrix<Scalar>::Zero(b.rows(), H);
  for (std::size_t i = 0; i < cache.rows.size(); ++i) dh.row(cache.rows[i]) += dx.row(static_cast<index>(i));
  return dh;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TASK_HEADS
#include "../detail/instances.hpp"

#endif  // PEFT_TASK_HEADS_HPP
