// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_LINEAR_HPP
#define PEFT_OPS_LINEAR_HPP

/// @file linear.hpp
/// Affine map `y = x W^T + b` on row-major `[rows x features]` blocks, with the backward
/// pieces split so that a frozen weight never gets a weight-gradient computed.

#include <type_traits>

#include "../core/types.hpp"

#if defined(PEFT_OPENBLAS)
#include <cblas.h>
#endif

namespace peft::ops {

namespace detail {
/// With PEFT_BLAS, `C = op(A) op(B) + beta C` on plain row-major float matrices
/// through cblas_sgemm; returns false (the caller uses Eigen) for anything else.
template <typename A, typename B, typename C>
bool blas_gemm([[maybe_unused]] bool trans_a, [[maybe_unused]] bool trans_b, [[maybe_unused]] const A& a,
               [[maybe_unused]] const B& b, [[maybe_unused]] float beta, [[maybe_unused]] C& c) {
#if defined(PEFT_OPENBLAS)
  if constexpr (std::is_same_v<A, matrix<float>> && std::is_same_v<B, matrix<float>> &&
                std::is_same_v<C, matrix<float>>) {
    const auto m = static_cast<blasint>(trans_a ? a.cols() : a.rows());
    const auto k = static_cast<blasint>(trans_a ? a.rows() : a.cols());
    const auto n = static_cast<blasint>(trans_b ? b.rows() : b.cols());
    if (m == 0 || n == 0 || k == 0) return false;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                1.0f, a.data(), static_cast<blasint>(a.cols()), b.data(), static_cast<blasint>(b.cols()), beta,
                c.data(), static_cast<blasint>(c.cols()));
    return true;
  }
#endif
  return false;
}
}  // namespace detail

/// y = x W^T (+ b). `W` is `[out x in]`; `b` may be empty.
template <typename Scalar, typename DerivedX>
void linear_forward(const Eigen::MatrixBase<DerivedX>& x, const matrix<Scalar>& w, const vector<Scalar>& b,
                    matrix<Scalar>& y) {
  PEFT_ASSERT(x.cols() == w.cols());
  y.resize(x.rows(), w.rows());
  if (!detail::blas_gemm(false, true, x.derived(), w, 0.0f, y)) y.noalias() = x * w.transpose();
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
    if (!detail::blas_gemm(false, false, dy.derived(), w, 1.0f, dx)) dx.noalias() += dy * w;
  } else {
    dx.resize(dy.rows(), w.cols());
    if (!detail::blas_gemm(false, false, dy.derived(), w, 0.0f, dx)) dx.noalias() = dy * w;
  }
}

/// dW += dy^T x and db += column sums of dy; only for trainable weights.
template <typename Scalar, typename DerivedX, typename DerivedDy, typename DerivedW>
void linear_backward_weight(const Eigen::MatrixBase<DerivedX>& x, const Eigen::MatrixBase<DerivedDy>& dy,
                            Eigen::MatrixBase<DerivedW>& dw, vector<Scalar>* db) {
  PEFT_ASSERT(dw.rows() == dy.cols() && dw.cols() == x.cols());
  if (!detail::blas_gemm(true, false, dy.derived(), x.derived(), 1.0f, dw.derived()))
    dw.derived().noalias() += dy.transpose() * x;
  if (db) *db += dy.colwise().sum().transpose();
}

}  // namespace peft::ops

#endif  // PEFT_OPS_LINEAR_HPP
