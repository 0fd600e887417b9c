// SPDX-License-Identifier: Apache-2.0
// Gradient-free optimizers (MPMP black-box tuning): CMA-ES on sphere, Rosenbrock and a bounded
// problem; Bayesian optimisation on Branin and spheres; the Gaussian-process surrogate and its
// Matérn-5/2 kernel; determinism for a seed; bad input; the parameter_set adapter.
#include <peft/optim/optim.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "test_common.hpp"

namespace {

using Catch::Matchers::Contains;
using peft::vector;

/// Throws `type` and its message contains `text` (the expression is evaluated twice).
#define REQUIRE_THROWS_CONTAINING(expr, type, text) \
  do {                                              \
    REQUIRE_THROWS_AS(expr, type);                  \
    REQUIRE_THROWS_WITH(expr, text);                \
  } while (false)

double sphere(const vector<double>& x) { return x.squaredNorm(); }

double rosenbrock(const vector<double>& x) {
  double s = 0;
  for (peft::index i = 0; i + 1 < x.size(); ++i) {
    const double a = x[i + 1] - x[i] * x[i], b = 1.0 - x[i];
    s += 100.0 * a * a + b * b;
  }
  return s;
}

/// Branin-Hoo on [-5, 10] x [0, 15]; global minimum 0.397887 at three points.
double branin(const vector<double>& x) {
  const double pi = 3.141592653589793;
  const double a = x[1] - 5.1 / (4 * pi * pi) * x[0] * x[0] + 5.0 / pi * x[0] - 6.0;
  return a * a + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * std::cos(x[0]) + 10.0;
}
constexpr double branin_min = 0.397887357729738;

bool in_box(const vector<double>& x, const vector<double>& lo, const vector<double>& hi) {
  for (peft::index i = 0; i < x.size(); ++i)
    if (!(x[i] >= lo[i] && x[i] <= hi[i])) return false;
  return true;
}

/// An objective that records every point it is called at.
struct recorder {
  double (*f)(const vector<double>&);
  std::vector<vector<double>>* log;
  double operator()(const vector<double>& x) const {
    log->push_back(x);
    return f(x);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// CMA-ES

TEST_CASE("cmaes: default strategy parameters are Hansen's", "[cmaes]") {
  peft::cmaes es(vector<double>::Zero(10), 0.5);
  CHECK(es.population_size() == 10);  // 4 + floor(3 ln 10) = 4 + 6
  CHECK(es.parents() == 5);
  const auto& w = es.weights();
  CHECK(w.sum() == Approx(1.0).epsilon(1e-14));
  for (peft::index i = 0; i + 1 < w.size(); ++i) CHECK(w[i] > w[i + 1]);
  // w_i ∝ ln(5.5) − ln i; μ_eff = 1/Σw² = (Σw')²/Σw'².
  double s = 0, s2 = 0;
  for (int i = 1; i <= 5; ++i) {
    const double wi = std::log(5.5) - std::log(i);
    s += wi;
    s2 += wi * wi;
  }
  CHECK(es.mueff() == Approx(s * s / s2).epsilon(1e-12));
  CHECK(es.mueff() == Approx(3.1672).epsilon(1e-4));
  CHECK(peft::cmaes(vector<double>::Zero(300), 0.1).population_size() == 21);  // 4 + floor(3 ln 300)
  CHECK(peft::cmaes(vector<double>::Zero(1), 0.1).population_size() == 4);
}

TEST_CASE("cmaes: sphere in 10 dimensions to f < 1e-8 within 3000 evaluations", "[cmaes]") {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    peft::cmaes_options opt;
    opt.seed = seed;
    opt.max_evaluations = 3000;
    const auto r = peft::cmaes_minimize(sphere, vector<double>::Ones(10), 0.5, opt);
    INFO("seed " << seed << ": f " << r.f << " after " << r.evaluations << " evaluations, stop "
                 << peft::to_string(r.reason));
    CHECK(r.f < 1e-8);
    CHECK(r.evaluations <= 3000);
    CHECK(r.x.norm() < 1e-4);
    CHECK(r.f == Approx(sphere(r.x)).margin(0));
  }
}

TEST_CASE("cmaes: Rosenbrock in 10 dimensions to f < 1e-6 within 20000 evaluations", "[cmaes]") {
  for (std::uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    peft::cmaes_options opt;  // default population size (10)
    opt.seed = seed;
    opt.max_evaluations = 20000;
    const auto r = peft::cmaes_minimize(rosenbrock, vector<double>::Zero(10), 0.5, opt);
    INFO("seed " << seed << ": f " << r.f << " after " << r.evaluations << " evaluations, stop "
                 << peft::to_string(r.reason));
    CHECK(r.f < 1e-6);
    CHECK(r.evaluations <= 20000);
    CHECK((r.x - vector<double>::Ones(10)).cwiseAbs().maxCoeff() < 1e-3);
  }
}

TEST_CASE("cmaes: bounded problem finds the optimum on the boundary, evaluating only inside the box",
          "[cmaes]") {
  // Sphere centred at c, partly outside [-1, 1]^5: the box optimum clamps c.
  vector<double> c(5), lo = vector<double>::Constant(5, -1.0), hi = vector<double>::Constant(5, 1.0);
  c << 0.5, 2.0, -3.0, 0.0, 1.5;
  const vector<double> expected = c.cwiseMax(lo).cwiseMin(hi);  // (0.5, 1, -1, 0, 1)
  const double f_expected = (c - expected).squaredNorm();       // 1 + 4 + 0.25
  std::vector<vector<double>> points;
  auto f = [&](const vector<double>& x) {
    points.push_back(x);
    return (x - c).squaredNorm();
  };
  for (std::uint64_t seed : {1u, 2u}) {
    points.clear();
    peft::cmaes_options opt;
    opt.lower = lo;
    opt.upper = hi;
    opt.seed = seed;
    opt.max_evaluations = 5000;
    const auto r = peft::cmaes_minimize(f, vector<double>::Zero(5), 0.5, opt);
    INFO("seed " << seed << ": f " << r.f << " after " << r.evaluations << ", stop "
                 << peft::to_string(r.reason));
    REQUIRE(static_cast<peft::index>(points.size()) == r.evaluations);
    for (const auto& x : points) REQUIRE(in_box(x, lo, hi));
    CHECK(r.f == Approx(f_expected).margin(1e-8));
    CHECK((r.x - expected).cwiseAbs().maxCoeff() < 1e-4);
    CHECK(r.x[1] == 1.0);  // exactly on the boundary
    CHECK(r.x[2] == -1.0);
    CHECK(r.x[4] == 1.0);
  }
}

TEST_CASE("cmaes: bounds where x0 sits on a face and a coordinate is fixed", "[cmaes]") {
  vector<double> lo(3), hi(3), x0(3);
  lo << 0.0, 2.0, -1.0;
  hi << 1.0, 2.0, 1.0;  // coordinate 1 fixed at 2
  x0 << 0.0, 2.0, 1.0;
  std::vector<vector<double>> points;
  peft::cmaes_options opt;
  opt.lower = lo;
  opt.upper = hi;
  opt.max_evaluations = 1500;
  const auto r = peft::cmaes_minimize(recorder{sphere, &points}, x0, 0.3, opt);
  for (const auto& x : points) REQUIRE(in_box(x, lo, hi));
  CHECK(r.f == Approx(4.0).margin(1e-8));
  CHECK(r.x[1] == 2.0);
}

TEST_CASE("cmaes: the same seed reproduces a run bit for bit, another seed does not", "[cmaes]") {
  auto run = [](std::uint64_t seed, std::vector<vector<double>>& points) {
    peft::cmaes_options opt;
    opt.seed = seed;
    opt.max_evaluations = 2000;
    return peft::cmaes_minimize(recorder{rosenbrock, &points}, vector<double>::Zero(6), 0.3, opt);
  };
  std::vector<vector<double>> p1, p2, p3;
  const auto a = run(7, p1), b = run(7, p2), c = run(8, p3);
  REQUIRE(p1.size() == p2.size());
  for (std::size_t i = 0; i < p1.size(); ++i) REQUIRE(p1[i] == p2[i]);  // exact equality
  CHECK(a.x == b.x);
  CHECK(a.f == b.f);
  CHECK(a.mean == b.mean);
  CHECK(a.sigma == b.sigma);
  CHECK(a.evaluations == b.evaluations);
  CHECK(p1.front() != p3.front());
  CHECK(a.x != c.x);
}

TEST_CASE("cmaes: ask/tell loop equals cmaes_minimize and checks its input", "[cmaes]") {
  peft::cmaes_options opt;
  opt.seed = 3;
  opt.max_evaluations = 600;
  peft::cmaes es(vector<double>::Constant(4, 2.0), 0.5, opt);
  while (!es.stop()) {
    const auto xs = es.ask();
    REQUIRE(static_cast<peft::index>(xs.size()) == es.population_size());
    std::vector<double> fs;
    for (const auto& x : xs) fs.push_back(sphere(x));
    es.tell(xs, fs);
  }
  const auto r = peft::cmaes_minimize(sphere, vector<double>::Constant(4, 2.0), 0.5, opt);
  CHECK(es.best_x() == r.x);
  CHECK(es.best_f() == r.f);
  CHECK(es.evaluations() == r.evaluations);
  CHECK(es.stop_reason() == r.reason);
  CHECK(r.reason == peft::cmaes_stop::max_evaluations);
  CHECK(r.evaluations <= 600);
  CHECK(r.evaluations + es.population_size() > 600);

  peft::cmaes es2(vector<double>::Zero(3), 0.5);
  std::vector<double> fs(static_cast<std::size_t>(es2.population_size()), 1.0);
  REQUIRE_THROWS_CONTAINING(es2.tell({}, fs), peft::invalid_argument, Contains("expected a call to ask()"));
  auto xs = es2.ask();
  REQUIRE_THROWS_CONTAINING(es2.tell(xs, std::vector<double>(2, 1.0)), peft::invalid_argument,
                            Contains("fitness count expected 7, got 2"));
  auto moved = xs;
  moved[1][0] += 1.0;
  REQUIRE_THROWS_CONTAINING(es2.tell(moved, fs), peft::invalid_argument,
                            Contains("candidate 1 expected the point returned by the last ask()"));
  fs[2] = std::nan("");
  REQUIRE_THROWS_AS(es2.tell(xs, fs), peft::numeric_error);
  fs[2] = 1.0;
  es2.tell(xs, fs);  // all equal values: flat fitness, σ grows
  CHECK(es2.sigma() > 0.5);
}

TEST_CASE("cmaes: stops on ftarget, tolx and max_iterations", "[cmaes]") {
  peft::cmaes_options opt;
  opt.ftarget = 1e-3;
  auto r = peft::cmaes_minimize(sphere, vector<double>::Ones(5), 0.5, opt);
  CHECK(r.reason == peft::cmaes_stop::ftarget);
  CHECK(r.f <= 1e-3);
  opt = {};
  opt.max_iterations = 7;
  r = peft::cmaes_minimize(sphere, vector<double>::Ones(5), 0.5, opt);
  CHECK(r.reason == peft::cmaes_stop::max_iterations);
  CHECK(r.iterations == 7);
  opt = {};
  opt.tolx = 1e-4;
  r = peft::cmaes_minimize(sphere, vector<double>::Ones(5), 0.5, opt);
  CHECK(r.reason == peft::cmaes_stop::tolx);
  CHECK(r.sigma < 1e-3);
}

TEST_CASE("cmaes: bad input throws invalid_argument naming what was expected", "[cmaes]") {
  using peft::invalid_argument;
  const vector<double> x0 = vector<double>::Zero(3);
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.0), invalid_argument, Contains("sigma0 expected > 0"));
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, -1.0), invalid_argument, Contains("sigma0 expected > 0"));
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, std::nan("")), invalid_argument, Contains("sigma0 expected > 0"));
  REQUIRE_THROWS_CONTAINING(peft::cmaes(vector<double>(), 1.0), invalid_argument,
                            Contains("x0 size expected >= 1"));

  peft::cmaes_options opt;
  opt.lower = vector<double>::Constant(2, -1.0);
  opt.upper = vector<double>::Constant(2, 1.0);
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.5, opt), invalid_argument,
                            Contains("lower bounds size (= x0 size) expected 3, got 2"));
  opt.lower = vector<double>::Constant(3, -1.0);
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.5, opt), invalid_argument,
                            Contains("upper bounds size (= x0 size) expected 3, got 2"));
  opt.upper = vector<double>::Constant(3, 1.0);
  opt.lower[1] = 2.0;
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.5, opt), invalid_argument,
                            Contains("expected lower[1] <= upper[1]"));
  opt.lower[1] = -1.0;
  vector<double> outside = x0;
  outside[2] = 1.5;
  REQUIRE_THROWS_CONTAINING(peft::cmaes(outside, 0.5, opt), invalid_argument,
                            Contains("x0[2] expected in ["));
  CHECK_NOTHROW(peft::cmaes(x0, 0.5, opt));

  peft::cmaes_options bad;
  bad.population_size = 1;
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.5, bad), invalid_argument,
                            Contains("population_size expected"));
  bad = {};
  bad.max_evaluations = -1;
  REQUIRE_THROWS_CONTAINING(peft::cmaes(x0, 0.5, bad), invalid_argument,
                            Contains("max_evaluations expected >= 0"));
  // Through the convenience loop too, before any evaluation.
  int calls = 0;
  auto counting = [&](const vector<double>& x) {
    ++calls;
    return x.squaredNorm();
  };
  REQUIRE_THROWS_AS(peft::cmaes_minimize(counting, x0, 0.0), invalid_argument);
  CHECK(calls == 0);
  auto nan_f = [](const vector<double>&) { return std::nan(""); };
  REQUIRE_THROWS_AS(peft::cmaes_minimize(nan_f, x0, 0.5), peft::numeric_error);
}

// ---------------------------------------------------------------------------------------------
// Gaussian process and Bayesian optimisation

TEST_CASE("matern52: closed form and the general Matern formula at nu = 5/2", "[bayes_opt]") {
  CHECK(peft::matern52(0.0, 0.7, 2.5) == 2.5);
  // (1 + √5 + 5/3) e^{−√5} and (1 + 2√5 + 20/3) e^{−2√5}
  CHECK(peft::matern52(1.0, 1.0) == Approx(0.5239941088318203).epsilon(1e-14));
  CHECK(peft::matern52(0.6, 0.3) == Approx(0.13866021913850426).epsilon(1e-14));
  CHECK(peft::matern52(0.25, 0.5, 3.0) == Approx(3.0 * 0.8286491424181255).epsilon(1e-14));
  // k(r) = s² 2^{1−ν}/Γ(ν) (√(2ν) r/ℓ)^ν K_ν(√(2ν) r/ℓ), ν = 5/2.
  for (double r : {0.05, 0.3, 1.0, 2.7}) {
    const double ell = 0.8, s2 = 1.7, nu = 2.5;
    const double z = std::sqrt(2.0 * nu) * r / ell;
    const double general =
        s2 * std::pow(2.0, 1.0 - nu) / std::tgamma(nu) * std::pow(z, nu) * std::cyl_bessel_k(nu, z);
    CHECK(peft::matern52(r, ell, s2) == Approx(general).epsilon(1e-10));
  }
}

TEST_CASE("gaussian_process: posterior interpolates the data and maximises the marginal likelihood",
          "[bayes_opt]") {
  std::vector<vector<double>> xs;
  std::vector<double> ys;
  for (int i = 0; i < 12; ++i) {
    vector<double> x(2);
    x << 0.083 * i, std::fmod(0.37 * i, 1.0);
    xs.push_back(x);
    ys.push_back(std::sin(3.0 * x[0]) + x[1] * x[1] + 5.0);
  }
  peft::gaussian_process gp;
  gp.fit(xs, ys);
  CHECK(gp.size() == 12);
  CHECK(gp.length_scale() > 0);
  CHECK(gp.signal_variance() > 0);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const auto [mean, sd] = gp.predict(xs[i]);
    CHECK(mean == Approx(ys[i]).margin(1e-3));
    CHECK(sd < 1e-2);
  }
  // Between the data the mean follows the smooth function; far away the uncertainty grows.
  vector<double> mid(2);
  mid << 0.45, 0.5;
  const vector<double> far = vector<double>::Constant(2, 100.0 * gp.length_scale());  // k(far, data) ≈ 0
  CHECK(gp.predict(mid).first == Approx(std::sin(1.35) + 0.25 + 5.0).margin(0.1));
  CHECK(gp.predict(far).second > 10 * gp.predict(mid).second);
  CHECK(gp.predict(far).first == Approx(gp.target_mean()).margin(1e-3));  // reverts to the prior mean

  // The fitted length scale beats fixed ones on the marginal likelihood.
  const double best = gp.log_marginal_likelihood();
  for (double ell : {0.02, 0.1, 0.3, 1.0, 3.0, 30.0}) {
    peft::gaussian_process fixed;
    fixed.fit(xs, ys, ell);
    CHECK(fixed.log_marginal_likelihood() <= best + 1e-9);
  }

  // Posterior mean against a dense solve of the same model, at a fixed length scale.
  peft::gaussian_process fixed;
  fixed.fit(xs, ys, 0.4);
  const peft::index n = 12;
  Eigen::MatrixXd A(n, n);
  Eigen::VectorXd yn(n), r(n);
  const double ymean = fixed.target_mean(), ystd = fixed.target_scale();
  for (peft::index i = 0; i < n; ++i) {
    yn[i] = (ys[static_cast<std::size_t>(i)] - ymean) / ystd;
    r[i] = peft::matern52((xs[static_cast<std::size_t>(i)] - mid).norm(), 0.4);
    for (peft::index j = 0; j < n; ++j)
      A(i, j) =
          peft::matern52((xs[static_cast<std::size_t>(i)] - xs[static_cast<std::size_t>(j)]).norm(), 0.4);
  }
  A.diagonal().array() += fixed.noise();
  const Eigen::VectorXd Ainv_y = A.fullPivLu().solve(yn), Ainv_r = A.fullPivLu().solve(r);
  const auto [m, sd] = fixed.predict(mid);
  CHECK(m == Approx(ymean + ystd * r.dot(Ainv_y)).epsilon(1e-8));
  CHECK(sd == Approx(ystd * std::sqrt(fixed.signal_variance() * (1.0 - r.dot(Ainv_r)))).epsilon(1e-6));

  REQUIRE_THROWS_CONTAINING(peft::gaussian_process().predict(mid), peft::invalid_argument,
                            Contains("expected a fitted model"));
  REQUIRE_THROWS_CONTAINING(gp.predict(vector<double>::Zero(3)), peft::invalid_argument,
                            Contains("point size expected 2, got 3"));
  REQUIRE_THROWS_CONTAINING(gp.fit(xs, std::vector<double>(3, 0.0)), peft::invalid_argument,
                            Contains("target count expected 12, got 3"));
}

TEST_CASE("gaussian_process: batch prediction and gradients agree with predict and finite differences",
          "[bayes_opt]") {
  std::vector<vector<double>> xs;
  std::vector<double> ys;
  for (int i = 0; i < 15; ++i) {
    vector<double> x(3);
    x << std::fmod(0.31 * i, 1.0), std::fmod(0.57 * i + 0.1, 1.0), std::fmod(0.83 * i + 0.2, 1.0);
    xs.push_back(x);
    ys.push_back(std::cos(4.0 * x[0]) * x[1] - x[2]);
  }
  peft::gaussian_process gp;
  gp.fit(xs, ys);
  peft::matrix<double> batch(3, 300);  // more than one block of 128
  for (peft::index j = 0; j < batch.cols(); ++j)
    for (peft::index k = 0; k < 3; ++k)
      batch(k, j) = std::fmod(0.137 * static_cast<double>(j * (k + 1)) + 0.05, 1.0);
  vector<double> mean, sd;
  gp.predict_standardised(batch, mean, sd);
  for (peft::index j = 0; j < batch.cols(); j += 37) {
    const vector<double> x = batch.col(j);
    const auto [m, s] = gp.predict(x);
    CHECK(gp.target_mean() + gp.target_scale() * mean[j] == Approx(m).epsilon(1e-10).margin(1e-12));
    CHECK(gp.target_scale() * sd[j] == Approx(s).epsilon(1e-8).margin(1e-10));
    double m0 = 0, s0 = 0;
    vector<double> dm, ds;
    gp.predict_standardised_gradient(x, m0, s0, dm, ds);
    CHECK(m0 == Approx(mean[j]).epsilon(1e-10).margin(1e-12));
    CHECK(s0 == Approx(sd[j]).epsilon(1e-8).margin(1e-10));
    for (peft::index k = 0; k < 3; ++k) {
      const double h = 1e-6;
      vector<double> xp = x, xm = x;
      xp[k] += h;
      xm[k] -= h;
      double mp = 0, sp = 0, mm = 0, sm = 0;
      vector<double> unused1, unused2;
      gp.predict_standardised_gradient(xp, mp, sp, unused1, unused2);
      gp.predict_standardised_gradient(xm, mm, sm, unused1, unused2);
      CHECK(dm[k] == Approx((mp - mm) / (2 * h)).epsilon(1e-5).margin(1e-6));
      CHECK(ds[k] == Approx((sp - sm) / (2 * h)).epsilon(1e-5).margin(1e-6));
    }
  }
}

TEST_CASE("gaussian_process: duplicate points and constant targets are handled", "[bayes_opt]") {
  std::vector<vector<double>> xs(4, vector<double>::Constant(2, 0.5));
  std::vector<double> ys(4, 3.0);
  peft::gaussian_process gp;
  gp.fit(xs, ys);
  const auto [m, sd] = gp.predict(vector<double>::Constant(2, 0.5));
  CHECK(m == Approx(3.0).margin(1e-12));
  CHECK(std::isfinite(sd));
}

TEST_CASE("bayes_opt: Branin to within 0.41 of its minimum 0.397887 in 80 evaluations (20 random)",
          "[bayes_opt]") {
  vector<double> lo(2), hi(2);
  lo << -5.0, 0.0;
  hi << 10.0, 15.0;
  for (std::uint64_t seed : {1u, 2u}) {
    peft::bayes_opt_options opt;  // init_points 20, kappa 2
    opt.n_iter = 60;
    opt.acquisition_samples = 2000;  // instead of 10000, to keep the test fast under ASan
    opt.seed = seed;
    const auto r = peft::bayes_opt_minimize(branin, lo, hi, opt);
    INFO("seed " << seed << ": best f " << r.f);
    CHECK(r.evaluations == 80);
    REQUIRE(r.xs.size() == 80);
    for (const auto& x : r.xs) REQUIRE(in_box(x, lo, hi));
    CHECK(r.f < 0.41);
    CHECK(r.f >= branin_min - 1e-9);
    CHECK(r.f == branin(r.x));
  }
}

TEST_CASE("bayes_opt: spheres in 2 and 5 dimensions", "[bayes_opt]") {
  peft::bayes_opt_options opt;
  opt.acquisition_samples = 2000;
  opt.n_iter = 30;  // 2-D: 50 evaluations
  auto r2 = peft::bayes_opt_minimize(sphere, vector<double>::Constant(2, -5.0),
                                     vector<double>::Constant(2, 5.0), opt);
  INFO("2-D best f " << r2.f);
  CHECK(r2.f < 1e-3);
  opt.n_iter = 60;  // 5-D: 80 evaluations
  auto r5 = peft::bayes_opt_minimize(sphere, vector<double>::Constant(5, -5.0),
                                     vector<double>::Constant(5, 5.0), opt);
  INFO("5-D best f " << r5.f);
  CHECK(r5.f < 1e-2);
  for (const auto& x : r5.xs) REQUIRE(x.cwiseAbs().maxCoeff() <= 5.0);
}

TEST_CASE("bayes_opt: the same seed reproduces a run bit for bit, another seed does not", "[bayes_opt]") {
  peft::bayes_opt_options opt;
  opt.init_points = 6;
  opt.n_iter = 10;
  opt.acquisition_samples = 1000;
  vector<double> lo(2), hi(2);
  lo << -5.0, 0.0;
  hi << 10.0, 15.0;
  const auto a = peft::bayes_opt_minimize(branin, lo, hi, opt);
  const auto b = peft::bayes_opt_minimize(branin, lo, hi, opt);
  opt.seed = 2;
  const auto c = peft::bayes_opt_minimize(branin, lo, hi, opt);
  REQUIRE(a.xs.size() == b.xs.size());
  for (std::size_t i = 0; i < a.xs.size(); ++i) REQUIRE(a.xs[i] == b.xs[i]);
  CHECK(a.fs == b.fs);
  CHECK(a.xs.front() != c.xs.front());
  CHECK(a.xs.back() != c.xs.back());
}

TEST_CASE("bayes_opt: suggest/observe, and bad input throws invalid_argument", "[bayes_opt]") {
  using peft::invalid_argument;
  vector<double> lo = vector<double>::Constant(2, -1.0), hi = vector<double>::Constant(2, 1.0);
  peft::bayes_opt_options opt;
  opt.init_points = 3;
  opt.acquisition_samples = 500;
  peft::bayes_opt bo(lo, hi, opt);
  bo.observe(vector<double>::Constant(2, 0.25), 0.125);  // a user-supplied start point
  for (int t = 0; t < 8; ++t) {
    const auto x = bo.suggest();
    REQUIRE(in_box(x, lo, hi));
    bo.observe(x, sphere(x));
  }
  CHECK(bo.size() == 9);
  CHECK(bo.model().fitted());
  CHECK(bo.best_f() <= 0.125);

  REQUIRE_THROWS_CONTAINING(bo.observe(vector<double>::Constant(2, 1.5), 0.0), invalid_argument,
                            Contains("x[0] expected in ["));
  REQUIRE_THROWS_CONTAINING(bo.observe(vector<double>::Zero(3), 0.0), invalid_argument,
                            Contains("point size expected 2, got 3"));
  REQUIRE_THROWS_AS(bo.observe(vector<double>::Zero(2), std::nan("")), peft::numeric_error);

  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(lo, vector<double>::Ones(3)), invalid_argument,
                            Contains("upper bounds size (= lower size) expected 2, got 3"));
  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(hi, lo), invalid_argument,
                            Contains("expected finite with lower[0] < upper[0]"));
  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(vector<double>(), vector<double>()), invalid_argument,
                            Contains("bounds size expected >= 1"));
  peft::bayes_opt_options bad;
  bad.init_points = 0;
  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(lo, hi, bad), invalid_argument,
                            Contains("init_points expected >= 1"));
  bad = {};
  bad.kappa = -1;
  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(lo, hi, bad), invalid_argument, Contains("kappa expected >= 0"));
  bad = {};
  bad.gp.noise = -1;
  REQUIRE_THROWS_CONTAINING(peft::bayes_opt(lo, hi, bad), invalid_argument, Contains("noise expected >= 0"));
}

// ---------------------------------------------------------------------------------------------
// Adapter: tune a parameter_set through its flat view.

TEST_CASE("blackbox_objective: CMA-ES and BO tune a parameter_store<float> to a target",
          "[cmaes][bayes_opt]") {
  peft::parameter_store<float> store;
  store.add("w", 2, 3, peft::param_group::weight);
  store.add("b", 3, 1, peft::param_group::bias);
  peft::parameter_set<float> set(store);
  vector<double> target(9);
  target << 0.3, -0.7, 1.1, 0.05, -0.2, 0.9, -1.3, 0.4, 0.6;
  int calls = 0;
  // The loss only reads the store, as a forward pass would.
  auto loss = [&]() {
    ++calls;
    double s = 0;
    for (peft::index i = 0; i < 9; ++i) {
      const double d = static_cast<double>(store.values()[i]) - target[i];
      s += d * d;
    }
    return s;
  };
  const vector<double> x0 = peft::blackbox_start(set);
  CHECK(x0 == vector<double>::Zero(9));
  peft::cmaes_options opt;
  opt.max_evaluations = 4000;
  const auto r = peft::cmaes_minimize(peft::blackbox_objective(set, loss), x0, 0.5, opt);
  CHECK(calls == r.evaluations);
  CHECK(r.f < 1e-10);
  peft::blackbox_apply(set, r.x);
  for (peft::index i = 0; i < 9; ++i)
    CHECK(static_cast<double>(store.values()[i]) == Approx(target[i]).margin(1e-5));
  CHECK(store.value(0)(1, 2) == Approx(0.9f).margin(1e-5f));  // block layout preserved

  // Bayesian optimisation over two of them in a box, through a second one-block store.
  peft::parameter_store<float> small;
  small.add("router", 2, 1, peft::param_group::weight);
  peft::parameter_set<float> small_set(small);
  auto small_loss = [&]() {
    const double a = static_cast<double>(small.values()[0]) - 1.0,
                 b = static_cast<double>(small.values()[1]) + 2.0;
    return a * a + b * b;
  };
  peft::bayes_opt_options bopt;
  bopt.n_iter = 20;
  bopt.acquisition_samples = 1000;
  const auto rb =
      peft::bayes_opt_minimize(peft::blackbox_objective(small_set, small_loss),
                               vector<double>::Constant(2, -5.0), vector<double>::Constant(2, 5.0), bopt);
  CHECK(rb.f < 1e-2);
  REQUIRE_THROWS_AS(peft::blackbox_apply(small_set, vector<double>::Zero(3)), peft::invalid_argument);
}
