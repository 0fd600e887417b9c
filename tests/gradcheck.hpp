// SPDX-License-Identifier: Apache-2.0
// Finite-difference gradient checking shared by the op, encoder and policy tests.
#ifndef PEFT_TESTS_GRADCHECK_HPP
#define PEFT_TESTS_GRADCHECK_HPP

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft_test {

/// Result of comparing an analytic gradient with central differences.
struct grad_report {
  double max_abs_err = 0;
  double max_rel_err = 0;  ///< |a - n| / max(|a|, |n|, floor)
  int checked = 0;
};

/// Central differences of `loss` over `count` coordinates of `x` (all when count <= 0, or
/// a seeded sample), compared with `analytic`. `x` is restored after each probe.
template <typename Scalar, typename Loss>
grad_report check_gradient(Scalar* x, peft::index n, const Scalar* analytic, Loss&& loss, double step,
                           int count = -1, std::uint64_t seed = 7, double floor = 1e-6) {
  std::vector<peft::index> idx;
  if (count <= 0 || count >= n) {
    for (peft::index i = 0; i < n; ++i) idx.push_back(i);
  } else {
    peft::rng gen(seed);
    for (int c = 0; c < count; ++c) idx.push_back(static_cast<peft::index>(gen.below(static_cast<std::uint64_t>(n))));
  }
  grad_report r;
  for (auto i : idx) {
    const Scalar keep = x[i];
    x[i] = static_cast<Scalar>(keep + step);
    const double lp = loss();
    x[i] = static_cast<Scalar>(keep - step);
    const double lm = loss();
    x[i] = keep;
    const double num = (lp - lm) / (2 * step);
    const double a = static_cast<double>(analytic[i]);
    const double err = std::abs(a - num);
    r.max_abs_err = std::max(r.max_abs_err, err);
    r.max_rel_err = std::max(r.max_rel_err, err / std::max({std::abs(a), std::abs(num), floor}));
    ++r.checked;
  }
  return r;
}

/// A fixed random matrix used to turn an output into the scalar loss sum(out .* R).
template <typename Scalar>
peft::matrix<Scalar> random_matrix(peft::index rows, peft::index cols, std::uint64_t seed, double scale = 1.0) {
  peft::rng gen(seed);
  peft::matrix<Scalar> m(rows, cols);
  for (peft::index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(gen.normal() * scale);
  return m;
}

template <typename Scalar>
double dot_loss(const peft::matrix<Scalar>& out, const peft::matrix<Scalar>& r) {
  return (out.template cast<double>().array() * r.template cast<double>().array()).sum();
}

}  // namespace peft_test

#endif
