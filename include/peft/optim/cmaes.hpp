// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_CMAES_HPP
#define PEFT_OPTIM_CMAES_HPP

/// @file cmaes.hpp
/// CMA-ES, the covariance matrix adaptation evolution strategy (Hansen & Ostermeier 2001;
/// Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv 1604.00772), for gradient-free
/// minimisation over a flat parameter vector: MPMP's stage-2 black-box tuning of the
/// intrinsic prompt vectors (METHODS.md §5.5). Also the adapters that let any black-box
/// optimizer of peft tune a `parameter_set` (`blackbox_objective`, `blackbox_start`,
/// `blackbox_apply`).
///
/// The algorithm is the standard (μ/μ_w, λ)-CMA-ES with full covariance. Per generation g,
/// with n the dimension, m the mean, σ the step size, C = B D² Bᵀ:
/// ```
/// z_k ~ N(0, I),  y_k = B D z_k,  x_k = m + σ y_k                        k = 1..λ
/// rank by f; y_w = Σ_{i≤μ} w_i y_{i:λ};  m ← m + σ y_w
/// p_σ ← (1 − c_σ) p_σ + sqrt(c_σ (2 − c_σ) μ_eff) B z_w                  (= C^{-1/2} y_w)
/// h_σ = [ |p_σ| / sqrt(1 − (1 − c_σ)^{2(g+1)}) < (1.4 + 2/(n+1)) E|N(0,I)| ]
/// p_c ← (1 − c_c) p_c + h_σ sqrt(c_c (2 − c_c) μ_eff) y_w
/// C ← (1 − c_1 − c_μ + (1 − h_σ) c_1 c_c (2 − c_c)) C + c_1 p_c p_cᵀ + c_μ Σ_{i≤μ} w_i y_{i:λ} y_{i:λ}ᵀ
/// σ ← σ exp((c_σ / d_σ) (|p_σ| / E|N(0,I)| − 1))
/// ```
/// Defaults (the tutorial's Table 1, positive recombination weights only):
/// λ = 4 + ⌊3 ln n⌋, μ = ⌊λ/2⌋, w_i ∝ ln((λ+1)/2) − ln i, μ_eff = 1/Σ w_i²,
/// c_c = (4 + μ_eff/n)/(n + 4 + 2μ_eff/n), c_σ = (μ_eff + 2)/(n + μ_eff + 5),
/// c_1 = 2/((n + 1.3)² + μ_eff), c_μ = min(1 − c_1, 2(μ_eff − 2 + 1/μ_eff)/((n + 2)² + μ_eff)),
/// d_σ = 1 + 2 max(0, sqrt((μ_eff − 1)/(n + 1)) − 1) + c_σ,
/// E|N(0,I)| ≈ sqrt(n)(1 − 1/(4n) + 1/(21n²)).
/// B and D come from Eigen's `SelfAdjointEigenSolver`, refreshed lazily: only when more than
/// λ / (10 n (c_1 + c_μ)) generations have passed since the last decomposition (the tutorial's
/// O(n²)-per-sample schedule). If the ranking values of ranks 1 and ⌈λ/4⌉ + 1 are equal (flat
/// fitness), σ is enlarged by exp(0.2 + c_σ/d_σ) so the search can leave the plateau.
///
/// **Box bounds (repair + penalty).** A sample outside [lower, upper] is *clamped* into the
/// box and the objective is evaluated at the clamped point only, so every evaluated point lies
/// in the box. For ranking, the sample gets the penalised value
/// `f(clamp(x)) + γ · |x − clamp(x)|² / (σ² · mean(diag C))`, with γ the interquartile range of
/// the generation's f values (1e-3·|median f|, or 1, when that range is 0), so that a sample far
/// outside the box ranks worse than its repaired point would suggest and the mean is pulled back;
/// the update uses the unclamped sample (the distribution stays Gaussian). This is Hansen's
/// repair-plus-penalty scheme with a per-generation rather than a smoothed penalty weight.
/// The reported best point is always an evaluated (in-box) point with its true f.
///
/// Determinism: normals come from `peft::rng` (seeded by `cmaes_options::seed`) and every
/// reduction runs in a fixed order, so a seed reproduces a run bit for bit.

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"

namespace peft {

/// Why a CMA-ES run stopped (`none` while it may continue).
enum class cmaes_stop {
  none,             ///< still running
  max_iterations,   ///< `max_iterations` generations done
  max_evaluations,  ///< another generation would exceed `max_evaluations`
  ftarget,          ///< best f ≤ `ftarget`
  tolfun,           ///< this generation's f values, and the best f of each of the last
                    ///< 10 + ⌈30n/λ⌉ generations, each span < `tolfun`
  tolx,             ///< σ·max sqrt(C_ii) and σ·max |p_c,i| both < `tolx`
  condition,        ///< condition number of C exceeds `max_condition`
};

inline const char* to_string(cmaes_stop s) noexcept {
  switch (s) {
    case cmaes_stop::none: return "none";
    case cmaes_stop::max_iterations: return "max_iterations";
    case cmaes_stop::max_evaluations: return "max_evaluations";
    case cmaes_stop::ftarget: return "ftarget";
    case cmaes_stop::tolfun: return "tolfun";
    case cmaes_stop::tolx: return "tolx";
    case cmaes_stop::condition: return "condition";
  }
  return "?";
}

/// Options of `cmaes` and `cmaes_minimize` (σ0 and x0 are arguments of their own).
struct cmaes_options {
  index population_size = 0;  ///< λ; 0 = 4 + ⌊3 ln n⌋, else ≥ 2
  vector<double> lower;       ///< box lower bounds; empty = unbounded (then `upper` empty too)
  vector<double> upper;       ///< box upper bounds, same size as `lower`
  index max_iterations = 0;   ///< generations; 0 = 100 + 150 (n+3)² / sqrt(λ) (pycma's default)
  index max_evaluations = 0;  ///< objective calls; 0 = unlimited. Never exceeded: a run stops
                              ///< when one more generation would go over it
  double ftarget = -std::numeric_limits<double>::infinity();  ///< stop once best f ≤ ftarget
  double tolfun = 1e-11;                                      ///< ≥ 0; see `cmaes_stop::tolfun`
  double tolx = 1e-11;                                        ///< ≥ 0; see `cmaes_stop::tolx`
  double max_condition = 1e14;                                ///< > 1; see `cmaes_stop::condition`
  std::uint64_t seed = 1;                                     ///< seed of the sampling generator
};

/// Outcome of `cmaes_minimize`.
struct cmaes_result {
  vector<double> x;                                    ///< best evaluated point (inside the box, if any)
  double f = std::numeric_limits<double>::infinity();  ///< its objective value
  index evaluations = 0;                               ///< objective calls
  index iterations = 0;                                ///< generations completed
  cmaes_stop reason = cmaes_stop::none;
  vector<double> mean;  ///< final distribution mean (may lie outside the box)
  double sigma = 0;     ///< final step size
};

/// CMA-ES as an ask/tell state machine (minimisation).
///
/// Usage:
/// ```
/// peft::cmaes es(x0, 0.5, opts);
/// while (!es.stop()) {
///   auto xs = es.ask();                       // λ candidates, inside the box
///   std::vector<double> fs;
///   for (auto& x : xs) fs.push_back(loss(x));
///   es.tell(xs, fs);
/// }
/// ```
/// `tell` must receive the candidates of the most recent `ask`, in the same order; calling
/// `ask` again before `tell` discards the pending candidates and draws new ones.
///
/// `cmaes` names `basic_cmaes<>`: the class is a template only so that its code (Eigen's
/// eigen-solver, about 3 s of compile time) is compiled where CMA-ES is used, not in every
/// translation unit that includes the umbrella header. `Tag` has no other meaning.
template <typename Tag = void>
class basic_cmaes {
public:
  /// @param x0 initial mean (size n ≥ 1; inside the box when bounds are given)
  /// @param sigma0 initial step size (> 0, finite)
  /// @param opt options
  /// @throws invalid_argument for an empty or non-finite x0, σ0 ≤ 0, bounds of the wrong
  ///         size, lower > upper, x0 outside the box, or a bad option value
  basic_cmaes(const vector<double>& x0, double sigma0, const cmaes_options& opt = {});

  /// Draws λ candidates; each lies inside the box (clamped) when bounds are set.
  /// @throws numeric_error if the covariance matrix has become non-finite
  std::vector<vector<double>> ask();

  /// Updates the distribution from the objective values of the last `ask`'s candidates.
  /// @param candidates exactly the vectors the last `ask` returned, in order
  /// @param fitness their objective values (minimised), all finite
  /// @throws invalid_argument without a pending `ask`, for other candidates or a size mismatch;
  ///         numeric_error for a NaN or infinite value
  void tell(const std::vector<vector<double>>& candidates, const std::vector<double>& fitness);

  /// True once a stopping criterion holds (see `stop_reason`).
  bool stop() const noexcept { return stop_reason() != cmaes_stop::none; }
  /// The criterion that holds: the one found by the last `tell` (ftarget, tolfun, tolx or
  /// condition, in that order), else the iteration or evaluation limit.
  cmaes_stop stop_reason() const noexcept {
    if (m_reason != cmaes_stop::none) return m_reason;
    if (m_iterations >= m_max_iterations) return cmaes_stop::max_iterations;
    if (m_opt.max_evaluations > 0 && m_evaluations + m_lambda > m_opt.max_evaluations)
      return cmaes_stop::max_evaluations;
    return cmaes_stop::none;
  }

  index dimension() const noexcept { return m_n; }
  /// λ, the number of candidates per `ask`.
  index population_size() const noexcept { return m_lambda; }
  /// μ, the number of candidates recombined.
  index parents() const noexcept { return m_mu; }
  double mueff() const noexcept { return m_mueff; }
  /// Recombination weights w_1 ≥ … ≥ w_μ > 0, summing to 1.
  const vector<double>& weights() const noexcept { return m_weights; }
  const vector<double>& mean() const noexcept { return m_mean; }
  double sigma() const noexcept { return m_sigma; }
  const Eigen::MatrixXd& covariance() const noexcept { return m_C; }
  index evaluations() const noexcept { return m_evaluations; }
  index iterations() const noexcept { return m_iterations; }
  /// Generation limit in force (the default when `max_iterations` was 0).
  index max_iterations() const noexcept { return m_max_iterations; }
  const vector<double>& best_x() const noexcept { return m_best_x; }
  double best_f() const noexcept { return m_best_f; }

private:
  bool bounded() const noexcept { return m_opt.lower.size() > 0; }

  void validate(const vector<double>& x0, double sigma0, const cmaes_options& o) const;

  /// Decomposes C = B D² Bᵀ if it is stale (or never done).
  void refresh_eigen();

  void add_bound_penalty(const std::vector<vector<double>>& xs, const std::vector<double>& f,
                         std::vector<double>& rank_value) const {
    std::vector<double> sorted(f);
    std::sort(sorted.begin(), sorted.end());
    auto quantile = [&](double q) {
      const double pos = q * static_cast<double>(sorted.size() - 1);
      const auto lo = static_cast<std::size_t>(std::floor(pos));
      const auto hi = std::min(lo + 1, sorted.size() - 1);
      return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
    };
    double gamma = quantile(0.75) - quantile(0.25);
    if (!(gamma > 0)) gamma = std::abs(quantile(0.5)) * 1e-3;
    if (!(gamma > 0)) gamma = 1.0;
    const double scale = m_sigma * m_sigma * m_C.diagonal().mean();
    for (std::size_t k = 0; k < xs.size(); ++k) {
      const vector<double> x = m_mean + m_sigma * m_y.col(static_cast<index>(k));
      const double d2 = (x - xs[k]).squaredNorm();
      if (d2 > 0) rank_value[k] += gamma * d2 / scale;
    }
  }

  void update_stop(double gen_min, double gen_max);

  cmaes_options m_opt;
  index m_n;
  rng m_rng;
  index m_lambda = 0, m_mu = 0;
  vector<double> m_weights;
  double m_mueff = 0, m_cc = 0, m_cs = 0, m_c1 = 0, m_cmu = 0, m_damps = 0, m_chin = 0;
  index m_max_iterations = 0, m_history_length = 0;

  vector<double> m_mean, m_pc, m_ps, m_D;
  double m_sigma = 0;
  Eigen::MatrixXd m_C, m_B;
  index m_eigen_iteration = 0;
  bool m_eigen_fresh = false;

  Eigen::MatrixXd m_z, m_y;  // samples of the pending generation, one per column
  std::vector<vector<double>> m_pending;
  bool m_has_pending = false;

  index m_evaluations = 0, m_iterations = 0;
  vector<double> m_best_x;
  double m_best_f = std::numeric_limits<double>::infinity();
  std::vector<double> m_best_history;  // best f of the last generations (tolfun)
  cmaes_stop m_reason = cmaes_stop::none;
};

template <typename Tag>
basic_cmaes<Tag>::basic_cmaes(const vector<double>& x0, double sigma0, const cmaes_options& opt)
    : m_opt(opt), m_n(x0.size()), m_rng(opt.seed) {
  validate(x0, sigma0, opt);
  const double n = static_cast<double>(m_n);
  m_lambda =
      opt.population_size > 0 ? opt.population_size : 4 + static_cast<index>(std::floor(3.0 * std::log(n)));
  m_mu = m_lambda / 2;
  m_weights.resize(m_mu);
  for (index i = 0; i < m_mu; ++i)
    m_weights[i] =
        std::log((static_cast<double>(m_lambda) + 1.0) / 2.0) - std::log(static_cast<double>(i + 1));
  m_weights /= m_weights.sum();
  m_mueff = 1.0 / m_weights.squaredNorm();
  m_cc = (4.0 + m_mueff / n) / (n + 4.0 + 2.0 * m_mueff / n);
  m_cs = (m_mueff + 2.0) / (n + m_mueff + 5.0);
  m_c1 = 2.0 / ((n + 1.3) * (n + 1.3) + m_mueff);
  m_cmu = std::min(1.0 - m_c1, 2.0 * (m_mueff - 2.0 + 1.0 / m_mueff) / ((n + 2.0) * (n + 2.0) + m_mueff));
  m_damps = 1.0 + 2.0 * std::max(0.0, std::sqrt((m_mueff - 1.0) / (n + 1.0)) - 1.0) + m_cs;
  m_chin = std::sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));
  m_max_iterations = opt.max_iterations > 0
                         ? opt.max_iterations
                         : 100 + static_cast<index>(150.0 * (n + 3.0) * (n + 3.0) /
                                                    std::sqrt(static_cast<double>(m_lambda)));
  m_history_length = 10 + static_cast<index>(std::ceil(30.0 * n / static_cast<double>(m_lambda)));

  m_mean = x0;
  m_sigma = sigma0;
  m_pc = vector<double>::Zero(m_n);
  m_ps = vector<double>::Zero(m_n);
  m_C = Eigen::MatrixXd::Identity(m_n, m_n);
  m_B = Eigen::MatrixXd::Identity(m_n, m_n);
  m_D = vector<double>::Ones(m_n);
  m_best_x = x0;
}

template <typename Tag>
std::vector<vector<double>> basic_cmaes<Tag>::ask() {
  refresh_eigen();
  m_z.resize(m_n, m_lambda);
  m_y.resize(m_n, m_lambda);
  m_pending.assign(static_cast<std::size_t>(m_lambda), vector<double>());
  for (index k = 0; k < m_lambda; ++k) {
    for (index i = 0; i < m_n; ++i) m_z(i, k) = m_rng.normal();
    m_y.col(k).noalias() = m_B * (m_D.array() * m_z.col(k).array()).matrix();
    vector<double> x = m_mean + m_sigma * m_y.col(k);
    if (bounded()) x = x.cwiseMax(m_opt.lower).cwiseMin(m_opt.upper);
    m_pending[static_cast<std::size_t>(k)] = std::move(x);
  }
  m_has_pending = true;
  return m_pending;
}

template <typename Tag>
void basic_cmaes<Tag>::tell(const std::vector<vector<double>>& candidates,
                            const std::vector<double>& fitness) {
  if (!m_has_pending) throw invalid_argument("cmaes::tell: expected a call to ask() first, got none");
  const auto lam = static_cast<std::size_t>(m_lambda);
  if (candidates.size() != lam)
    throw invalid_argument(detail::expected_got("cmaes::tell", "candidate count", lam, candidates.size()));
  if (fitness.size() != lam)
    throw invalid_argument(detail::expected_got("cmaes::tell", "fitness count", lam, fitness.size()));
  for (std::size_t k = 0; k < lam; ++k) {
    if (candidates[k].size() != m_n || candidates[k] != m_pending[k])
      throw invalid_argument("cmaes::tell: candidate " + std::to_string(k) +
                             " expected the point returned by the last ask(), got another one");
    if (!std::isfinite(fitness[k]))
      throw numeric_error("cmaes::tell: fitness " + std::to_string(k) + " expected finite, got " +
                          std::to_string(fitness[k]));
  }
  m_has_pending = false;
  m_evaluations += m_lambda;
  for (std::size_t k = 0; k < lam; ++k)
    if (fitness[k] < m_best_f) {
      m_best_f = fitness[k];
      m_best_x = candidates[k];
    }

  // Ranking values: f, plus the boundary penalty for clamped samples.
  std::vector<double> rank_value(fitness);
  if (bounded()) add_bound_penalty(candidates, fitness, rank_value);
  std::vector<index> order(lam);
  std::iota(order.begin(), order.end(), index{0});
  std::stable_sort(order.begin(), order.end(), [&](index a, index b) {
    return rank_value[static_cast<std::size_t>(a)] < rank_value[static_cast<std::size_t>(b)];
  });

  // Recombination.
  vector<double> yw = vector<double>::Zero(m_n), zw = vector<double>::Zero(m_n);
  for (index i = 0; i < m_mu; ++i) {
    yw += m_weights[i] * m_y.col(order[static_cast<std::size_t>(i)]);
    zw += m_weights[i] * m_z.col(order[static_cast<std::size_t>(i)]);
  }
  m_mean += m_sigma * yw;

  // Evolution paths.
  const double n = static_cast<double>(m_n);
  m_ps = (1.0 - m_cs) * m_ps + std::sqrt(m_cs * (2.0 - m_cs) * m_mueff) * (m_B * zw);
  const double gen = static_cast<double>(m_iterations + 1);
  const double ps_norm = m_ps.norm();
  const bool hsig =
      ps_norm / std::sqrt(1.0 - std::pow(1.0 - m_cs, 2.0 * gen)) < (1.4 + 2.0 / (n + 1.0)) * m_chin;
  m_pc = (1.0 - m_cc) * m_pc;
  if (hsig) m_pc += std::sqrt(m_cc * (2.0 - m_cc) * m_mueff) * yw;

  // Covariance: decay, rank-one and rank-μ updates (rank-one outer products in a fixed order).
  const double delta_h = hsig ? 0.0 : m_cc * (2.0 - m_cc);
  m_C *= 1.0 - m_c1 - m_cmu + m_c1 * delta_h;
  m_C.noalias() += m_c1 * m_pc * m_pc.transpose();
  for (index i = 0; i < m_mu; ++i) {
    const auto yi = m_y.col(order[static_cast<std::size_t>(i)]);
    m_C.noalias() += (m_cmu * m_weights[i]) * yi * yi.transpose();
  }
  m_C = m_C.selfadjointView<Eigen::Upper>();  // keep exactly symmetric

  // Step size (CSA), with an escape from flat fitness.
  m_sigma *= std::exp((m_cs / m_damps) * (ps_norm / m_chin - 1.0));
  const std::size_t quarter = static_cast<std::size_t>(std::ceil(static_cast<double>(m_lambda) / 4.0));
  if (rank_value[static_cast<std::size_t>(order[0])] ==
      rank_value[static_cast<std::size_t>(order[std::min(quarter, lam - 1)])])
    m_sigma *= std::exp(0.2 + m_cs / m_damps);
  if (!std::isfinite(m_sigma) || !m_mean.allFinite() || !m_C.allFinite())
    throw numeric_error("cmaes::tell: distribution expected finite, got a non-finite mean, sigma or C");

  ++m_iterations;
  const auto [fmin_it, fmax_it] = std::minmax_element(fitness.begin(), fitness.end());
  m_best_history.push_back(*fmin_it);
  if (static_cast<index>(m_best_history.size()) > m_history_length)
    m_best_history.erase(m_best_history.begin());
  update_stop(*fmin_it, *fmax_it);
}

template <typename Tag>
void basic_cmaes<Tag>::validate(const vector<double>& x0, double sigma0, const cmaes_options& o) const {
  const char* where = "cmaes::cmaes";
  if (x0.size() < 1) throw invalid_argument(std::string(where) + ": x0 size expected >= 1, got 0");
  if (!x0.allFinite())
    throw invalid_argument(std::string(where) + ": x0 expected finite, got a NaN or infinity");
  if (!(sigma0 > 0) || !std::isfinite(sigma0))
    throw invalid_argument(std::string(where) + ": sigma0 expected > 0 and finite, got " +
                           std::to_string(sigma0));
  if (o.population_size < 0 || o.population_size == 1)
    throw invalid_argument(std::string(where) + ": population_size expected 0 (default) or >= 2, got " +
                           std::to_string(o.population_size));
  if (o.max_iterations < 0)
    throw invalid_argument(detail::expected_got(where, "max_iterations", ">= 0", o.max_iterations));
  if (o.max_evaluations < 0)
    throw invalid_argument(detail::expected_got(where, "max_evaluations", ">= 0", o.max_evaluations));
  if (!(o.tolfun >= 0)) throw invalid_argument(detail::expected_got(where, "tolfun", ">= 0", o.tolfun));
  if (!(o.tolx >= 0)) throw invalid_argument(detail::expected_got(where, "tolx", ">= 0", o.tolx));
  if (!(o.max_condition > 1))
    throw invalid_argument(detail::expected_got(where, "max_condition", "> 1", o.max_condition));
  if (o.lower.size() == 0 && o.upper.size() == 0) return;
  if (o.lower.size() != x0.size())
    throw invalid_argument(
        detail::expected_got(where, "lower bounds size (= x0 size)", x0.size(), o.lower.size()));
  if (o.upper.size() != x0.size())
    throw invalid_argument(
        detail::expected_got(where, "upper bounds size (= x0 size)", x0.size(), o.upper.size()));
  for (index i = 0; i < x0.size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    if (std::isnan(o.lower[i]) || std::isnan(o.upper[i]) || !(o.lower[i] <= o.upper[i]))
      throw invalid_argument(std::string(where) + ": bounds expected lower" + at + " <= upper" + at +
                             ", got " + std::to_string(o.lower[i]) + " > " + std::to_string(o.upper[i]));
    if (!(x0[i] >= o.lower[i] && x0[i] <= o.upper[i]))
      throw invalid_argument(std::string(where) + ": x0" + at + " expected in [" +
                             std::to_string(o.lower[i]) + ", " + std::to_string(o.upper[i]) + "], got " +
                             std::to_string(x0[i]));
  }
}

template <typename Tag>
void basic_cmaes<Tag>::refresh_eigen() {
  const double n = static_cast<double>(m_n);
  const double gap = static_cast<double>(m_lambda) / (10.0 * n * (m_c1 + m_cmu));
  if (m_eigen_fresh && static_cast<double>(m_iterations - m_eigen_iteration) <= gap) return;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(m_C);
  if (es.info() != Eigen::Success || !es.eigenvalues().allFinite())
    throw numeric_error("cmaes::ask: covariance eigen-decomposition expected to succeed, got a failure");
  const double emax = es.eigenvalues().maxCoeff();
  if (!(emax > 0))
    throw numeric_error("cmaes::ask: covariance expected positive definite, got max eigenvalue <= 0");
  const double floor = emax * 1e-20;
  m_D = es.eigenvalues().cwiseMax(floor).cwiseSqrt();
  m_B = es.eigenvectors();
  m_eigen_iteration = m_iterations;
  m_eigen_fresh = true;
}

template <typename Tag>
void basic_cmaes<Tag>::update_stop(double gen_min, double gen_max) {
  m_reason = cmaes_stop::none;
  if (m_best_f <= m_opt.ftarget) {
    m_reason = cmaes_stop::ftarget;
    return;
  }
  if (static_cast<index>(m_best_history.size()) >= m_history_length && gen_max - gen_min < m_opt.tolfun) {
    const auto [hmin, hmax] = std::minmax_element(m_best_history.begin(), m_best_history.end());
    if (*hmax - *hmin < m_opt.tolfun) {
      m_reason = cmaes_stop::tolfun;
      return;
    }
  }
  const double sd_max = m_sigma * std::sqrt(m_C.diagonal().maxCoeff());
  if (sd_max < m_opt.tolx && m_sigma * m_pc.cwiseAbs().maxCoeff() < m_opt.tolx) {
    m_reason = cmaes_stop::tolx;
    return;
  }
  const double dmin = m_D.minCoeff(), dmax = m_D.maxCoeff();
  if ((dmax / dmin) * (dmax / dmin) > m_opt.max_condition) m_reason = cmaes_stop::condition;
}

using cmaes = basic_cmaes<>;

/// Minimises `f` with CMA-ES, generation by generation, until a stopping criterion holds.
/// @param f objective, callable as `double(const peft::vector<double>&)`; called only at points
///          inside the box when bounds are set, and at most `max_evaluations` times when set
/// @param x0 initial mean; @param sigma0 initial step size; @param opt options
/// If `max_evaluations` is below λ nothing is evaluated (the result has f = +inf and x = x0).
/// Bitwise reproducible for a seed (same build and Eigen thread count).
/// @throws invalid_argument as `cmaes::cmaes`; numeric_error if f returns NaN or infinity
template <typename F>
cmaes_result cmaes_minimize(F&& f, const vector<double>& x0, double sigma0, const cmaes_options& opt = {}) {
  cmaes es(x0, sigma0, opt);
  std::vector<double> fs;
  while (!es.stop()) {
    const auto xs = es.ask();
    fs.clear();
    for (const auto& x : xs) fs.push_back(static_cast<double>(f(x)));
    es.tell(xs, fs);
  }
  cmaes_result r;
  r.x = es.best_x();
  r.f = es.best_f();
  r.evaluations = es.evaluations();
  r.iterations = es.iterations();
  r.reason = es.stop_reason();
  r.mean = es.mean();
  r.sigma = es.sigma();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Adapters: black-box optimizers work on `vector<double>`; these connect them to a
// `parameter_set` of any scalar type.

/// The set's current values as the double vector a black-box optimizer starts from.
template <typename Scalar>
vector<double> blackbox_start(const parameter_set<Scalar>& set) {
  return set.get_flat().template cast<double>();
}

/// Writes a double vector (e.g. the best point found) into the set.
/// @throws invalid_argument if `x` does not have the set's size
template <typename Scalar>
void blackbox_apply(parameter_set<Scalar>& set, const vector<double>& x) {
  set.set_flat(x.template cast<Scalar>());
}

/// Wraps `loss()` (which reads the set, e.g. runs a forward pass) as an objective over flat
/// vectors: each call writes x into the set with `set_flat`, then returns `loss()`. The set is
/// held by reference and is left holding the last evaluated point; call `blackbox_apply` with
/// the best point afterwards.
template <typename Scalar, typename Loss>
auto blackbox_objective(parameter_set<Scalar>& set, Loss loss) {
  return [&set, loss = std::move(loss)](const vector<double>& x) mutable -> double {
    blackbox_apply(set, x);
    return static_cast<double>(loss());
  };
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPTIM_CMAES
#include "../detail/instances.hpp"

#endif  // PEFT_OPTIM_CMAES_HPP
