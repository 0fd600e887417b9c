// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_POOLING_HPP
#define PEFT_MODEL_POOLING_HPP

/// @file pooling.hpp
/// Differentiable reductions of `[B*T x H]` hidden states to one row per sequence, through
/// the frozen heads a checkpoint ships (BERT pooler, USE-lite sentence head): forward with a
/// cache, and the input-gradient for training a policy under a task head.

#include <cmath>
#include <string>

#include "../core/types.hpp"
#include "../ops/linear.hpp"
#include "batch.hpp"
#include "heads.hpp"
#include "weights.hpp"

namespace peft {

/// How a task head reduces the encoder output.
enum class pool_kind {
  cls,       ///< the first token's hidden state
  mean,      ///< mean over real tokens
  pooler,    ///< BERT's frozen pooler: tanh(W h_cls + b)
  sentence,  ///< USE-lite's frozen sentence head: l2norm(tanh(W mean(h) + b))
};

inline pool_kind parse_pool_kind(const std::string& s) {
  if (s == "cls") return pool_kind::cls;
  if (s == "mean") return pool_kind::mean;
  if (s == "pooler") return pool_kind::pooler;
  if (s == "sentence") return pool_kind::sentence;
  throw invalid_argument("parse_pool_kind: expected cls, mean, pooler or sentence, got '" + s + "'");
}
inline const char* to_string(pool_kind k) noexcept {
  switch (k) {
    case pool_kind::cls: return "cls";
    case pool_kind::mean: return "mean";
    case pool_kind::pooler: return "pooler";
    case pool_kind::sentence: return "sentence";
  }
  return "?";
}

/// The natural pooling of an architecture: the sentence head for USE-lite, CLS otherwise.
inline pool_kind default_pool_kind(const std::string& model_type) {
  return model_type == "use_lite" ? pool_kind::sentence : pool_kind::cls;
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

}  // namespace peft

#endif  // PEFT_MODEL_POOLING_HPP
