// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_ACTIVATION_HPP
#define PEFT_OPS_ACTIVATION_HPP

/// @file activation.hpp
/// Element-wise non-linearities with their derivatives.

#include <cmath>

#include <unsupported/Eigen/SpecialFunctions>  // vectorised erf for Eigen arrays

#include "../core/threading.hpp"
#include "../core/types.hpp"

namespace peft::ops {

/// y = act(u), element-wise, over rows split across threads. `y` may alias `u`. A NaN input
/// gives a NaN output.
template <typename Scalar>
void activation_forward(activation act, const matrix<Scalar>& u, matrix<Scalar>& y) {
  if (&y != &u) y.resize(u.rows(), u.cols());
  parallel_rows(u.rows(), u.cols(), [&](index r0, index r1) {
    const auto x = u.middleRows(r0, r1 - r0).array();
    auto out = y.middleRows(r0, r1 - r0).array();
    switch (act) {
      // Not cwiseMax: Eigen's vectorised max may return 0 for a NaN input, silently zeroing it.
      case activation::relu: out = x.unaryExpr([](Scalar v) { return v < Scalar(0) ? Scalar(0) : v; }); break;
      // Whole-array expressions, so that erf/tanh/exp vectorise (float; double stays scalar
      // libm). GELU(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2, or its tanh form.
      case activation::gelu_erf:
        out = Scalar(0.5) * x * (Scalar(1) + (x * Scalar(0.70710678118654752440)).erf());
        break;
      case activation::gelu_tanh: {
        const Scalar k = Scalar(0.79788456080286535588);
        out = Scalar(0.5) * x * (Scalar(1) + (k * (x + Scalar(0.044715) * x * x * x)).tanh());
        break;
      }
    }
  });
}

/// du = dy * act'(u), in place on `dy`, over rows split across threads.
template <typename Scalar>
void activation_backward(activation act, const matrix<Scalar>& u, matrix<Scalar>& dy) {
  PEFT_ASSERT(u.rows() == dy.rows() && u.cols() == dy.cols());
  parallel_rows(u.rows(), u.cols(), [&](index r0, index r1) {
    const auto x = u.middleRows(r0, r1 - r0).array();
    auto g = dy.middleRows(r0, r1 - r0).array();
    switch (act) {
      case activation::relu: g = (x > Scalar(0)).select(g, Scalar(0)); break;
      case activation::gelu_erf:  // Phi(x) + x phi(x)
        g *= Scalar(0.5) * (Scalar(1) + (x * Scalar(0.70710678118654752440)).erf()) +
             x * ((Scalar(-0.5) * x * x).exp() * Scalar(0.39894228040143267794));
        break;
      case activation::gelu_tanh: {
        const Scalar k = Scalar(0.79788456080286535588);
        const auto t = (k * (x + Scalar(0.044715) * x * x * x)).tanh().eval();  // once, not per use
        g *= Scalar(0.5) * (Scalar(1) + t) +
             Scalar(0.5) * x * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3 * 0.044715) * x * x);
        break;
      }
    }
  });
}

/// y = tanh(u) and its backward from the output: du = dy * (1 - y^2).
template <typename Scalar>
void tanh_backward_from_output(const matrix<Scalar>& y, matrix<Scalar>& dy) {
  dy.array() *= (Scalar(1) - y.array().square());
}

}  // namespace peft::ops

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPS_ACTIVATION
#include "../detail/instances.hpp"

#endif  // PEFT_OPS_ACTIVATION_HPP
