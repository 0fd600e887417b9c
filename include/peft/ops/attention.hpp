// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_ATTENTION_HPP
#define PEFT_OPS_ATTENTION_HPP

/// @file attention.hpp
/// Multi-head scaled dot-product attention over a padded batch, with optional key/value
/// prefixes (prefix-tuning) that every query may attend to. Parallel over (batch x head).
///
/// Layout: `q`, `k`, `v` and the context are `[B*T x d]` row-major, head `h` owning columns
/// `[h*d_h, (h+1)*d_h)`. Key `j` of sequence `b` is visible when `mask(b, j) != 0`; prefix
/// keys are always visible. Probabilities are stored `[(b*heads + h)*T + i, P + j]`.

#include <cmath>
#include <limits>
#include <vector>

#include "../core/random.hpp"
#include "../core/types.hpp"
#include "dropout.hpp"

namespace peft::ops {

struct attention_shape {
  index batch = 0;
  index time = 0;
  index heads = 0;
  index prefix = 0;  ///< number of prefix keys/values (0 without prefix-tuning)
};

/// What the backward pass needs.
template <typename Scalar>
struct attention_cache {
  matrix<Scalar> probs;      ///< softmax output, before dropout
  matrix<Scalar> drop_mask;  ///< dropout scale per probability, empty in eval mode
};

/// The first non-finite attention score (before the softmax), for numeric checks.
struct attention_fault {
  bool found = false;
  index sequence = 0;
  index head = 0;
  index query = 0;
  index key = 0;  ///< column of the score: keys `[0, prefix)` are prefix keys
  double value = 0;
};

/// ctx = softmax(scale * q k^T + mask) v per (sequence, head).
/// `pk`/`pv` are `[prefix x d]` (shared by the batch) or null when `shape.prefix == 0`.
/// When `score_check` is non-null, every score (masked keys included) is checked before the
/// softmax and the first non-finite one (in sequence, head, query, key order) is reported
/// there; the caller decides whether to throw (no exception leaves the parallel loop).
/// `score_bias`, when non-null, is `[heads*T x T]` (row `h*T + i`) and is added to the scaled
/// scores of the sequence's own keys (MPNet's relative position bias; prefix keys get none).
/// It is a constant: the backward needs nothing of it.
template <typename Scalar>
void attention_forward(const attention_shape& shape, const matrix<Scalar>& q, const matrix<Scalar>& k,
                       const matrix<Scalar>& v, const nondeduced_t<matrix<Scalar>>* pk,
                       const nondeduced_t<matrix<Scalar>>* pv, const id_matrix& mask,
                       nondeduced_t<Scalar> scale, double dropout, rng* gen, matrix<Scalar>& ctx,
                       nondeduced_t<attention_cache<Scalar>>* cache, attention_fault* score_check = nullptr,
                       const nondeduced_t<matrix<Scalar>>* score_bias = nullptr) {
  const index B = shape.batch, T = shape.time, H = shape.heads, P = shape.prefix;
  const index d = q.cols(), dh = d / H, S = P + T;
  PEFT_ASSERT(d % H == 0 && q.rows() == B * T && k.rows() == B * T && v.rows() == B * T);
  PEFT_ASSERT(P == 0 || (pk && pv && pk->rows() == P && pk->cols() == d && pv->rows() == P));
  ctx.resize(B * T, d);
  matrix<Scalar> local_probs;
  matrix<Scalar>& probs = cache ? cache->probs : local_probs;
  probs.resize(B * H * T, S);
  const bool drop = dropout > 0.0 && gen != nullptr;
  if (cache) {
    if (drop)
      make_dropout_mask(B * H * T, S, dropout, *gen, cache->drop_mask);
    else
      cache->drop_mask.resize(0, 0);
  }
  matrix<Scalar> local_mask;
  if (drop && !cache) make_dropout_mask(B * H * T, S, dropout, *gen, local_mask);
  const matrix<Scalar>& drop_mask = cache ? cache->drop_mask : local_mask;
  std::vector<attention_fault> faults;  // one slot per (sequence, head), only when checking
  if (score_check) faults.resize(static_cast<std::size_t>(B * H));

#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index bh = 0; bh < B * H; ++bh) {
    const index b = bh / H, h = bh % H;
    auto qb = q.block(b * T, h * dh, T, dh);
    auto kb = k.block(b * T, h * dh, T, dh);
    auto vb = v.block(b * T, h * dh, T, dh);
    auto pr = probs.block(bh * T, 0, T, S);
    if (P > 0) pr.leftCols(P).noalias() = (qb * pk->middleCols(h * dh, dh).transpose()) * scale;
    pr.rightCols(T).noalias() = (qb * kb.transpose()) * scale;
    if (score_bias) pr.rightCols(T) += score_bias->block(h * T, 0, T, T);
    if (score_check && !pr.allFinite()) {
      attention_fault& f = faults[static_cast<std::size_t>(bh)];
      for (index i = 0; i < T && !f.found; ++i)
        for (index j = 0; j < S; ++j)
          if (!std::isfinite(pr(i, j))) {
            f = attention_fault{true, b, h, i, j, static_cast<double>(pr(i, j))};
            break;
          }
    }
    // Row-wise softmax over the visible keys, vectorised (exp on whole rows). Masked keys
    // get exactly 0 whatever their score; a NaN score makes its row NaN, as before.
    Eigen::Array<bool, 1, Eigen::Dynamic> visible(S);
    bool all_visible = true;
    for (index j = 0; j < S; ++j) {
      visible(j) = j < P || mask(b, j - P) != 0;
      all_visible = all_visible && visible(j);
    }
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();
    for (index i = 0; i < T; ++i) {
      auto row = pr.row(i).array();
      if (all_visible) {
        const Scalar mx = row.maxCoeff();
        row = (row - mx).exp();
      } else {
        const Scalar mx = visible.select(row, neg_inf).maxCoeff();
        row = visible.select((row - mx).exp(), Scalar(0));
      }
      row /= row.sum();
    }
    auto out = ctx.block(b * T, h * dh, T, dh);
    if (drop) {
      thread_local matrix<Scalar> pd;  // [T x S] per thread, reused across (sequence, head) pairs and calls
      pd = pr.cwiseProduct(drop_mask.block(bh * T, 0, T, S));
      out.noalias() = pd.rightCols(T) * vb;
      if (P > 0) out.noalias() += pd.leftCols(P) * pv->middleCols(h * dh, dh);
    } else {
      out.noalias() = pr.rightCols(T) * vb;
      if (P > 0) out.noalias() += pr.leftCols(P) * pv->middleCols(h * dh, dh);
    }
  }
  if (score_check) {
    *score_check = attention_fault{};
    for (const auto& f : faults)
      if (f.found) {
        *score_check = f;
        break;
      }
  }
}

/// Gradients of `attention_forward` with respect to q, k, v and (when non-null) the prefix.
/// `dpk`/`dpv` are overwritten with the sums over the batch.
template <typename Scalar>
void attention_backward(const attention_shape& shape, const matrix<Scalar>& dctx, const matrix<Scalar>& q,
                        const matrix<Scalar>& k, const matrix<Scalar>& v, const nondeduced_t<matrix<Scalar>>* pk,
                        const nondeduced_t<matrix<Scalar>>* pv, const attention_cache<Scalar>& cache, nondeduced_t<Scalar> scale,
                        matrix<Scalar>& dq, matrix<Scalar>& dk, matrix<Scalar>& dv, nondeduced_t<matrix<Scalar>>* dpk,
                        nondeduced_t<matrix<Scalar>>* dpv) {
  const index B = shape.batch, T = shape.time, H = shape.heads, P = shape.prefix;
  const index d = q.cols(), dh = d / H, S = P + T;
  dq.resize(B * T, d);
  dk.resize(B * T, d);
  dv.resize(B * T, d);
  const bool drop = cache.drop_mask.size() != 0;
  // Per-sequence partial prefix gradients, summed after the parallel loop (no races).
  matrix<Scalar> part_pk, part_pv;
  if (P > 0) {
    part_pk = matrix<Scalar>::Zero(B * P, d);
    part_pv = matrix<Scalar>::Zero(B * P, d);
  }

#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index bh = 0; bh < B * H; ++bh) {
    const index b = bh / H, h = bh % H;
    auto qb = q.block(b * T, h * dh, T, dh);
    auto kb = k.block(b * T, h * dh, T, dh);
    auto vb = v.block(b * T, h * dh, T, dh);
    auto dout = dctx.block(b * T, h * dh, T, dh);
    auto pr = cache.probs.block(bh * T, 0, T, S);
    // dP = dctx V^T (through dropout), and dV = P_dropped^T dctx.
    thread_local matrix<Scalar> dp, pd;  // [T x S] per thread, reused across pairs and calls
    dp.resize(T, S);
    dp.rightCols(T).noalias() = dout * vb.transpose();
    if (P > 0) dp.leftCols(P).noalias() = dout * pv->middleCols(h * dh, dh).transpose();
    if (drop) {
      auto dm = cache.drop_mask.block(bh * T, 0, T, S);
      pd = pr.cwiseProduct(dm);
      dv.block(b * T, h * dh, T, dh).noalias() = pd.rightCols(T).transpose() * dout;
      if (P > 0) part_pv.block(b * P, h * dh, P, dh).noalias() = pd.leftCols(P).transpose() * dout;
      dp.array() *= dm.array();
    } else {
      dv.block(b * T, h * dh, T, dh).noalias() = pr.rightCols(T).transpose() * dout;
      if (P > 0) part_pv.block(b * P, h * dh, P, dh).noalias() = pr.leftCols(P).transpose() * dout;
    }
    // Softmax backward: dS = P * (dP - rowsum(dP * P)), then the scale.
    for (index i = 0; i < T; ++i) {
      const Scalar dot = dp.row(i).dot(pr.row(i));
      dp.row(i) = (pr.row(i).array() * (dp.row(i).array() - dot)) * scale;
    }
    dq.block(b * T, h * dh, T, dh).noalias() = dp.rightCols(T) * kb;
    if (P > 0) dq.block(b * T, h * dh, T, dh).noalias() += dp.leftCols(P) * pk->middleCols(h * dh, dh);
    dk.block(b * T, h * dh, T, dh).noalias() = dp.rightCols(T).transpose() * qb;
    if (P > 0) part_pk.block(b * P, h * dh, P, dh).noalias() = dp.leftCols(P).transpose() * qb;
  }
  if (P > 0) {
    if (dpk) {
      dpk->setZero(P, d);
      for (index b = 0; b < B; ++b) *dpk += part_pk.middleRows(b * P, P);
    }
    if (dpv) {
      dpv->setZero(P, d);
      for (index b = 0; b < B; ++b) *dpv += part_pv.middleRows(b * P, P);
    }
  }
}

}  // namespace peft::ops

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPS_ATTENTION
#include "../detail/instances.hpp"

#endif  // PEFT_OPS_ATTENTION_HPP
