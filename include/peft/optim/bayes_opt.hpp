// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_BAYES_OPT_HPP
#define PEFT_OPTIM_BAYES_OPT_HPP

/// @file bayes_opt.hpp
/// Bayesian optimisation with a Gaussian-process surrogate (Matérn-5/2 kernel) and the GP-UCB
/// acquisition (Srinivas et al., ICML 2010), for gradient-free minimisation in a box: MPMP's
/// stage-1 black-box tuning of the router logits (METHODS.md §5.5, where the reference calls
/// `bayes_opt`'s `maximize(init_points=20, n_iter=…, acq='ucb', kappa=2.0)` on −loss).
///
/// This file *minimises* f. Maximising −f with UCB, as the reference does, picks the same
/// points as minimising f with the lower confidence bound `mean − kappa · std` used here.
///
/// **Surrogate.** Inputs are rescaled to the unit cube [0, 1]^d (so one isotropic length scale
/// serves boxes with unequal sides); targets are standardised (zero mean, unit variance). The
/// prior is y ~ N(0, s² (R_ℓ + η I)) with R_ℓ the Matérn-5/2 correlation
/// `(1 + √5 r/ℓ + 5r²/(3ℓ²)) exp(−√5 r/ℓ)` and η = `noise` (noise variance relative to s²).
/// Hyper-parameters maximise the log marginal likelihood: for each ℓ the optimal s² has the
/// closed form yᵀ(R_ℓ + ηI)⁻¹y / N, and ℓ is searched on a log grid (`gp_options::grid_size`
/// points in [min_length_scale, max_length_scale]) followed by golden-section refinement in log ℓ
/// around the best grid point. Factorisations use Eigen's LLT; if R_ℓ + ηI is not numerically
/// positive definite, jitter 1e-10, 1e-9, … (up to 1e-2) is added to the diagonal.
///
/// **Acquisition maximisation.** `acquisition_samples` uniform points in the box are scored; the
/// `refine_starts` best of them and the best observed point are then refined by projected
/// gradient descent on `mean − kappa · std` (analytic gradient, normalised direction, step
/// doubled on success and halved on failure, projected onto the box, at most `refine_iterations`
/// steps each). A suggestion closer than 1e-8 (unit-cube distance) to an already observed point is
/// replaced by the best non-duplicate random sample, so no point is evaluated twice.
///
/// Determinism: every random number comes from one `peft::rng` seeded by `seed`, and all
/// reductions run in a fixed order, so a seed reproduces a run bit for bit.

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "cmaes.hpp"  // blackbox_objective / blackbox_start / blackbox_apply (parameter_set adapters)

namespace peft {

/// Matérn-5/2 kernel at distance r: `variance · (1 + √5 r/ℓ + 5r²/(3ℓ²)) · exp(−√5 r/ℓ)`.
inline double matern52(double r, double length_scale, double variance = 1.0) noexcept {
  const double a = std::sqrt(5.0) * r / length_scale;
  return variance * (1.0 + a + a * a / 3.0) * std::exp(-a);
}

/// Options of `gaussian_process`.
struct gp_options {
  double noise = 1e-6;             ///< η ≥ 0: noise variance as a fraction of the signal variance
  double min_length_scale = 1e-2;  ///< > 0, lower end of the length-scale search (input units)
  double max_length_scale = 1e2;   ///< > min_length_scale, upper end
  index grid_size = 17;            ///< ≥ 2 log-spaced length scales tried
  index refine_steps = 10;         ///< golden-section steps around the best grid point (≥ 0)
};

/// Gaussian-process regression with a Matérn-5/2 kernel, standardised targets and
/// hyper-parameters fitted by maximum marginal likelihood (see the file comment).
/// `gaussian_process` names `basic_gaussian_process<>`: a template only so that its code (Eigen's
/// LLT and products) is compiled where it is used, not in every translation unit that includes
/// the umbrella header. `Tag` has no other meaning.
template <typename Tag = void>
class basic_gaussian_process {
public:
  /// @throws invalid_argument for a negative noise or a bad length-scale range or grid
  explicit basic_gaussian_process(const gp_options& opt = {});

  /// Fits the GP to points `x` (all of one size d ≥ 1) and finite targets `y`, choosing the
  /// length scale and signal variance by maximum marginal likelihood.
  /// @throws invalid_argument for no points, sizes that differ, or non-finite values;
  ///         numeric_error if no jitter up to 1e-2 makes the kernel matrix positive definite
  void fit(const std::vector<vector<double>>& x, const std::vector<double>& y) { fit_impl(x, y, 0.0); }

  /// As `fit`, with the length scale fixed to `length_scale` (> 0); s² is still fitted.
  void fit(const std::vector<vector<double>>& x, const std::vector<double>& y, double length_scale);

  /// Posterior mean and standard deviation of the latent function at `x` (original units).
  /// @throws invalid_argument before `fit` or for a point of the wrong size
  std::pair<double, double> predict(const vector<double>& x) const;

  /// Standardised posterior mean and standard deviation (before un-standardising the targets)
  /// at the columns of `xs` (d × m, one point per column); used by `bayes_opt` to score
  /// acquisition samples. Works on blocks of 128 points, vectorised across the points.
  void predict_standardised(const matrix<double>& xs, vector<double>& mean, vector<double>& sd) const;

  /// Standardised mean and standard deviation at `x`, with their gradients with respect to x.
  void predict_standardised_gradient(const vector<double>& x, double& mean, double& sd, vector<double>& dmean,
                                     vector<double>& dsd) const;

  bool fitted() const noexcept { return m_fitted; }
  /// Number of training points.
  index size() const noexcept { return m_X.cols(); }
  /// Fitted length scale ℓ (input units).
  double length_scale() const noexcept { return m_length; }
  /// Fitted signal variance s², in standardised target units.
  double signal_variance() const noexcept { return m_s2; }
  /// Noise variance relative to s² actually used (η plus any jitter that was needed).
  double noise() const noexcept { return m_eta; }
  /// Log marginal likelihood of the standardised targets at the fitted hyper-parameters.
  double log_marginal_likelihood() const noexcept { return m_lml; }
  /// Mean and standard deviation used to standardise the targets.
  double target_mean() const noexcept { return m_ymean; }
  double target_scale() const noexcept { return m_ystd; }

private:
  void check_dimension(index size, const char* where) const {
    if (!m_fitted)
      throw invalid_argument(std::string(where) + ": expected a fitted model, got none (call fit)");
    if (size != m_X.rows())
      throw invalid_argument(detail::expected_got(where, "point size", m_X.rows(), size));
  }

  vector<double> correlations(const vector<double>& x) const {
    vector<double> r(m_X.cols());
    for (index i = 0; i < m_X.cols(); ++i) r[i] = matern52((m_X.col(i) - x).norm(), m_length);
    return r;
  }

  /// Factorises R_ℓ + (η + jitter) I; returns the profile log likelihood (s² at its optimum).
  double evaluate(double length, Eigen::LLT<Eigen::MatrixXd>& llt, double& s2, double& eta) const;

  void fit_impl(const std::vector<vector<double>>& x, const std::vector<double>& y, double fixed_length);

  gp_options m_opt;
  Eigen::MatrixXd m_X;     // d × n training inputs, one per column
  vector<double> m_yn;     // standardised targets
  Eigen::MatrixXd m_dist;  // pairwise distances of the training inputs
  double m_ymean = 0, m_ystd = 1;
  double m_length = 1, m_s2 = 1, m_eta = 0, m_lml = 0;
  Eigen::LLT<Eigen::MatrixXd> m_llt;
  Eigen::MatrixXd m_Lt;   // Lᵀ of the Cholesky factor, so that rows of L are contiguous
  vector<double> m_beta;  // (R + ηI)⁻¹ y_n
  bool m_fitted = false;
};

template <typename Tag>
basic_gaussian_process<Tag>::basic_gaussian_process(const gp_options& opt) : m_opt(opt) {
  const char* where = "gaussian_process::gaussian_process";
  if (!(opt.noise >= 0) || !std::isfinite(opt.noise))
    throw invalid_argument(detail::expected_got(where, "noise", ">= 0 and finite", opt.noise));
  if (!(opt.min_length_scale > 0) || !(opt.max_length_scale > opt.min_length_scale) ||
      !std::isfinite(opt.max_length_scale))
    throw invalid_argument(std::string(where) + ": length-scale range expected 0 < min < max < inf, got [" +
                           std::to_string(opt.min_length_scale) + ", " +
                           std::to_string(opt.max_length_scale) + "]");
  if (opt.grid_size < 2)
    throw invalid_argument(detail::expected_got(where, "grid_size", ">= 2", opt.grid_size));
  if (opt.refine_steps < 0)
    throw invalid_argument(detail::expected_got(where, "refine_steps", ">= 0", opt.refine_steps));
}

template <typename Tag>
void basic_gaussian_process<Tag>::fit(const std::vector<vector<double>>& x, const std::vector<double>& y,
                                      double length_scale) {
  if (!(length_scale > 0) || !std::isfinite(length_scale))
    throw invalid_argument(
        detail::expected_got("gaussian_process::fit", "length_scale", "> 0", length_scale));
  fit_impl(x, y, length_scale);
}

template <typename Tag>
std::pair<double, double> basic_gaussian_process<Tag>::predict(const vector<double>& x) const {
  check_dimension(x.size(), "gaussian_process::predict");
  const vector<double> r = correlations(x);
  const double mean_n = r.dot(m_beta);
  const vector<double> v = m_Lt.transpose().triangularView<Eigen::Lower>().solve(r);
  const double var_n = std::max(0.0, m_s2 * (1.0 - v.squaredNorm()));
  return {m_ymean + m_ystd * mean_n, m_ystd * std::sqrt(var_n)};
}

template <typename Tag>
void basic_gaussian_process<Tag>::predict_standardised(const matrix<double>& xs, vector<double>& mean,
                                                       vector<double>& sd) const {
  check_dimension(xs.rows(), "gaussian_process::predict_standardised");
  using row_array = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index m = xs.cols(), n = m_X.cols(), d = m_X.rows(), chunk = 128;
  mean.resize(m);
  sd.resize(m);
  // Plain loops over contiguous rows: they vectorise in Release and stay fast under sanitizers.
  row_array a(n, chunk);  // row i: correlations of training point i with the block's points
  std::vector<double> mean_acc(static_cast<std::size_t>(chunk)), sq_acc(static_cast<std::size_t>(chunk));
  for (index j0 = 0; j0 < m; j0 += chunk) {
    const index w = std::min(chunk, m - j0);
    for (index i = 0; i < n; ++i) {
      double* ri = a.data() + i * chunk;
      for (index j = 0; j < w; ++j) ri[j] = 0.0;
      for (index k = 0; k < d; ++k) {
        const double xk = m_X(k, i);
        const double* sk = xs.data() + k * m + j0;
        for (index j = 0; j < w; ++j) ri[j] += (sk[j] - xk) * (sk[j] - xk);
      }
    }
    auto aw = a.leftCols(w);
    aw = (5.0 * aw).sqrt() / m_length;                  // √5 r / ℓ
    aw = (1.0 + aw + aw.square() / 3.0) * (-aw).exp();  // Matérn-5/2 correlation
    double* ma = mean_acc.data();
    double* sa = sq_acc.data();
    for (index j = 0; j < w; ++j) ma[j] = sa[j] = 0.0;
    for (index i = 0; i < n; ++i) {
      const double b = m_beta[i];
      const double* ri = a.data() + i * chunk;
      for (index j = 0; j < w; ++j) ma[j] += b * ri[j];
    }
    // Forward substitution in place, V = L⁻¹ R row by row; var = s² (1 − |V_j|²).
    for (index i = 0; i < n; ++i) {
      double* ri = a.data() + i * chunk;
      for (index k = 0; k < i; ++k) {
        const double l = m_Lt(k, i);
        const double* rk = a.data() + k * chunk;
        for (index j = 0; j < w; ++j) ri[j] -= l * rk[j];
      }
      const double inv = 1.0 / m_Lt(i, i);
      for (index j = 0; j < w; ++j) {
        ri[j] *= inv;
        sa[j] += ri[j] * ri[j];
      }
    }
    for (index j = 0; j < w; ++j) {
      mean[j0 + j] = ma[j];
      sd[j0 + j] = std::sqrt(std::max(0.0, m_s2 * (1.0 - sa[j])));
    }
  }
}

template <typename Tag>
void basic_gaussian_process<Tag>::predict_standardised_gradient(const vector<double>& x, double& mean,
                                                                double& sd, vector<double>& dmean,
                                                                vector<double>& dsd) const {
  check_dimension(x.size(), "gaussian_process::predict_standardised_gradient");
  const index n = m_X.cols(), d = m_X.rows();
  vector<double> r(n);
  Eigen::MatrixXd G(d, n);  // column i: d r_i / d x
  const double a = std::sqrt(5.0) / m_length;
  for (index i = 0; i < n; ++i) {
    const vector<double> diff = x - m_X.col(i);
    const double dist = diff.norm();
    const double e = std::exp(-a * dist);
    r[i] = (1.0 + a * dist + a * a * dist * dist / 3.0) * e;
    G.col(i) = (-(a * a / 3.0) * (1.0 + a * dist) * e) * diff;
  }
  mean = r.dot(m_beta);
  dmean = G * m_beta;
  const vector<double> u = m_llt.solve(r);  // (R + ηI)⁻¹ r
  const double var = m_s2 * (1.0 - r.dot(u));
  if (var > 1e-18) {
    sd = std::sqrt(var);
    dsd = (-m_s2 / sd) * (G * u);  // d var = −2 s² Gu, d sd = d var / (2 sd)
  } else {
    sd = 0;
    dsd = vector<double>::Zero(d);
  }
}

template <typename Tag>
double basic_gaussian_process<Tag>::evaluate(double length, Eigen::LLT<Eigen::MatrixXd>& llt, double& s2,
                                             double& eta) const {
  const index n = m_X.cols();
  Eigen::MatrixXd A(n, n);
  for (index j = 0; j < n; ++j)
    for (index i = 0; i < n; ++i) A(i, j) = matern52(m_dist(i, j), length);
  eta = m_opt.noise;
  double jitter = 0;
  for (;;) {
    Eigen::MatrixXd Aj = A;
    Aj.diagonal().array() += eta + jitter;
    llt.compute(Aj);
    if (llt.info() == Eigen::Success && llt.matrixLLT().diagonal().minCoeff() > 0) {
      eta += jitter;
      break;
    }
    jitter = jitter == 0 ? 1e-10 : jitter * 10;
    if (jitter > 1e-2)
      throw numeric_error(
          "gaussian_process::fit: kernel matrix expected positive definite with jitter <= 1e-2, "
          "got a failed Cholesky factorisation");
  }
  const vector<double> beta = llt.solve(m_yn);
  const double nn = static_cast<double>(n);
  s2 = std::max(m_yn.dot(beta) / nn, 1e-12);
  const double log_det = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  // log N(y | 0, s² A) with s² = yᵀA⁻¹y / n:  −n/2 log s² − ½ log|A| − n/2 (1 + log 2π)
  return -0.5 * nn * std::log(s2) - 0.5 * log_det - 0.5 * nn * (1.0 + std::log(2.0 * 3.141592653589793));
}

template <typename Tag>
void basic_gaussian_process<Tag>::fit_impl(const std::vector<vector<double>>& x, const std::vector<double>& y,
                                           double fixed_length) {
  const char* where = "gaussian_process::fit";
  if (x.empty()) throw invalid_argument(std::string(where) + ": point count expected >= 1, got 0");
  if (y.size() != x.size())
    throw invalid_argument(detail::expected_got(where, "target count", x.size(), y.size()));
  const index d = x.front().size(), n = static_cast<index>(x.size());
  if (d < 1) throw invalid_argument(std::string(where) + ": point size expected >= 1, got 0");
  m_X.resize(d, n);
  m_yn.resize(n);
  for (index i = 0; i < n; ++i) {
    const auto& xi = x[static_cast<std::size_t>(i)];
    if (xi.size() != d) throw invalid_argument(detail::expected_got(where, "point size", d, xi.size()));
    if (!xi.allFinite() || !std::isfinite(y[static_cast<std::size_t>(i)]))
      throw invalid_argument(std::string(where) + ": point " + std::to_string(i) +
                             " expected finite, got a NaN or infinity");
    m_X.col(i) = xi;
    m_yn[i] = y[static_cast<std::size_t>(i)];
  }
  m_ymean = m_yn.mean();
  const double var = (m_yn.array() - m_ymean).square().sum() / static_cast<double>(n);
  m_ystd = var > 0 ? std::sqrt(var) : 1.0;
  m_yn = (m_yn.array() - m_ymean) / m_ystd;
  m_dist.resize(n, n);
  for (index j = 0; j < n; ++j)
    for (index i = 0; i < n; ++i) m_dist(i, j) = (m_X.col(i) - m_X.col(j)).norm();

  double best_length = fixed_length;
  if (fixed_length <= 0) {
    // Log grid, then golden-section search in log ℓ between the best point's neighbours.
    const double lo = std::log(m_opt.min_length_scale), hi = std::log(m_opt.max_length_scale);
    const index g = m_opt.grid_size;
    Eigen::LLT<Eigen::MatrixXd> llt;
    double s2 = 0, eta = 0, best = -std::numeric_limits<double>::infinity();
    index best_k = 0;
    auto at = [&](index k) { return lo + (hi - lo) * static_cast<double>(k) / static_cast<double>(g - 1); };
    for (index k = 0; k < g; ++k) {
      const double v = evaluate(std::exp(at(k)), llt, s2, eta);
      if (v > best) {
        best = v;
        best_k = k;
      }
    }
    double a = at(std::max<index>(best_k - 1, 0)), b = at(std::min<index>(best_k + 1, g - 1));
    double best_log = at(best_k);
    const double phi = 0.6180339887498949;
    double c = b - phi * (b - a), e = a + phi * (b - a);
    double fc = evaluate(std::exp(c), llt, s2, eta), fe = evaluate(std::exp(e), llt, s2, eta);
    for (index s = 0; s < m_opt.refine_steps; ++s) {
      if (fc > fe) {
        b = e;
        e = c;
        fe = fc;
        c = b - phi * (b - a);
        fc = evaluate(std::exp(c), llt, s2, eta);
      } else {
        a = c;
        c = e;
        fc = fe;
        e = a + phi * (b - a);
        fe = evaluate(std::exp(e), llt, s2, eta);
      }
    }
    if (fc > best) {
      best = fc;
      best_log = c;
    }
    if (fe > best) {
      best = fe;
      best_log = e;
    }
    best_length = std::exp(best_log);
  }
  m_length = best_length;
  m_lml = evaluate(m_length, m_llt, m_s2, m_eta);
  m_Lt = m_llt.matrixU();
  m_beta = m_llt.solve(m_yn);
  m_fitted = true;
}

using gaussian_process = basic_gaussian_process<>;

/// Options of `bayes_opt` and `bayes_opt_minimize`.
struct bayes_opt_options {
  index init_points = 20;             ///< uniform random points evaluated first (≥ 1; MPMP uses 20)
  index n_iter = 80;                  ///< GP-guided points after them (≥ 0); total = init_points + n_iter
  double kappa = 2.0;                 ///< ≥ 0, exploration weight of the confidence bound
  index acquisition_samples = 10000;  ///< ≥ 1 random points scored per suggestion
  index refine_starts = 5;            ///< ≥ 0 best samples refined by projected gradient descent
  index refine_iterations = 30;       ///< ≥ 0 descent steps per start
  gp_options gp;                      ///< surrogate options (the box is mapped to [0, 1]^d)
  std::uint64_t seed = 1;             ///< seed of every random draw
};

/// Outcome of `bayes_opt_minimize`.
struct bayes_opt_result {
  vector<double> x;                                    ///< best evaluated point
  double f = std::numeric_limits<double>::infinity();  ///< its objective value
  index evaluations = 0;                               ///< objective calls
  std::vector<vector<double>> xs;                      ///< every evaluated point, in order
  std::vector<double> fs;                              ///< their values
};

/// Bayesian optimisation as a suggest/observe loop (minimisation in a box).
///
/// Usage:
/// ```
/// peft::bayes_opt bo(lower, upper, opts);
/// for (int t = 0; t < 100; ++t) { auto x = bo.suggest(); bo.observe(x, loss(x)); }
/// ```
/// The first `init_points` suggestions are uniform random points; later ones maximise the
/// acquisition on the GP fitted to every observation so far. `observe` accepts any point in the
/// box (e.g. a known starting point), not only suggested ones.
/// `bayes_opt` names `basic_bayes_opt<>` (a template for the same reason as the GP).
template <typename Tag = void>
class basic_bayes_opt {
public:
  /// @throws invalid_argument for bounds that are empty, of different sizes, not finite or with
  ///         lower ≥ upper, or a bad option value
  basic_bayes_opt(const vector<double>& lower, const vector<double>& upper,
                  const bayes_opt_options& opt = {});

  /// The next point to evaluate (inside the box).
  /// @throws numeric_error if the surrogate cannot be factorised
  vector<double> suggest();

  /// Records the objective value `f` at `x`.
  /// @throws invalid_argument for a point of the wrong size or outside the box;
  ///         numeric_error for a NaN or infinite value
  void observe(const vector<double>& x, double f);

  index dimension() const noexcept { return m_lower.size(); }
  /// Observations so far.
  index size() const noexcept { return static_cast<index>(m_xs.size()); }
  const std::vector<vector<double>>& points() const noexcept { return m_xs; }
  const std::vector<double>& values() const noexcept { return m_fs; }
  const vector<double>& best_x() const noexcept { return m_best_x; }
  double best_f() const noexcept { return m_best_f; }
  /// The surrogate as last fitted by `suggest` (inputs in unit-cube coordinates).
  const basic_gaussian_process<Tag>& model() const noexcept { return m_gp; }

private:
  vector<double> to_unit(const vector<double>& x) const {
    return ((x - m_lower).array() / m_width.array()).matrix();
  }
  vector<double> from_unit(const vector<double>& u) const {
    return (m_lower + u.cwiseProduct(m_width)).cwiseMax(m_lower).cwiseMin(m_upper);
  }
  static bool is_duplicate(const vector<double>& u, const std::vector<vector<double>>& us) {
    for (const auto& v : us)
      if ((u - v).norm() < 1e-8) return true;
    return false;
  }

  /// Projected gradient descent on mean − κ·std in the unit cube; returns the final value.
  double refine(vector<double>& u) const;

  vector<double> m_lower, m_upper, m_width;
  bayes_opt_options m_opt;
  basic_gaussian_process<Tag> m_gp;
  rng m_rng;
  std::vector<vector<double>> m_xs;
  std::vector<double> m_fs;
  vector<double> m_best_x;
  double m_best_f = std::numeric_limits<double>::infinity();
};

template <typename Tag>
basic_bayes_opt<Tag>::basic_bayes_opt(const vector<double>& lower, const vector<double>& upper,
                                      const bayes_opt_options& opt)
    : m_lower(lower), m_upper(upper), m_opt(opt), m_gp(opt.gp), m_rng(opt.seed) {
  const char* where = "bayes_opt::bayes_opt";
  if (lower.size() < 1) throw invalid_argument(std::string(where) + ": bounds size expected >= 1, got 0");
  if (upper.size() != lower.size())
    throw invalid_argument(
        detail::expected_got(where, "upper bounds size (= lower size)", lower.size(), upper.size()));
  for (index i = 0; i < lower.size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    if (!std::isfinite(lower[i]) || !std::isfinite(upper[i]) || !(lower[i] < upper[i]))
      throw invalid_argument(std::string(where) + ": bounds expected finite with lower" + at + " < upper" +
                             at + ", got [" + std::to_string(lower[i]) + ", " + std::to_string(upper[i]) +
                             "]");
  }
  if (opt.init_points < 1)
    throw invalid_argument(detail::expected_got(where, "init_points", ">= 1", opt.init_points));
  if (opt.n_iter < 0) throw invalid_argument(detail::expected_got(where, "n_iter", ">= 0", opt.n_iter));
  if (!(opt.kappa >= 0) || !std::isfinite(opt.kappa))
    throw invalid_argument(detail::expected_got(where, "kappa", ">= 0 and finite", opt.kappa));
  if (opt.acquisition_samples < 1)
    throw invalid_argument(
        detail::expected_got(where, "acquisition_samples", ">= 1", opt.acquisition_samples));
  if (opt.refine_starts < 0)
    throw invalid_argument(detail::expected_got(where, "refine_starts", ">= 0", opt.refine_starts));
  if (opt.refine_iterations < 0)
    throw invalid_argument(detail::expected_got(where, "refine_iterations", ">= 0", opt.refine_iterations));
  m_width = m_upper - m_lower;
}

template <typename Tag>
vector<double> basic_bayes_opt<Tag>::suggest() {
  const index d = dimension();
  if (static_cast<index>(m_xs.size()) < m_opt.init_points) {
    vector<double> u(d);
    for (index i = 0; i < d; ++i) u[i] = m_rng.uniform();
    return from_unit(u);
  }
  // Fit on unit-cube inputs.
  std::vector<vector<double>> us;
  us.reserve(m_xs.size());
  for (const auto& x : m_xs) us.push_back(to_unit(x));
  m_gp.fit(us, m_fs);

  // Score random samples.
  const index m = m_opt.acquisition_samples;
  matrix<double> samples(d, m);
  for (index j = 0; j < m; ++j)
    for (index i = 0; i < d; ++i) samples(i, j) = m_rng.uniform();
  vector<double> mean, sd;
  m_gp.predict_standardised(samples, mean, sd);
  const vector<double> acq = mean - m_opt.kappa * sd;
  std::vector<index> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), index{0});
  const auto k = static_cast<std::size_t>(std::min(m_opt.refine_starts, m));
  auto by_acq = [&](index a, index b) { return acq[a] < acq[b] || (acq[a] == acq[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(k, 1)),
                    order.end(), by_acq);

  // Refine the best samples and the best observation by projected gradient descent.
  vector<double> best_u = samples.col(order[0]);
  double best_a = acq[order[0]];
  std::vector<vector<double>> starts;
  for (std::size_t s = 0; s < k; ++s) starts.push_back(samples.col(order[s]));
  if (m_opt.refine_starts > 0) starts.push_back(to_unit(m_best_x));
  for (const auto& start : starts) {
    vector<double> u = start;
    const double a = refine(u);
    if (a < best_a && !is_duplicate(u, us)) {
      best_a = a;
      best_u = u;
    }
  }
  if (is_duplicate(best_u, us)) {
    // Every candidate repeats an observation: take the best random sample that does not.
    std::sort(order.begin(), order.end(), by_acq);
    best_u = samples.col(order[0]);
    for (index j : order)
      if (!is_duplicate(samples.col(j), us)) {
        best_u = samples.col(j);
        break;
      }
  }
  return from_unit(best_u);
}

template <typename Tag>
void basic_bayes_opt<Tag>::observe(const vector<double>& x, double f) {
  const char* where = "bayes_opt::observe";
  if (x.size() != dimension())
    throw invalid_argument(detail::expected_got(where, "point size", dimension(), x.size()));
  for (index i = 0; i < x.size(); ++i)
    if (!(x[i] >= m_lower[i] && x[i] <= m_upper[i]))
      throw invalid_argument(std::string(where) + ": x[" + std::to_string(i) + "] expected in [" +
                             std::to_string(m_lower[i]) + ", " + std::to_string(m_upper[i]) + "], got " +
                             std::to_string(x[i]));
  if (!std::isfinite(f)) throw numeric_error(detail::expected_got(where, "value", "finite", f));
  m_xs.push_back(x);
  m_fs.push_back(f);
  if (f < m_best_f) {
    m_best_f = f;
    m_best_x = x;
  }
}

template <typename Tag>
double basic_bayes_opt<Tag>::refine(vector<double>& u) const {
  double mean = 0, sd = 0;
  vector<double> dmean, dsd;
  m_gp.predict_standardised_gradient(u, mean, sd, dmean, dsd);
  double a = mean - m_opt.kappa * sd;
  vector<double> grad = dmean - m_opt.kappa * dsd;
  double step = 0.05;
  for (index it = 0; it < m_opt.refine_iterations && step > 1e-7; ++it) {
    const double gnorm = grad.norm();
    if (!(gnorm > 0) || !std::isfinite(gnorm)) break;
    const vector<double> trial = (u - (step / gnorm) * grad).cwiseMax(0.0).cwiseMin(1.0);
    double tm = 0, ts = 0;
    vector<double> tdm, tds;
    m_gp.predict_standardised_gradient(trial, tm, ts, tdm, tds);
    const double ta = tm - m_opt.kappa * ts;
    if (ta < a) {
      u = trial;
      a = ta;
      grad = tdm - m_opt.kappa * tds;
      step = std::min(step * 2.0, 0.5);
    } else {
      step *= 0.5;
    }
  }
  return a;
}

using bayes_opt = basic_bayes_opt<>;

/// Minimises `f` over the box [lower, upper] with `init_points` random evaluations followed by
/// `n_iter` GP-UCB evaluations (exactly `init_points + n_iter` calls).
/// @param f objective, callable as `double(const peft::vector<double>&)`, only called inside the box
/// @throws invalid_argument as `bayes_opt::bayes_opt`; numeric_error if f returns NaN or infinity
template <typename F>
bayes_opt_result bayes_opt_minimize(F&& f, const vector<double>& lower, const vector<double>& upper,
                                    const bayes_opt_options& opt = {}) {
  bayes_opt bo(lower, upper, opt);
  const index total = opt.init_points + opt.n_iter;
  for (index t = 0; t < total; ++t) {
    const vector<double> x = bo.suggest();
    bo.observe(x, static_cast<double>(f(x)));
  }
  bayes_opt_result r;
  r.x = bo.best_x();
  r.f = bo.best_f();
  r.evaluations = bo.size();
  r.xs = bo.points();
  r.fs = bo.values();
  return r;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPTIM_BAYES_OPT
#include "../detail/instances.hpp"

#endif  // PEFT_OPTIM_BAYES_OPT_HPP
