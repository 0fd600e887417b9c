// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_LOSSES_HPP
#define PEFT_OPS_LOSSES_HPP

/// @file losses.hpp
/// Classification losses over logits `[batch x classes]` with their gradients, and metrics.
///
/// - `cross_entropy`: hard labels; the batch mean of `l_i = -log softmax(z_i)[y_i]`
///   (`F.cross_entropy`), or `sum_i w_i l_i` when per-example weights are given.
/// - `kl_div`: soft labels, `l_i = KL(q_i || p_i) = sum_c q_ic (log q_ic - log p_ic)` with
///   `p_i = softmax(z_i)` (LiST's `F.kl_div(log_softmax(z), q, reduction='none').sum(-1)`,
///   0 log 0 = 0), batch mean or `sum_i w_i l_i`.
/// - `mse_loss` (regression), `bce_with_logits` (multi-label), `token_cross_entropy` (token
///   classification, labels -100 ignored) and `span_cross_entropy` (extractive QA, start/end
///   positions as transformers' `BertForQuestionAnswering`): means as their torch counterparts.
/// - `cosine_pair_loss`: SetFit's contrastive pairs, the mean squared error of the pairs'
///   cosine similarity against 1 (same label) or 0 (two labels).
///
/// Each writes d loss / d logits into `d_logits` (resized) and returns the loss. A loss or
/// gradient that is not finite throws `peft::numeric_error` naming the example, so training
/// stops instead of corrupting parameters; `d_logits` is then left unchanged.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/types.hpp"
#include "../error.hpp"

namespace peft {

namespace detail {

inline std::string num_string(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return std::to_string(v);
}

template <typename Derived>
void check_logits(const char* where, const Eigen::MatrixBase<Derived>& z) {
  if (z.rows() <= 0) throw invalid_argument(expected_got(where, "batch size (logit rows)", "> 0", z.rows()));
  if (z.cols() <= 0)
    throw invalid_argument(expected_got(where, "number of classes (logit columns)", "> 0", z.cols()));
}

template <typename Int>
void check_labels(const char* where, const std::vector<Int>& labels, index batch, index classes) {
  static_assert(std::is_integral_v<Int>, "peft losses: labels must be integers");
  if (static_cast<index>(labels.size()) != batch)
    throw invalid_argument(expected_got(where, "labels size (logit rows)", batch, labels.size()));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto y = static_cast<std::int64_t>(labels[i]);
    if (y < 0 || y >= classes)
      throw invalid_argument(std::string(where) + ": label of example " + std::to_string(i) +
                             " expected in [0, " + std::to_string(classes) + "), got " + std::to_string(y));
  }
}

template <typename Scalar>
void check_weights(const char* where, const vector<Scalar>& w, index batch) {
  if (w.size() != batch)
    throw invalid_argument(expected_got(where, "weights size (logit rows)", batch, w.size()));
  for (index i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]) || w[i] < 0)
      throw invalid_argument(std::string(where) + ": weight of example " + std::to_string(i) +
                             " expected finite and >= 0, got " + num_string(static_cast<double>(w[i])));
}

/// Row-wise log-softmax of z, shifted by the row maximum (scalar loops: std::exp / std::log).
template <typename Derived>
matrix<typename Derived::Scalar> log_softmax_rows(const Eigen::MatrixBase<Derived>& z) {
  using S = typename Derived::Scalar;
  matrix<S> out(z.rows(), z.cols());
  for (index i = 0; i < z.rows(); ++i) {
    S mx = z(i, 0);
    for (index c = 1; c < z.cols(); ++c) mx = std::max(mx, z(i, c));
    S sum = 0;
    for (index c = 0; c < z.cols(); ++c) sum += std::exp(z(i, c) - mx);
    const S lse = mx + std::log(sum);
    for (index c = 0; c < z.cols(); ++c) out(i, c) = z(i, c) - lse;
  }
  return out;
}

/// Element-wise exp of a matrix (scalar loop).
template <typename Scalar>
matrix<Scalar> exp_of(const matrix<Scalar>& x) {
  matrix<Scalar> out(x.rows(), x.cols());
  for (index i = 0; i < x.size(); ++i) out.data()[i] = std::exp(x.data()[i]);
  return out;
}

/// Throws numeric_error for the first non-finite per-example loss or gradient entry.
template <typename Scalar>
void check_finite_loss(const char* where, const vector<Scalar>& per_example, const matrix<Scalar>& grad) {
  for (index i = 0; i < per_example.size(); ++i)
    if (!std::isfinite(per_example[i]))
      throw numeric_error(std::string(where) + ": loss is " +
                          num_string(static_cast<double>(per_example[i])) + " at example " +
                          std::to_string(i) + " (logits or targets not finite?)");
  for (index i = 0; i < grad.rows(); ++i)
    for (index c = 0; c < grad.cols(); ++c)
      if (!std::isfinite(grad(i, c)))
        throw numeric_error(std::string(where) + ": gradient is " +
                            num_string(static_cast<double>(grad(i, c))) + " at example " + std::to_string(i) +
                            ", class " + std::to_string(c));
}

template <typename Derived, typename Int>
typename Derived::Scalar cross_entropy_impl(const char* where, const Eigen::MatrixBase<Derived>& logits,
                                            const std::vector<Int>& labels,
                                            const vector<typename Derived::Scalar>* weights,
                                            matrix<typename Derived::Scalar>& d_logits) {
  using S = typename Derived::Scalar;
  check_logits(where, logits);
  const index n = logits.rows(), c = logits.cols();
  check_labels(where, labels, n, c);
  if (weights) check_weights(where, *weights, n);
  const matrix<S> lp = log_softmax_rows(logits);
  vector<S> per(n);
  matrix<S> g = exp_of(lp);
  double total = 0;
  for (index i = 0; i < n; ++i) {
    const index y = static_cast<index>(labels[static_cast<std::size_t>(i)]);
    per[i] = -lp(i, y);
    g(i, y) -= S(1);
    const double wi = weights ? static_cast<double>((*weights)[i]) : 1.0 / static_cast<double>(n);
    g.row(i) *= static_cast<S>(wi);
    total += wi * static_cast<double>(per[i]);
  }
  check_finite_loss(where, per, g);
  d_logits = std::move(g);
  return static_cast<S>(total);
}

template <typename Scalar>
void check_teacher(const char* where, const matrix<Scalar>& q, index n, index c) {
  if (q.rows() != n || q.cols() != c)
    throw invalid_argument(std::string(where) + ": teacher probabilities shape expected [" +
                           std::to_string(n) + ", " + std::to_string(c) + "] (the logits), got [" +
                           std::to_string(q.rows()) + ", " + std::to_string(q.cols()) + "]");
  for (index i = 0; i < n; ++i) {
    double sum = 0;
    for (index k = 0; k < c; ++k) {
      const double v = static_cast<double>(q(i, k));
      if (!std::isfinite(v))
        throw numeric_error(std::string(where) + ": teacher probability is " + num_string(v) +
                            " at example " + std::to_string(i) + ", class " + std::to_string(k));
      if (v < 0)
        throw invalid_argument(std::string(where) + ": teacher probability of example " + std::to_string(i) +
                               ", class " + std::to_string(k) + " expected >= 0, got " + std::to_string(v));
      sum += v;
    }
    if (std::abs(sum - 1.0) > 1e-3)
      throw invalid_argument(std::string(where) + ": teacher probabilities of example " + std::to_string(i) +
                             " expected to sum to 1, got " + std::to_string(sum));
  }
}

template <typename Derived, typename DerivedQ>
typename Derived::Scalar kl_div_impl(const char* where, const Eigen::MatrixBase<Derived>& logits,
                                     const Eigen::MatrixBase<DerivedQ>& teacher,
                                     const vector<typename Derived::Scalar>* weights,
                                     matrix<typename Derived::Scalar>& d_logits) {
  using S = typename Derived::Scalar;
  static_assert(std::is_same_v<S, typename DerivedQ::Scalar>,
                "peft::kl_div: logits and teacher scalar types differ");
  check_logits(where, logits);
  const index n = logits.rows(), c = logits.cols();
  const matrix<S> q = teacher;
  check_teacher(where, q, n, c);
  if (weights) check_weights(where, *weights, n);
  const matrix<S> lp = log_softmax_rows(logits);
  const matrix<S> p = exp_of(lp);
  vector<S> per(n);
  matrix<S> g(n, c);
  double total = 0;
  for (index i = 0; i < n; ++i) {
    S li = 0, qsum = 0;
    for (index k = 0; k < c; ++k) {
      const S qk = q(i, k);
      qsum += qk;
      if (qk > 0) li += qk * (std::log(qk) - lp(i, k));
    }
    per[i] = li;
    // d l_i / d z_k = (sum_c q_c) p_k - q_k
    const double wi = weights ? static_cast<double>((*weights)[i]) : 1.0 / static_cast<double>(n);
    g.row(i) = static_cast<S>(wi) * (qsum * p.row(i) - q.row(i));
    total += wi * static_cast<double>(li);
  }
  check_finite_loss(where, per, g);
  d_logits = std::move(g);
  return static_cast<S>(total);
}

}  // namespace detail

/// Row-wise softmax, numerically stable (`[batch x classes]`).
template <typename Derived>
matrix<typename Derived::Scalar> softmax(const Eigen::MatrixBase<Derived>& logits) {
  detail::check_logits("softmax", logits);
  return detail::exp_of(detail::log_softmax_rows(logits));
}

/// Row-wise log-softmax, numerically stable (`z - max - log sum exp(z - max)`).
template <typename Derived>
matrix<typename Derived::Scalar> log_softmax(const Eigen::MatrixBase<Derived>& logits) {
  detail::check_logits("log_softmax", logits);
  return detail::log_softmax_rows(logits);
}

/// Mean cross-entropy over the batch, `(1/B) sum_i -log softmax(z_i)[y_i]` (`F.cross_entropy`).
/// @param logits   `[B x C]`
/// @param labels   B class ids in [0, C)
/// @param d_logits receives d loss / d logits, `[B x C]`
/// @throws invalid_argument for an empty batch, a size mismatch or a label out of range
/// @throws numeric_error if a loss or gradient entry is not finite ("loss is NaN at example i")
template <typename Derived, typename Int>
typename Derived::Scalar cross_entropy(const Eigen::MatrixBase<Derived>& logits,
                                       const std::vector<Int>& labels,
                                       matrix<typename Derived::Scalar>& d_logits) {
  return detail::cross_entropy_impl("cross_entropy", logits, labels, nullptr, d_logits);
}

/// Weighted cross-entropy, `sum_i w_i l_i` (no normalisation: pass w_i = 1/B for the mean).
/// @param weights B finite weights >= 0
template <typename Derived, typename Int>
typename Derived::Scalar cross_entropy(const Eigen::MatrixBase<Derived>& logits,
                                       const std::vector<Int>& labels,
                                       const vector<typename Derived::Scalar>& weights,
                                       matrix<typename Derived::Scalar>& d_logits) {
  return detail::cross_entropy_impl("cross_entropy", logits, labels, &weights, d_logits);
}

/// Per-example cross-entropy `l_i` (no reduction, no gradient).
template <typename Derived, typename Int>
vector<typename Derived::Scalar> cross_entropy_per_example(const Eigen::MatrixBase<Derived>& logits,
                                                           const std::vector<Int>& labels) {
  using S = typename Derived::Scalar;
  const char* where = "cross_entropy_per_example";
  detail::check_logits(where, logits);
  detail::check_labels(where, labels, logits.rows(), logits.cols());
  const matrix<S> lp = detail::log_softmax_rows(logits);
  vector<S> per(logits.rows());
  for (index i = 0; i < per.size(); ++i)
    per[i] = -lp(i, static_cast<index>(labels[static_cast<std::size_t>(i)]));
  detail::check_finite_loss(where, per, matrix<S>(0, 0));
  return per;
}

/// Mean over the batch of KL(q_i || softmax(z_i)), the soft-label distillation loss of LiST.
/// @param logits   student logits `[B x C]`
/// @param teacher  teacher probabilities `[B x C]`, rows >= 0 summing to 1 (within 1e-3)
/// @param d_logits receives d loss / d logits, `[B x C]`
/// @throws invalid_argument for an empty batch, a shape mismatch or rows that are not distributions
/// @throws numeric_error if a teacher entry, loss or gradient entry is not finite
template <typename Derived, typename DerivedQ>
typename Derived::Scalar kl_div(const Eigen::MatrixBase<Derived>& logits,
                                const Eigen::MatrixBase<DerivedQ>& teacher,
                                matrix<typename Derived::Scalar>& d_logits) {
  return detail::kl_div_impl("kl_div", logits, teacher, nullptr, d_logits);
}

/// Weighted soft-label loss, `sum_i w_i KL(q_i || p_i)` (LiST's `L_U` with re-weighting).
template <typename Derived, typename DerivedQ>
typename Derived::Scalar kl_div(const Eigen::MatrixBase<Derived>& logits,
                                const Eigen::MatrixBase<DerivedQ>& teacher,
                                const vector<typename Derived::Scalar>& weights,
                                matrix<typename Derived::Scalar>& d_logits) {
  return detail::kl_div_impl("kl_div", logits, teacher, &weights, d_logits);
}

/// Per-example KL(q_i || p_i) (no reduction, no gradient).
template <typename Derived, typename DerivedQ>
vector<typename Derived::Scalar> kl_div_per_example(const Eigen::MatrixBase<Derived>& logits,
                                                    const Eigen::MatrixBase<DerivedQ>& teacher) {
  using S = typename Derived::Scalar;
  vector<S> w = vector<S>::Zero(logits.rows());
  const matrix<S> unused;
  const char* where = "kl_div_per_example";
  detail::check_logits(where, logits);
  const matrix<S> q = teacher;
  detail::check_teacher(where, q, logits.rows(), logits.cols());
  const matrix<S> lp = detail::log_softmax_rows(logits);
  for (index i = 0; i < logits.rows(); ++i)
    for (index k = 0; k < logits.cols(); ++k)
      if (q(i, k) > 0) w[i] += q(i, k) * (std::log(q(i, k)) - lp(i, k));
  detail::check_finite_loss(where, w, unused);
  return w;
}

// ---------------------------------------------------------------------------------------------
// Losses for the other task kinds: regression, multi-label, token classification, extractive QA.
// Unlike cross_entropy (where a -inf logit of a wrong class is harmless), these refuse any
// non-finite logit or target up front with numeric_error naming the row and column.

/// Label of a token that takes no part in token_cross_entropy (`ignore_index` of `F.cross_entropy`).
inline constexpr int ignore_label = -100;

namespace detail {

/// Throws numeric_error for the first non-finite entry of @p m ("logits expected finite, got NaN at row i,
/// column c").
template <typename Scalar>
void check_finite_entries(const char* where, const char* what, const matrix<Scalar>& m) {
  for (index i = 0; i < m.rows(); ++i)
    for (index c = 0; c < m.cols(); ++c)
      if (!std::isfinite(m(i, c)))
        throw numeric_error(std::string(where) + ": " + what + " expected finite, got " +
                            num_string(static_cast<double>(m(i, c))) + " at row " + std::to_string(i) +
                            ", column " + std::to_string(c));
}

/// Targets must have the shape of the logits.
template <typename Scalar>
void check_target_shape(const char* where, const matrix<Scalar>& t, index n, index k) {
  if (t.rows() != n || t.cols() != k)
    throw invalid_argument(std::string(where) + ": targets shape expected [" + std::to_string(n) + ", " +
                           std::to_string(k) + "] (the logits), got [" + std::to_string(t.rows()) + ", " +
                           std::to_string(t.cols()) + "]");
}

/// The mean over all B*K elements of an element loss: `f(z, t)` gives the element's loss and
/// its derivative in z; the gradient is that derivative / (B K). What mse_loss and
/// bce_with_logits share once their inputs are checked.
template <typename S, typename F>
S elementwise_mean_loss(const char* where, const matrix<S>& x, const matrix<S>& targets, matrix<S>& grad, F f) {
  const index n = x.rows(), k = x.cols();
  const double scale = 1.0 / static_cast<double>(n * k);
  vector<S> per(n);
  matrix<S> g(n, k);
  double total = 0;
  for (index i = 0; i < n; ++i) {
    double row = 0;
    for (index c = 0; c < k; ++c) {
      const auto [loss, slope] = f(static_cast<double>(x(i, c)), static_cast<double>(targets(i, c)));
      row += loss;
      g(i, c) = static_cast<S>(scale * slope);
    }
    per[i] = static_cast<S>(row);
    total += row;
  }
  check_finite_loss(where, per, g);
  grad = std::move(g);
  return static_cast<S>(total * scale);  // a mean of finite row losses: finite
}

/// Numerically stable logistic function.
inline double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

}  // namespace detail

/// Regression loss, the mean over all B*K elements of `(z - t)^2` (`F.mse_loss`, reduction 'mean').
/// @param z       predictions `[B x K]`
/// @param targets `[B x K]`
/// @param grad    receives d loss / d z = `2 (z - t) / (B K)`, `[B x K]`
/// @throws invalid_argument for an empty batch or a shape mismatch
/// @throws numeric_error for a non-finite prediction or target, or a row loss that overflows
template <typename Derived>
typename Derived::Scalar mse_loss(const Eigen::MatrixBase<Derived>& z,
                                  const matrix<typename Derived::Scalar>& targets,
                                  matrix<typename Derived::Scalar>& grad) {
  using S = typename Derived::Scalar;
  const char* where = "mse_loss";
  detail::check_logits(where, z);
  const matrix<S> x = z;
  const index n = x.rows(), k = x.cols();
  detail::check_target_shape(where, targets, n, k);
  detail::check_finite_entries(where, "predictions", x);
  detail::check_finite_entries(where, "targets", targets);
  return detail::elementwise_mean_loss(where, x, targets, grad, [](double zz, double t) {
    const double d = zz - t;
    return std::pair<double, double>{d * d, 2.0 * d};
  });
}

/// Multi-label loss, the mean over all B*K elements of binary cross-entropy on logits
/// (`F.binary_cross_entropy_with_logits`), in the stable form `max(z, 0) - z t + log1p(exp(-|z|))`:
/// finite for any finite z (|z| = 1000 gives 0 or 1000, not log 0).
/// @param z       logits `[B x K]`, one independent sigmoid per label
/// @param targets `[B x K]` in [0, 1] (soft targets allowed)
/// @param grad    receives d loss / d z = `(sigmoid(z) - t) / (B K)`, `[B x K]`
/// @throws invalid_argument for an empty batch, a shape mismatch or a target outside [0, 1]
/// @throws numeric_error for a non-finite logit or target
template <typename Derived>
typename Derived::Scalar bce_with_logits(const Eigen::MatrixBase<Derived>& z,
                                         const matrix<typename Derived::Scalar>& targets,
                                         matrix<typename Derived::Scalar>& grad) {
  using S = typename Derived::Scalar;
  const char* where = "bce_with_logits";
  detail::check_logits(where, z);
  const matrix<S> x = z;
  const index n = x.rows(), k = x.cols();
  detail::check_target_shape(where, targets, n, k);
  detail::check_finite_entries(where, "logits", x);
  detail::check_finite_entries(where, "targets", targets);
  for (index i = 0; i < n; ++i)
    for (index c = 0; c < k; ++c)
      if (targets(i, c) < 0 || targets(i, c) > 1)
        throw invalid_argument(std::string(where) + ": target of row " + std::to_string(i) + ", column " +
                               std::to_string(c) + " expected in [0, 1], got " +
                               std::to_string(static_cast<double>(targets(i, c))));
  return detail::elementwise_mean_loss(where, x, targets, grad, [](double zz, double t) {
    return std::pair<double, double>{std::max(zz, 0.0) - zz * t + std::log1p(std::exp(-std::abs(zz))),
                                     detail::sigmoid(zz) - t};
  });
}

/// Token classification loss: cross-entropy over the rows of z whose label is not
/// `ignore_label` (-100), averaged over those rows (`F.cross_entropy(ignore_index=-100)`).
/// Ignored rows (padding, special tokens, non-first sub-words) get a zero gradient row.
/// When every row is ignored torch returns NaN (0 / 0); this returns 0 with a zero gradient, since
/// a NaN loss would stop training (see numeric_error) for a batch that simply has nothing to learn.
/// @param z      logits `[N x C]`, one row per token
/// @param labels N labels in [0, C) or -100
/// @param grad   receives d loss / d z, `[N x C]`
/// @throws invalid_argument for an empty batch, a size mismatch or a label out of range
/// @throws numeric_error for a non-finite logit, or a loss that overflows (|logit| ~ 1e308)
template <typename Derived>
typename Derived::Scalar token_cross_entropy(const Eigen::MatrixBase<Derived>& z,
                                             const std::vector<int>& labels,
                                             matrix<typename Derived::Scalar>& grad) {
  using S = typename Derived::Scalar;
  const char* where = "token_cross_entropy";
  detail::check_logits(where, z);
  const matrix<S> x = z;
  const index n = x.rows(), c = x.cols();
  if (static_cast<index>(labels.size()) != n)
    throw invalid_argument(detail::expected_got(where, "labels size (logit rows)", n, labels.size()));
  index count = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const int y = labels[i];
    if (y == ignore_label) continue;
    if (y < 0 || y >= c)
      throw invalid_argument(std::string(where) + ": label of row " + std::to_string(i) +
                             " expected in [0, " + std::to_string(c) + ") or -100 (ignore_label), got " +
                             std::to_string(y));
    ++count;
  }
  detail::check_finite_entries(where, "logits", x);
  matrix<S> g = matrix<S>::Zero(n, c);
  if (count == 0) {
    grad = std::move(g);
    return S(0);
  }
  const matrix<S> lp = detail::log_softmax_rows(x);
  const S w = static_cast<S>(1.0 / static_cast<double>(count));
  vector<S> per = vector<S>::Zero(n);
  double total = 0;
  for (index i = 0; i < n; ++i) {
    const int y = labels[static_cast<std::size_t>(i)];
    if (y == ignore_label) continue;
    per[i] = -lp(i, y);
    for (index k = 0; k < c; ++k) g(i, k) = std::exp(lp(i, k));
    g(i, y) -= S(1);
    g.row(i) *= w;
    total += static_cast<double>(per[i]);
  }
  detail::check_finite_loss(where, per, g);
  grad = std::move(g);
  return static_cast<S>(total / static_cast<double>(count));
}

/// Extractive reading-comprehension loss, as transformers' `BertForQuestionAnswering`:
/// `(CE(start logits, start) + CE(end logits, end)) / 2`, each CE a mean over the examples
/// it does not ignore. z holds B examples of T tokens, row `b*T + t` for token t of example b,
/// column 0 the start logit and column 1 the end logit; each CE is a softmax over an
/// example's T positions.
///
/// Positions are treated exactly as transformers does (`clamp(0, T)`, then `ignore_index = T`):
/// a position >= T (an answer cut off by truncation) is ignored, and a NEGATIVE position counts
/// as position 0 (the [CLS] "no answer" slot), not as ignored. Padding tokens are not masked
/// (transformers does not mask them either), so keep T the padded length the logits were
/// computed for. If every start (or end) position is ignored, that half contributes 0 and no
/// gradient (torch gives NaN there).
/// @param z     logits `[B*T x 2]`
/// @param T     tokens per example (> 0); z's rows must be a multiple of T
/// @param start B start positions
/// @param end   B end positions
/// @param grad  receives d loss / d z, `[B*T x 2]`
/// @throws invalid_argument for T <= 0, z not `[B*T x 2]`, or position counts other than B
/// @throws numeric_error for a non-finite logit, or a loss that overflows (|logit| ~ 1e308)
template <typename Derived>
typename Derived::Scalar span_cross_entropy(const Eigen::MatrixBase<Derived>& z, index T,
                                            const std::vector<index>& start, const std::vector<index>& end,
                                            matrix<typename Derived::Scalar>& grad) {
  using S = typename Derived::Scalar;
  const char* where = "span_cross_entropy";
  if (T <= 0) throw invalid_argument(detail::expected_got(where, "tokens per example T", "> 0", T));
  if (z.cols() != 2)
    throw invalid_argument(detail::expected_got(where, "logit columns (start, end)", 2, z.cols()));
  if (z.rows() <= 0 || z.rows() % T != 0)
    throw invalid_argument(std::string(where) + ": logit rows expected a positive multiple of T = " +
                           std::to_string(T) + ", got " + std::to_string(z.rows()));
  const index b_count = z.rows() / T;
  if (static_cast<index>(start.size()) != b_count)
    throw invalid_argument(detail::expected_got(where, "start positions size (examples = logit rows / T)",
                                                b_count, start.size()));
  if (static_cast<index>(end.size()) != b_count)
    throw invalid_argument(
        detail::expected_got(where, "end positions size (examples = logit rows / T)", b_count, end.size()));
  const matrix<S> x = z;
  detail::check_finite_entries(where, "logits", x);
  matrix<S> g = matrix<S>::Zero(x.rows(), 2);
  vector<S> per = vector<S>::Zero(b_count);
  double total = 0;
  for (index col = 0; col < 2; ++col) {
    const std::vector<index>& pos = col == 0 ? start : end;
    index count = 0;
    for (const index p : pos) count += p < T ? 1 : 0;  // clamp(0, T): only p >= T is ignored
    if (count == 0) continue;
    const double w = 0.5 / static_cast<double>(count);
    for (index b = 0; b < b_count; ++b) {
      const index p = pos[static_cast<std::size_t>(b)];
      if (p >= T) continue;
      const index y = std::max<index>(p, 0);
      const index r0 = b * T;
      S mx = x(r0, col);
      for (index t = 1; t < T; ++t) mx = std::max(mx, x(r0 + t, col));
      S sum = 0;
      for (index t = 0; t < T; ++t) sum += std::exp(x(r0 + t, col) - mx);
      const S lse = mx + std::log(sum);
      const S l = lse - x(r0 + y, col);
      per[b] += static_cast<S>(w) * l;
      total += w * static_cast<double>(l);
      for (index t = 0; t < T; ++t)
        g(r0 + t, col) = static_cast<S>(w) * (std::exp(x(r0 + t, col) - lse) - (t == y ? S(1) : S(0)));
    }
  }
  detail::check_finite_loss(where, per, g);
  grad = std::move(g);
  return static_cast<S>(total);
}

/// Index of the largest logit of each row (first one on ties).
/// @throws numeric_error if a row contains NaN
template <typename Derived>
std::vector<index> argmax_rows(const Eigen::MatrixBase<Derived>& logits) {
  detail::check_logits("argmax_rows", logits);
  std::vector<index> out(static_cast<std::size_t>(logits.rows()));
  for (index i = 0; i < logits.rows(); ++i) {
    if (logits.row(i).hasNaN())
      throw numeric_error("argmax_rows: logits of example " + std::to_string(i) +
                          " expected finite, got NaN");
    index k = 0;
    logits.row(i).maxCoeff(&k);
    out[static_cast<std::size_t>(i)] = k;
  }
  return out;
}

namespace detail {
template <typename IntP, typename IntL>
void check_pred_labels(const char* where, const std::vector<IntP>& pred, const std::vector<IntL>& labels) {
  static_assert(std::is_integral_v<IntP> && std::is_integral_v<IntL>,
                "peft metrics: labels must be integers");
  if (pred.empty()) throw invalid_argument(std::string(where) + ": predictions expected non-empty, got 0");
  if (pred.size() != labels.size())
    throw invalid_argument(expected_got(where, "labels size (predictions)", pred.size(), labels.size()));
  for (std::size_t i = 0; i < pred.size(); ++i) {
    const auto p = static_cast<std::int64_t>(pred[i]), y = static_cast<std::int64_t>(labels[i]);
    if (p < 0)
      throw invalid_argument(std::string(where) + ": prediction " + std::to_string(i) +
                             " expected >= 0, got " + std::to_string(p));
    if (y < 0)
      throw invalid_argument(std::string(where) + ": label " + std::to_string(i) + " expected >= 0, got " +
                             std::to_string(y));
  }
}
}  // namespace detail

/// Fraction of predictions equal to the labels.
/// @throws invalid_argument for empty or mismatched inputs or negative ids
template <typename IntP, typename IntL>
double accuracy(const std::vector<IntP>& predictions, const std::vector<IntL>& labels) {
  detail::check_pred_labels("accuracy", predictions, labels);
  std::size_t hit = 0;
  for (std::size_t i = 0; i < labels.size(); ++i)
    hit += static_cast<std::int64_t>(predictions[i]) == static_cast<std::int64_t>(labels[i]) ? 1u : 0u;
  return static_cast<double>(hit) / static_cast<double>(labels.size());
}

/// Accuracy of the argmax of `logits` (`[B x C]`); labels must lie in [0, C).
template <typename Derived, typename Int>
double accuracy(const Eigen::MatrixBase<Derived>& logits, const std::vector<Int>& labels) {
  detail::check_logits("accuracy", logits);
  detail::check_labels("accuracy", labels, logits.rows(), logits.cols());
  return accuracy(argmax_rows(logits), labels);
}

/// Macro-averaged F1, `mean_c 2 TP_c / (2 TP_c + FP_c + FN_c)`, over the classes that occur in
/// the labels or the predictions (scikit-learn's `f1_score(average='macro')`).
/// @throws invalid_argument for empty or mismatched inputs or negative ids
template <typename IntP, typename IntL>
double macro_f1(const std::vector<IntP>& predictions, const std::vector<IntL>& labels) {
  detail::check_pred_labels("macro_f1", predictions, labels);
  std::set<std::int64_t> classes;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    classes.insert(static_cast<std::int64_t>(labels[i]));
    classes.insert(static_cast<std::int64_t>(predictions[i]));
  }
  double sum = 0;
  for (const auto c : classes) {
    std::size_t tp = 0, fp = 0, fn = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const bool p = static_cast<std::int64_t>(predictions[i]) == c,
                 y = static_cast<std::int64_t>(labels[i]) == c;
      tp += p && y;
      fp += p && !y;
      fn += !p && y;
    }
    sum += 2.0 * static_cast<double>(tp) / static_cast<double>(2 * tp + fp + fn);
  }
  return sum / static_cast<double>(classes.size());
}

/// Macro-F1 of the argmax of `logits` (`[B x C]`); labels must lie in [0, C).
template <typename Derived, typename Int>
double macro_f1(const Eigen::MatrixBase<Derived>& logits, const std::vector<Int>& labels) {
  detail::check_logits("macro_f1", logits);
  detail::check_labels("macro_f1", labels, logits.rows(), logits.cols());
  return macro_f1(argmax_rows(logits), labels);
}

/// Contrastive pair loss of SetFit (sentence-transformers' `CosineSimilarityLoss`): rows i and
/// P + i of `z` (`[2P x D]`) are the two sentences of pair i, and the loss is the mean over the
/// pairs of `(cos(u_i, v_i) - t_i)^2`, with `cos(u, v) = u.v / (max(|u|, eps) max(|v|, eps))`,
/// eps = 1e-8 (`torch.cosine_similarity`). Targets are 1 for a pair of the same label, 0 for
/// two labels.
/// @param z       embeddings `[2P x D]`: the first sentences of the P pairs, then the second ones
/// @param targets P target cosines in [-1, 1]
/// @param grad    receives d loss / d z, `[2P x D]`
/// @throws invalid_argument for an odd or empty row count, or targets of another count or range
/// @throws numeric_error for a non-finite embedding or target
template <typename Derived>
typename Derived::Scalar cosine_pair_loss(const Eigen::MatrixBase<Derived>& z, const std::vector<float>& targets,
                                          matrix<typename Derived::Scalar>& grad) {
  using S = typename Derived::Scalar;
  const char* where = "cosine_pair_loss";
  detail::check_logits(where, z);
  if (z.rows() % 2 != 0)
    throw invalid_argument(detail::expected_got(where, "embedding rows (two per pair)", "an even count", z.rows()));
  const index P = z.rows() / 2;
  if (static_cast<index>(targets.size()) != P)
    throw invalid_argument(detail::expected_got(where, "targets (one per pair)", P, targets.size()));
  const matrix<S> x = z;
  detail::check_finite_entries(where, "embeddings", x);
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (!std::isfinite(targets[i]) || targets[i] < -1 || targets[i] > 1)
      throw invalid_argument(std::string(where) + ": target of pair " + std::to_string(i) +
                             " expected in [-1, 1], got " + detail::num_string(static_cast<double>(targets[i])));
  constexpr double eps = 1e-8;
  matrix<S> g = matrix<S>::Zero(x.rows(), x.cols());
  vector<S> per(P);
  double total = 0;
  for (index i = 0; i < P; ++i) {
    const auto u = x.row(i), v = x.row(P + i);
    const double nu = std::max(static_cast<double>(u.norm()), eps), nv = std::max(static_cast<double>(v.norm()), eps);
    const double c = static_cast<double>(u.dot(v)) / (nu * nv);
    const double d = c - static_cast<double>(targets[static_cast<std::size_t>(i)]);
    per[i] = static_cast<S>(d * d);
    total += d * d;
    // d cos / d u = v / (|u||v|) - cos u / |u|^2 (a clamped norm is a constant: its term drops).
    const double s = 2.0 * d / static_cast<double>(P);
    const double cu = u.norm() > eps ? c / (nu * nu) : 0.0, cv = v.norm() > eps ? c / (nv * nv) : 0.0;
    g.row(i) = static_cast<S>(s) * (v / static_cast<S>(nu * nv) - static_cast<S>(cu) * u);
    g.row(P + i) = static_cast<S>(s) * (u / static_cast<S>(nu * nv) - static_cast<S>(cv) * v);
  }
  detail::check_finite_loss(where, per, g);
  grad = std::move(g);
  return static_cast<S>(total / static_cast<double>(P));
}

}  // namespace peft

#endif  // PEFT_OPS_LOSSES_HPP
