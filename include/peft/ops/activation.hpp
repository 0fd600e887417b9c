// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_ACTIVATION_HPP
#define PEFT_OPS_ACTIVATION_HPP

/// @file activation.hpp
/// Element-wise non-linearities with their derivatives.

#include <cmath>

#include <unsupported/Eigen/SpecialFunctions>  // vectorised erf for Eigen arrays

#include "../core/types.hpp"

namespace peft::ops {

/// y = act(u), element-wise. `y` may alias `u`. A NaN input gives a NaN output.
template <typename Scalar>
void activation_forward(activation act, const matrix<Scalar>& u, matrix<Scalar>& y) {
  switch (act) {
    // Not cwiseMax: Eigen's vectorised max may return 0 for a NaN input, silently zeroing it.
    case activation::relu: y = u.unaryExpr([](Scalar x) { return x < Scalar(0) ? Scalar(0) : x; }); break;
    // Whole-array expressions, so that erf/tanh/exp vectorise (float; double stays scalar
    // libm). GELU(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2, or its tanh form.
    case activation::gelu_erf:
      y = (Scalar(0.5) * u.array() * (Scalar(1) + (u.array() * Scalar(0.70710678118654752440)).erf())).matrix();
      break;
    case activation::gelu_tanh: {
      const Scalar k = Scalar(0.79788456080286535588);
      const auto x = u.array();
      y = (Scalar(0.5) * x * (Scalar(1) + (k * (x + Scalar(0.044715) * x * x * x)).tanh())).matrix();
      break;
    }
  }
}

/// du = dy * act'(u), in place on `dy`.
template <typename Scalar>
void activation_backward(activation act, const matrix<Scalar>& u, matrix<Scalar>& dy) {
  PEFT_ASSERT(u.rows() == dy.rows() && u.cols() == dy.cols());
  switch (act) {
    case activation::relu: dy = (u.array() > Scalar(0)).select(dy, Scalar(0)); break;
    case activation::gelu_erf: {  // Phi(x) + x phi(x)
      const auto x = u.array();
      dy.array() *= Scalar(0.5) * (Scalar(1) + (x * Scalar(0.70710678118654752440)).erf()) +
                    x * ((Scalar(-0.5) * x * x).exp() * Scalar(0.39894228040143267794));
      break;
    }
    case activation::gelu_tanh: {
      const Scalar k = Scalar(0.79788456080286535588);
      const auto x = u.array();
      const auto t = (k * (x + Scalar(0.044715) * x * x * x)).tanh().eval();  // once, not per use
      dy.array() *= Scalar(0.5) * (Scalar(1) + t) +
                    Scalar(0.5) * x * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3 * 0.044715) * x * x);
      break;
    }
  }
}

/// y = tanh(u) and its backward from the output: du = dy * (1 - y^2).
template <typename Scalar>
void tanh_backward_from_output(const matrix<Scalar>& y, matrix<Scalar>& dy) {
  dy.array() *= (Scalar(1) - y.array().square());
}

}  // namespace peft::ops

#endif  // PEFT_OPS_ACTIVATION_HPP
