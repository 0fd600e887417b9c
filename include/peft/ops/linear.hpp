// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_LINEAR_HPP
#define PEFT_OPS_LINEAR_HPP

/// @file linear.hpp
/// Affine map `y = x W^T + b` on row-major `[rows x features]` blocks, with the backward
/// pieces split so that a frozen weight never gets a weight-gradient computed.

#include <type_traits>
#include <vector>

#include "../core/bf16.hpp"
#include "../core/types.hpp"
#include "dnnl_gemm.hpp"

#if defined(PEFT_OPENBLAS)
#include <cblas.h>
#endif

namespace peft::ops {

namespace detail {
/// Whether `T` is a float matrix peft can hand to a BLAS-style GEMM: row-major with direct
/// access to its storage (a `matrix<float>`, or a map or row block of one).
template <typename T>
constexpr bool gemm_operand_v = std::is_same_v<typename T::Scalar, float> &&
                                (int(T::Flags) & Eigen::RowMajorBit) != 0 &&
                                (int(T::Flags) & Eigen::DirectAccessBit) != 0;

/// With PEFT_DNNL (oneDNN) or PEFT_BLAS (OpenBLAS), `C = op(A) op(B) + beta C` (beta 0 or 1)
/// on row-major float operands with unit inner stride through that library; returns false
/// (the caller uses Eigen) for anything else. oneDNN wins when both are on.
template <typename A, typename B, typename C>
bool blas_gemm([[maybe_unused]] bool trans_a, [[maybe_unused]] bool trans_b, [[maybe_unused]] const A& a,
               [[maybe_unused]] const B& b, [[maybe_unused]] float beta, [[maybe_unused]] C& c) {
#if defined(PEFT_DNNL) || defined(PEFT_OPENBLAS)
  if constexpr (gemm_operand_v<A> && gemm_operand_v<B> && gemm_operand_v<C>) {
    if (a.innerStride() != 1 || b.innerStride() != 1 || c.innerStride() != 1) return false;
    const auto m = trans_a ? a.cols() : a.rows();
    const auto k = trans_a ? a.rows() : a.cols();
    const auto n = trans_b ? b.rows() : b.cols();
    if (m == 0 || n == 0 || k == 0) return false;
#if defined(PEFT_DNNL)
    return dnnl_gemm_cache::instance().run(gemm_operands::f32, trans_a, trans_b, m, n, k, a.data(), a.outerStride(),
                                           b.data(), b.outerStride(), beta != 0.0f, c.data(), c.outerStride());
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a.data(),
                static_cast<blasint>(a.outerStride()), b.data(), static_cast<blasint>(b.outerStride()), beta,
                c.data(), static_cast<blasint>(c.outerStride()));
    return true;
#endif
  }
#endif
  return false;
}

/// `C (+)= A W` or `C (+)= A W^T` with `A` float `[m x k]` rounded to bf16 and `W` a bf16
/// matrix, accumulated in float: oneDNN with PEFT_DNNL, otherwise the same arithmetic
/// (both operands rounded to bf16, float products) through Eigen on a widened copy of W.
template <typename DerivedA>
void bf16_gemm(const Eigen::MatrixBase<DerivedA>& a, const bf16_matrix& w, bool trans_w, bool accumulate,
               matrix<float>& c) {
  static_assert(std::is_same_v<typename DerivedA::Scalar, float>, "peft: bf16 weights multiply float activations");
  const index m = a.rows(), k = a.cols(), n = trans_w ? w.rows() : w.cols();
  if (m == 0 || n == 0) return;
  const matrix<float>& ac = a.derived();  // a plain row-major copy, if a is an expression
  thread_local std::vector<bf16_bits> a16;
  a16.resize(static_cast<std::size_t>(m * k));
  float_to_bf16(ac.data(), a16.data(), a16.size());
#if defined(PEFT_DNNL)
  if (dnnl_gemm_cache::instance().run(gemm_operands::bf16, false, trans_w, m, n, k, a16.data(), k, w.data(),
                                      w.cols(), accumulate, c.data(), c.cols()))
    return;
#endif
  matrix<float> ar(m, k);
  for (std::size_t i = 0; i < a16.size(); ++i) ar.data()[i] = bf16_to_float(a16[i]);
  const matrix<float> wf = w.to_float();
  if (accumulate) {
    if (trans_w) c.noalias() += ar * wf.transpose();
    else c.noalias() += ar * wf;
  } else {
    if (trans_w) c.noalias() = ar * wf.transpose();
    else c.noalias() = ar * wf;
  }
}
}  // namespace detail

/// `C = op(A) op(B)`, or `C += op(A) op(B)` with @p accumulate (then C must be sized; else
/// it is resized when it can be). op transposes when the flag says so. Goes to the GEMM
/// backend (PEFT_DNNL / PEFT_BLAS) when the operands allow, to Eigen otherwise; for products
/// a policy computes on its own parameters (adapter projections and their gradients).
template <typename DA, typename DB, typename DC>
void matmul(const Eigen::MatrixBase<DA>& a, bool trans_a, const Eigen::MatrixBase<DB>& b, bool trans_b,
            Eigen::MatrixBase<DC>& c, bool accumulate = false) {
  const index m = trans_a ? a.cols() : a.rows(), n = trans_b ? b.rows() : b.cols();
  PEFT_ASSERT((trans_a ? a.rows() : a.cols()) == (trans_b ? b.cols() : b.rows()));
  if (!accumulate) c.derived().resize(m, n);
  PEFT_ASSERT(c.rows() == m && c.cols() == n);
  if (detail::blas_gemm(trans_a, trans_b, a.derived(), b.derived(), accumulate ? 1.0f : 0.0f, c.derived())) return;
  auto run = [&](const auto& x, const auto& y) {
    if (accumulate) c.derived().noalias() += x * y;
    else c.derived().noalias() = x * y;
  };
  if (trans_a && trans_b) run(a.transpose(), b.transpose());
  else if (trans_a) run(a.transpose(), b);
  else if (trans_b) run(a, b.transpose());
  else run(a, b);
}

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

/// y = x W^T (+ b) with a bf16 frozen weight `W` `[out x in]`: x is rounded to bf16, the
/// products are accumulated in float, the bias (float) is added in float.
template <typename DerivedX>
void linear_forward(const Eigen::MatrixBase<DerivedX>& x, const bf16_matrix& w, const vector<float>& b,
                    matrix<float>& y) {
  PEFT_ASSERT(x.cols() == w.cols());
  y.resize(x.rows(), w.rows());
  detail::bf16_gemm(x, w, true, false, y);
  if (b.size() != 0) y.rowwise() += b.transpose();
}

/// dx (+)= dy W with a bf16 frozen weight (dy rounded to bf16, float accumulation). The
/// forward pass's rounding of x is treated as the identity, as autocast does.
template <typename DerivedDy>
void linear_backward_input(const Eigen::MatrixBase<DerivedDy>& dy, const bf16_matrix& w, matrix<float>& dx,
                           bool accumulate = false) {
  PEFT_ASSERT(dy.cols() == w.rows());
  if (accumulate) {
    PEFT_ASSERT(dx.rows() == dy.rows() && dx.cols() == w.cols());
  } else {
    dx.resize(dy.rows(), w.cols());
  }
  detail::bf16_gemm(dy, w, false, accumulate, dx);
}

}  // namespace peft::ops

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPS_LINEAR
#include "../detail/instances.hpp"

#endif  // PEFT_OPS_LINEAR_HPP
