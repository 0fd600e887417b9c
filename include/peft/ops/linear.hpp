// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_LINEAR_HPP
#define PEFT_OPS_LINEAR_HPP

/// @file linear.hpp
/// Affine map `y = x W^T + b` on row-major `[rows x features]` blocks, with the backward
/// pieces split so that a frozen weight never gets a weight-gradient computed.

#include "../core/types.hpp"

namespace peft::ops {

/// y = x W^T (+ b). `W` is `[out x in]`; `b` may be empty.
template <typename Scalar, typename DerivedX>
void linear_forward(const Eigen::MatrixBase<DerivedX>& x, const matrix<Scalar>& w, const vector<Scalar>& b,
                    matrix<Scalar>& y) {
  PEFT_ASSERT(x.cols() == w.cols());
  y.resize(x.rows(), w.rows());
  y.noalias() = x * w.transpose();
  if (b.size() != 0) y.rowwise() += b.transpose();
}

/// Returning form of linear_forward.
template <typename Scalar, typename DerivedX>
matrix<Scalar> linear_forward_ret(const Eigen::MatrixBase<DerivedX>& x, const matrix<Scalar>& w,
                                  const vector<Scalar>& b) {
  matrix<Scalar> y;
  linear_forward(x, w, b, y);
  return y;
}

/// dx (+)= dy W. With `accumulate` the result is added to `dx` (which must be sized).
template <typename Scalar, typename DerivedDy>
void linear_backward_input(const Eigen::MatrixBase<DerivedDy>& dy, const matrix<Scalar>& w, matrix<Scalar>& dx,
                           bool accumulate = false) {
  PEFT_ASSERT(dy.cols() == w.rows());
  if (accumulate) {
    PEFT_ASSERT(dx.rows() == dy.rows() && dx.cols() == w.cols());
    dx.noalias() += dy * w;
  } else {
    dx.resize(dy.rows(), w.cols());
    dx.noalias() = dy * w;
  }
}

/// dW += dy^T x and db += column sums of dy; only for trainable weights.
template <typename Scalar, typename DerivedX, typename DerivedDy, typename DerivedW>
void linear_backward_weight(const Eigen::MatrixBase<DerivedX>& x, const Eigen::MatrixBase<DerivedDy>& dy,
                            Eigen::MatrixBase<DerivedW>& dw, vector<Scalar>* db) {
  PEFT_ASSERT(dw.rows() == dy.cols() && dw.cols() == x.cols());
  dw.derived().noalias() += dy.transpose() * x;
  if (db) *db += dy.colwise().sum().transpose();
}

}  // namespace peft::ops

#endif  // PEFT_OPS_LINEAR_HPP
