// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_LAYER_NORM_HPP
#define PEFT_OPS_LAYER_NORM_HPP

/// @file layer_norm.hpp
/// Row-wise layer normalisation `y = (x - mean) / sqrt(var + eps) * gamma + beta` with the
/// biased variance, as PyTorch and TensorFlow compute it.

#include <cmath>

#include "../core/threading.hpp"
#include "../core/types.hpp"

namespace peft::ops {

/// Saved by the forward pass for the backward pass.
template <typename Scalar>
struct layer_norm_cache {
  matrix<Scalar> xhat;  ///< normalised input, [rows x d]
  vector<Scalar> rstd;  ///< 1 / sqrt(var + eps), [rows]
};

/// y = LN(x). Pass `cache` to record what the backward pass needs; `y` may alias `x`.
template <typename Scalar>
void layer_norm_forward(const matrix<Scalar>& x, const vector<Scalar>& gamma, const vector<Scalar>& beta,
                        double eps, matrix<Scalar>& y, nondeduced_t<layer_norm_cache<Scalar>>* cache) {
  const index rows = x.rows(), d = x.cols();
  PEFT_ASSERT(gamma.size() == d && beta.size() == d);
  if (cache) {
    cache->xhat.resize(rows, d);
    cache->rstd.resize(rows);
  }
  if (&y != &x) y.resize(rows, d);
  parallel_rows(rows, d, [&](index r0, index r1) {
    for (index r = r0; r < r1; ++r) {
      const Scalar mean = x.row(r).mean();
      const Scalar var = (x.row(r).array() - mean).square().mean();
      const Scalar rstd = Scalar(1) / std::sqrt(var + static_cast<Scalar>(eps));
      if (cache) {
        cache->rstd[r] = rstd;
        cache->xhat.row(r) = (x.row(r).array() - mean) * rstd;
        y.row(r) = cache->xhat.row(r).array() * gamma.transpose().array() + beta.transpose().array();
      } else {
        y.row(r) = ((x.row(r).array() - mean) * rstd) * gamma.transpose().array() + beta.transpose().array();
      }
    }
  });
}

/// dx = d LN(x) / dx applied to dy. Optional dgamma/dbeta accumulate (trainable norms only).
/// `dx` may alias `dy`.
template <typename Scalar>
void layer_norm_backward(const matrix<Scalar>& dy, const vector<Scalar>& gamma,
                         const layer_norm_cache<Scalar>& cache, matrix<Scalar>& dx,
                         nondeduced_t<vector<Scalar>>* dgamma = nullptr,
                         nondeduced_t<vector<Scalar>>* dbeta = nullptr) {
  const index rows = dy.rows(), d = dy.cols();
  PEFT_ASSERT(cache.xhat.rows() == rows && cache.xhat.cols() == d);
  if (dgamma) *dgamma += (dy.array() * cache.xhat.array()).colwise().sum().transpose().matrix();
  if (dbeta) *dbeta += dy.colwise().sum().transpose();
  if (&dx != &dy) dx.resize(rows, d);
  parallel_rows(rows, d, [&](index r0, index r1) {
    row_vector<Scalar> g(d);
    for (index r = r0; r < r1; ++r) {
      g = dy.row(r).array() * gamma.transpose().array();
      const Scalar mean_g = g.mean();
      const Scalar mean_gx = (g.array() * cache.xhat.row(r).array()).mean();
      dx.row(r) = (g.array() - mean_g - cache.xhat.row(r).array() * mean_gx) * cache.rstd[r];
    }
  });
}

}  // namespace peft::ops

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPS_LAYER_NORM
#include "../detail/instances.hpp"

#endif  // PEFT_OPS_LAYER_NORM_HPP
