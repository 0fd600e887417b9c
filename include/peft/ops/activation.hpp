// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_ACTIVATION_HPP
#define PEFT_OPS_ACTIVATION_HPP

/// @file activation.hpp
/// Element-wise non-linearities with their derivatives.

#include <cmath>

#include "../core/types.hpp"

namespace peft::ops {

namespace detail {
template <typename Scalar>
Scalar gelu_erf(Scalar x) {
  return Scalar(0.5) * x * (Scalar(1) + std::erf(x * Scalar(0.70710678118654752440)));
}
template <typename Scalar>
Scalar gelu_erf_grad(Scalar x) {
  const Scalar cdf = Scalar(0.5) * (Scalar(1) + std::erf(x * Scalar(0.70710678118654752440)));
  const Scalar pdf = std::exp(Scalar(-0.5) * x * x) * Scalar(0.39894228040143267794);
  return cdf + x * pdf;
}
template <typename Scalar>
Scalar gelu_tanh(Scalar x) {
  const Scalar k = Scalar(0.79788456080286535588);
  return Scalar(0.5) * x * (Scalar(1) + std::tanh(k * (x + Scalar(0.044715) * x * x * x)));
}
template <typename Scalar>
Scalar gelu_tanh_grad(Scalar x) {
  const Scalar k = Scalar(0.79788456080286535588);
  const Scalar t = std::tanh(k * (x + Scalar(0.044715) * x * x * x));
  return Scalar(0.5) * (Scalar(1) + t) +
         Scalar(0.5) * x * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3 * 0.044715) * x * x);
}
}  // namespace detail

/// y = act(u), element-wise. `y` may alias `u`. A NaN input gives a NaN output.
template <typename Scalar>
void activation_forward(activation act, const matrix<Scalar>& u, matrix<Scalar>& y) {
  switch (act) {
    // Not cwiseMax: Eigen's vectorised max may return 0 for a NaN input, silently zeroing it.
    case activation::relu: y = u.unaryExpr([](Scalar x) { return x < Scalar(0) ? Scalar(0) : x; }); break;
    case activation::gelu_erf: y = u.unaryExpr([](Scalar x) { return detail::gelu_erf(x); }); break;
    case activation::gelu_tanh: y = u.unaryExpr([](Scalar x) { return detail::gelu_tanh(x); }); break;
  }
}

/// du = dy * act'(u), in place on `dy`.
template <typename Scalar>
void activation_backward(activation act, const matrix<Scalar>& u, matrix<Scalar>& dy) {
  PEFT_ASSERT(u.rows() == dy.rows() && u.cols() == dy.cols());
  switch (act) {
    case activation::relu: dy = (u.array() > Scalar(0)).select(dy, Scalar(0)); break;
    case activation::gelu_erf:
      dy.array() *= u.unaryExpr([](Scalar x) { return detail::gelu_erf_grad(x); }).array();
      break;
    case activation::gelu_tanh:
      dy.array() *= u.unaryExpr([](Scalar x) { return detail::gelu_tanh_grad(x); }).array();
      break;
  }
}

/// y = tanh(u) and its backward from the output: du = dy * (1 - y^2).
template <typename Scalar>
void tanh_backward_from_output(const matrix<Scalar>& y, matrix<Scalar>& dy) {
  dy.array() *= (Scalar(1) - y.array().square());
}

}  // namespace peft::ops

#endif  // PEFT_OPS_ACTIVATION_HPP
