// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_POOLING_HPP
#define PEFT_MODEL_POOLING_HPP

/// @file pooling.hpp
/// Reductions of `[B*T x H]` hidden states to one row per sequence, plain (CLS, mean) or
/// through the frozen heads a checkpoint ships (BERT pooler, USE-lite sentence head): forward
/// with a cache, and the input-gradient for training a policy under a task head. `pool_kind`
/// is the one pooling enum of peft (task heads, saved tasks, `peft-encode`).

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/types.hpp"
#include "../ops/linear.hpp"
#include "../core/batch.hpp"
#include "weights.hpp"

namespace peft {


/// How a task head reduces the encoder output.
enum class pool_kind {
  cls,       ///< the first token's hidden state
  mean,      ///< mean over real tokens
  pooler,    ///< BERT's frozen pooler: tanh(W h_cls + b)
  sentence,  ///< USE-lite's frozen sentence head: l2norm(tanh(W mean(h) + b))
  tokens,    ///< no pooling: every text position's hidden state (token classification, spans)
};

inline pool_kind parse_pool_kind(const std::string& s) {
  if (s == "cls") return pool_kind::cls;
  if (s == "mean") return pool_kind::mean;
  if (s == "pooler") return pool_kind::pooler;
  if (s == "sentence") return pool_kind::sentence;
  if (s == "tokens") return pool_kind::tokens;
  throw invalid_argument("parse_pool_kind: expected cls, mean, pooler, sentence or tokens, got '" + s + "'");
}
inline const char* to_string(pool_kind k) noexcept {
  switch (k) {
    case pool_kind::cls: return "cls";
    case pool_kind::mean: return "mean";
    case pool_kind::pooler: return "pooler";
    case pool_kind::sentence: return "sentence";
    case pool_kind::tokens: return "tokens";
  }
  return "?";
}

/// The natural pooling of an architecture: the sentence head for USE-lite, CLS otherwise.
inline pool_kind default_pool_kind(const std::string& model_type) {
  return model_type == "use_lite" ? pool_kind::sentence : pool_kind::cls;
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

/// Positions in front of every row that a prompt-tuning policy supplies (`virtual_token_id`).
inline index leading_virtual_tokens(const batch& b) noexcept {
  index n = 0;
  while (n < b.time() && b.ids(0, n) == virtual_token_id) ++n;
  return n;
}

/// The hidden states of the text's positions, `[B*T' x H]`: `h` itself, or without the
/// virtual tokens a prompt-tuning policy put in front (T' = T - those), so a per-token head's
/// rows are the text's whatever the policy.
template <typename Scalar>
matrix<Scalar> token_rows(const matrix<Scalar>& h, const batch& b) {
  detail::check_hidden("token_rows", h.rows(), b);
  const index n = leading_virtual_tokens(b), T = b.time();
  if (n == 0) return h;
  matrix<Scalar> out(b.size() * (T - n), h.cols());
  for (index i = 0; i < b.size(); ++i) out.middleRows(i * (T - n), T - n) = h.middleRows(i * T + n, T - n);
  return out;
}

template <typename Scalar>
struct pool_cache {
  matrix<Scalar> act;   ///< tanh output (pooler / sentence)
  vector<Scalar> norm;  ///< sentence: the L2 norm used per row
};

/// Pools `h` (`[B*T x H]`) to `[B x H']`.
template <typename Scalar>
matrix<Scalar> pool_forward(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b, pool_kind kind,
                            nondeduced_t<pool_cache<Scalar>>* cache = nullptr) {
  switch (kind) {
    case pool_kind::cls: return cls_pool(h, b);
    case pool_kind::mean: return mean_pool(h, b);
    case pool_kind::tokens: return token_rows(h, b);
    case pool_kind::pooler: {
      auto out = bert_pooler(w, h, b);
      if (cache) cache->act = out;
      return out;
    }
    case pool_kind::sentence: {
      if (w.sentence_dense.empty()) throw invalid_argument("pool_forward: the model has no sentence head");
      matrix<Scalar> t;
      ops::linear_forward(mean_pool(h, b), w.sentence_dense.weight, w.sentence_dense.bias, t);
      t = t.array().tanh();
      vector<Scalar> n(t.rows());
      matrix<Scalar> out = t;
      for (index i = 0; i < t.rows(); ++i) {
        n[i] = std::sqrt(std::max(t.row(i).squaredNorm(), static_cast<Scalar>(1e-12)));
        out.row(i) /= n[i];
      }
      if (cache) {
        cache->act = std::move(t);
        cache->norm = std::move(n);
      }
      return out;
    }
  }
  return h;
}

/// Input-gradient of pool_forward: `d_pooled` (`[B x H']`) to `d h` (`[B*T x H]`).
template <typename Scalar>
matrix<Scalar> pool_backward(const encoder_weights<Scalar>& w, const matrix<Scalar>& d_pooled, const batch& b,
                             pool_kind kind, const pool_cache<Scalar>& cache, index hidden) {
  const index B = b.size(), T = b.time();
  switch (kind) {
    case pool_kind::cls: {
      matrix<Scalar> dh = matrix<Scalar>::Zero(B * T, hidden);
      for (index i = 0; i < B; ++i) dh.row(i * T) = d_pooled.row(i);
      return dh;
    }
    case pool_kind::mean: return mean_pool_backward(d_pooled, b);
    case pool_kind::tokens: {
      const index n = leading_virtual_tokens(b);
      if (n == 0) return d_pooled;
      matrix<Scalar> dh = matrix<Scalar>::Zero(B * T, hidden);
      for (index i = 0; i < B; ++i) dh.middleRows(i * T + n, T - n) = d_pooled.middleRows(i * (T - n), T - n);
      return dh;
    }
    case pool_kind::pooler: {
      matrix<Scalar> du = d_pooled.array() * (Scalar(1) - cache.act.array().square());
      matrix<Scalar> dcls;
      ops::linear_backward_input(du, w.pooler.weight, dcls);
      matrix<Scalar> dh = matrix<Scalar>::Zero(B * T, hidden);
      for (index i = 0; i < B; ++i) dh.row(i * T) = dcls.row(i);
      return dh;
    }
    case pool_kind::sentence: {
      const auto& t = cache.act;
      matrix<Scalar> dt(t.rows(), t.cols());
      for (index i = 0; i < t.rows(); ++i) {
        const Scalar n = cache.norm[i];
        if (t.row(i).squaredNorm() > static_cast<Scalar>(1e-12)) {
          // e = t / |t|: de/dt = (I - e e^T) / |t|
          const auto e = t.row(i) / n;
          dt.row(i) = (d_pooled.row(i) - e * e.dot(d_pooled.row(i))) / n;
        } else {
          dt.row(i) = d_pooled.row(i) / n;  // the clamp is active: a plain scale
        }
      }
      dt.array() *= (Scalar(1) - t.array().square());
      matrix<Scalar> dm;
      ops::linear_backward_input(dt, w.sentence_dense.weight, dm);
      return mean_pool_backward(dm, b);
    }
  }
  return d_pooled;
}

/// USE-lite sentence embedding: L2-normalised tanh(dense(mean_pool(h))), `[B x 512]`
/// (`pool_forward` with `pool_kind::sentence`).
template <typename Scalar>
matrix<Scalar> use_sentence_embedding(const encoder_weights<Scalar>& w, const matrix<Scalar>& h, const batch& b) {
  return pool_forward(w, h, b, pool_kind::sentence);
}

}  // namespace peft

#endif  // PEFT_MODEL_POOLING_HPP
