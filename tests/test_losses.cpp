// SPDX-License-Identifier: Apache-2.0
// Losses and metrics: values and gradients against F.cross_entropy / F.kl_div
// (tests/reference/torch_optim.py), finite differences, stability, bad input, NaN handling.
#include <peft/ops/losses.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "test_common.hpp"

namespace {

using dmat = peft::matrix<double>;
using dvec = peft::vector<double>;

dmat from_json(const nlohmann::json& j) {
  const auto rows = j.get<std::vector<std::vector<double>>>();
  dmat m(static_cast<peft::index>(rows.size()), static_cast<peft::index>(rows.at(0).size()));
  for (peft::index i = 0; i < m.rows(); ++i)
    for (peft::index c = 0; c < m.cols(); ++c)
      m(i, c) = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)];
  return m;
}

dvec vec_from_json(const nlohmann::json& j) {
  const auto v = j.get<std::vector<double>>();
  return Eigen::Map<const dvec>(v.data(), static_cast<peft::index>(v.size()));
}

/// Largest |entry| (a scalar loop: GCC 12 warns inside Eigen's AVX-512 max reduction).
template <typename Derived>
double max_abs(const Eigen::MatrixBase<Derived>& x) {
  const auto e = x.eval();
  double m = 0;
  for (peft::index i = 0; i < e.rows(); ++i)
    for (peft::index j = 0; j < e.cols(); ++j) m = std::max(m, std::abs(static_cast<double>(e(i, j))));
  return m;
}

/// Mean and dot product by scalar loops (same reason).
double mean_of(const dvec& v) {
  double s = 0;
  for (peft::index i = 0; i < v.size(); ++i) s += v[i];
  return s / static_cast<double>(v.size());
}
double dot_of(const dvec& a, const dvec& b) {
  double s = 0;
  for (peft::index i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

bool have_reference() {
  const bool ok = std::filesystem::exists(peft_test::reference_dir() + "/optim.json");
  if (!ok)
    FAIL_CHECK("reference_optim fixture output missing (no /usr/bin/python3 with torch?): torch parity not checked");
  return ok;
}

/// A fixed batch of 5 examples over 4 classes.
dmat test_logits() {
  dmat z(5, 4);
  for (peft::index i = 0; i < 5; ++i)
    for (peft::index c = 0; c < 4; ++c) z(i, c) = std::sin(1.7 * static_cast<double>(i * 4 + c) + 0.2) * 2.5;
  return z;
}
const std::vector<int> test_labels = {3, 0, 2, 2, 1};
dvec test_weights() { return (dvec(5) << 0.3, 0.0, 0.25, 0.15, 0.3).finished(); }
dmat test_teacher() {
  dmat t(5, 4);
  for (peft::index i = 0; i < 5; ++i)
    for (peft::index c = 0; c < 4; ++c) t(i, c) = std::cos(0.9 * static_cast<double>(i * 4 + c));
  dmat q = peft::softmax(t);
  q.row(2) << 0.0, 0.5, 0.5, 0.0;  // exact zeros: 0 log 0 = 0
  return q;
}

void check_fd(dmat z, const dmat& grad, const std::function<double(const dmat&)>& loss) {
  dmat x = z;
  const auto r = peft_test::check_gradient(
      x.data(), x.size(), grad.data(), [&] { return loss(x); }, 1e-6);
  INFO("max abs err " << r.max_abs_err << ", max rel err " << r.max_rel_err);
  CHECK(r.max_rel_err < 1e-7);
  CHECK(r.checked == z.size());
}

}  // namespace

TEST_CASE("losses: values and gradients equal torch F.cross_entropy and F.kl_div", "[losses][torch]") {
  if (!have_reference()) return;
  const auto ref =
      nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/optim.json")).at("losses");
  const dmat z = from_json(ref.at("logits"));
  const auto labels = ref.at("labels").get<std::vector<int>>();
  const dvec w = vec_from_json(ref.at("weights"));
  const dmat q = from_json(ref.at("teacher"));
  const double tol = 1e-13;
  dmat g;
  CHECK(peft::cross_entropy(z, labels, g) == Approx(ref.at("ce_mean").get<double>()).epsilon(tol));
  CHECK(max_abs(g - from_json(ref.at("ce_mean_grad"))) < tol);
  CHECK(peft::cross_entropy(z, labels, w, g) == Approx(ref.at("ce_weighted").get<double>()).epsilon(tol));
  CHECK(max_abs(g - from_json(ref.at("ce_weighted_grad"))) < tol);
  CHECK(max_abs(peft::cross_entropy_per_example(z, labels) - vec_from_json(ref.at("ce_per_example"))) < tol);
  CHECK(peft::kl_div(z, q, g) == Approx(ref.at("kl_mean").get<double>()).epsilon(tol));
  CHECK(max_abs(g - from_json(ref.at("kl_mean_grad"))) < tol);
  CHECK(peft::kl_div(z, q, w, g) == Approx(ref.at("kl_weighted").get<double>()).epsilon(tol));
  CHECK(max_abs(g - from_json(ref.at("kl_weighted_grad"))) < tol);
  CHECK(max_abs(peft::kl_div_per_example(z, q) - vec_from_json(ref.at("kl_per_example"))) < tol);
}

TEST_CASE("losses: gradients by finite differences (double)", "[losses][gradcheck]") {
  const dmat z = test_logits();
  const dvec w = test_weights();
  const dmat q = test_teacher();
  dmat g, scratch;
  SECTION("cross-entropy, mean") {
    peft::cross_entropy(z, test_labels, g);
    check_fd(z, g, [&](const dmat& x) { return peft::cross_entropy(x, test_labels, scratch); });
  }
  SECTION("cross-entropy, weighted") {
    peft::cross_entropy(z, test_labels, w, g);
    check_fd(z, g, [&](const dmat& x) { return peft::cross_entropy(x, test_labels, w, scratch); });
    CHECK(g.row(1).isZero());  // weight 0
  }
  SECTION("KL, mean") {
    peft::kl_div(z, q, g);
    check_fd(z, g, [&](const dmat& x) { return peft::kl_div(x, q, scratch); });
  }
  SECTION("KL, weighted") {
    peft::kl_div(z, q, w, g);
    check_fd(z, g, [&](const dmat& x) { return peft::kl_div(x, q, w, scratch); });
  }
}

TEST_CASE("losses: reductions and hand-computed values", "[losses]") {
  const dmat z = test_logits();
  const dmat q = test_teacher();
  dmat g;
  SECTION("mean = sum of per-example losses / B; weighted = sum w_i l_i") {
    const dvec per = peft::cross_entropy_per_example(z, test_labels);
    CHECK(peft::cross_entropy(z, test_labels, g) == Approx(mean_of(per)).epsilon(1e-14));
    CHECK(peft::cross_entropy(z, test_labels, test_weights(), g) ==
          Approx(dot_of(per, test_weights())).epsilon(1e-14));
    const dvec kl = peft::kl_div_per_example(z, q);
    CHECK(peft::kl_div(z, q, g) == Approx(mean_of(kl)).epsilon(1e-14));
    CHECK(peft::kl_div(z, q, test_weights(), g) == Approx(dot_of(kl, test_weights())).epsilon(1e-14));
    CHECK((kl.array() >= 0).all());
    // LiST's KD warm-up weights 1 / (B + 1e-5) give (almost) the mean.
    const dvec wk = dvec::Constant(5, 1.0 / (5 + 1e-5));
    CHECK(peft::kl_div(z, q, wk, g) == Approx(mean_of(kl)).epsilon(1e-5));
  }
  SECTION("uniform logits: CE = log C, gradient (1/C - onehot) / B") {
    const dmat u = dmat::Zero(2, 4);
    CHECK(peft::cross_entropy(u, std::vector<int>{1, 3}, g) == Approx(std::log(4.0)));
    CHECK(g(0, 0) == Approx(0.125));
    CHECK(g(0, 1) == Approx(-0.375));
    CHECK(g(1, 3) == Approx(-0.375));
  }
  SECTION("KL of a distribution with itself is 0 with zero gradient") {
    const dmat p = peft::softmax(z);
    CHECK(peft::kl_div(z, p, g) == Approx(0).margin(1e-15));
    CHECK(max_abs(g) < 1e-15);
  }
  SECTION("one-hot teacher: KL = CE") {
    dmat onehot = dmat::Zero(5, 4);
    for (peft::index i = 0; i < 5; ++i) onehot(i, test_labels[static_cast<std::size_t>(i)]) = 1;
    dmat g2;
    CHECK(peft::kl_div(z, onehot, g) == Approx(peft::cross_entropy(z, test_labels, g2)).epsilon(1e-14));
    CHECK(max_abs(g - g2) < 1e-15);
  }
  SECTION("labels of any integer type; Maps and blocks as logits") {
    const std::vector<std::int64_t> l64(test_labels.begin(), test_labels.end());
    const std::vector<std::size_t> lu(test_labels.begin(), test_labels.end());
    const double ref = peft::cross_entropy(z, test_labels, g);
    CHECK(peft::cross_entropy(z, l64, g) == ref);
    CHECK(peft::cross_entropy(z, lu, g) == ref);
    Eigen::Map<const dmat> m(z.data(), z.rows(), z.cols());
    CHECK(peft::cross_entropy(m, test_labels, g) == ref);
    CHECK(peft::cross_entropy(z.topRows(2), std::vector<int>{3, 0}, g) ==
          Approx(mean_of(peft::cross_entropy_per_example(z, test_labels).head(2))));
  }
}

TEST_CASE("losses: numerically stable log-softmax", "[losses]") {
  dmat z(2, 3);
  z << 1000, 0, -1000, -5000, -5001, -5002;
  dmat g;
  const dmat lp = peft::log_softmax(z);
  CHECK(lp.allFinite());
  CHECK(lp(0, 0) == Approx(0).margin(1e-300));
  CHECK(lp(0, 2) == Approx(-2000));
  CHECK(lp(1, 0) == Approx(-std::log(1 + std::exp(-1.0) + std::exp(-2.0))));
  const double l = peft::cross_entropy(z, std::vector<int>{2, 0}, g);
  CHECK(l == Approx((2000 + std::log(1 + std::exp(-1.0) + std::exp(-2.0))) / 2));
  CHECK(g.allFinite());
  // float: same stability
  peft::matrix<float> zf = z.cast<float>();
  peft::matrix<float> gf;
  CHECK(peft::cross_entropy(zf, std::vector<int>{2, 0}, gf) == Approx(l).epsilon(1e-6));
  CHECK(peft::softmax(zf).row(0).sum() == Approx(1.0f));
}

TEST_CASE("losses: float agrees with double", "[losses]") {
  const dmat z = test_logits();
  const dmat q = test_teacher();
  const peft::matrix<float> zf = z.cast<float>(), qf = q.cast<float>();
  const peft::vector<float> wf = test_weights().cast<float>();
  dmat g;
  peft::matrix<float> gf;
  CHECK(peft::cross_entropy(zf, test_labels, wf, gf) ==
        Approx(peft::cross_entropy(z, test_labels, test_weights(), g)).epsilon(1e-5));
  CHECK(max_abs(gf.cast<double>() - g) < 1e-6);
  CHECK(peft::kl_div(zf, qf, gf) == Approx(peft::kl_div(z, q, g)).epsilon(1e-5));
  CHECK(max_abs(gf.cast<double>() - g) < 1e-6);
}

TEST_CASE("losses: bad input is rejected with a clear message", "[losses]") {
  const dmat z = test_logits();
  dmat g = dmat::Constant(1, 1, 42.0);
  const dmat keep = g;
  CHECK_THROWS_WITH(peft::cross_entropy(z, std::vector<int>{3, 0, 4, 2, 1}, g),
                    "cross_entropy: label of example 2 expected in [0, 4), got 4");
  CHECK_THROWS_WITH(peft::cross_entropy(z, std::vector<int>{3, 0, 2, -1, 1}, g),
                    "cross_entropy: label of example 3 expected in [0, 4), got -1");
  CHECK_THROWS_WITH(peft::cross_entropy(z, std::vector<int>{3, 0}, g),
                    "cross_entropy: labels size (logit rows) expected 5, got 2");
  CHECK_THROWS_WITH(peft::cross_entropy(dmat(0, 4), std::vector<int>{}, g),
                    Catch::Contains("batch size (logit rows) expected > 0, got 0"));
  CHECK_THROWS_AS(peft::cross_entropy(dmat(2, 0), std::vector<int>{0, 0}, g), peft::invalid_argument);
  dvec w = test_weights();
  w[1] = -0.5;
  CHECK_THROWS_WITH(peft::cross_entropy(z, test_labels, w, g),
                    Catch::Contains("weight of example 1 expected finite and >= 0, got -0.5"));
  w[1] = std::nan("");
  CHECK_THROWS_WITH(peft::kl_div(z, test_teacher(), w, g),
                    Catch::Contains("weight of example 1") && Catch::Contains("got NaN"));
  CHECK_THROWS_AS(peft::cross_entropy(z, test_labels, dvec(3), g), peft::invalid_argument);
  dmat q = test_teacher();
  CHECK_THROWS_WITH(peft::kl_div(z, q.leftCols(3), g),
                    Catch::Contains("teacher probabilities shape expected [5, 4]"));
  q(4, 0) += 0.1;
  CHECK_THROWS_WITH(peft::kl_div(z, q, g),
                    Catch::Contains("teacher probabilities of example 4 expected to sum to 1"));
  q = test_teacher();
  q(1, 1) = -q(1, 1);
  CHECK_THROWS_AS(peft::kl_div(z, q, g), peft::invalid_argument);
  CHECK(g == keep);  // untouched by failed calls
}

TEST_CASE("losses: non-finite logits or targets throw numeric_error naming the example", "[losses][nan]") {
  dmat z = test_logits();
  dmat g = dmat::Constant(1, 1, 42.0);
  const dmat keep = g;
  z(1, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(peft::cross_entropy(z, test_labels, g),
                    Catch::Contains("cross_entropy: loss is NaN at example 1"));
  CHECK_THROWS_AS(peft::kl_div(z, test_teacher(), g), peft::numeric_error);
  CHECK_THROWS_WITH(peft::cross_entropy_per_example(z, test_labels),
                    Catch::Contains("loss is NaN at example 1"));
  z = test_logits();
  z(3, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(peft::cross_entropy(z, test_labels, g), Catch::Contains("at example 3"));
  z = test_logits();
  z(0, 3) = -std::numeric_limits<double>::infinity();  // the label's logit is -inf: loss +inf
  CHECK_THROWS_WITH(peft::cross_entropy(z, test_labels, g), Catch::Contains("loss is +Inf at example 0"));
  CHECK(g == keep);
  dmat q = test_teacher();
  q(2, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(peft::kl_div(test_logits(), q, g),
                    Catch::Contains("kl_div: teacher probability is NaN at example 2, class 1"));
  CHECK_THROWS_AS(peft::kl_div(test_logits(), q, g), peft::numeric_error);
  peft::matrix<float> zf = test_logits().cast<float>();
  peft::matrix<float> gf;
  zf(4, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(peft::cross_entropy(zf, test_labels, gf), peft::numeric_error);
}

TEST_CASE("metrics: accuracy and macro-F1", "[losses][metrics]") {
  const std::vector<int> pred = {0, 1, 1, 2, 2, 0}, gold = {0, 1, 2, 2, 2, 1};
  CHECK(peft::accuracy(pred, gold) == Approx(4.0 / 6));
  // F1 per class: 0: 2/3, 1: 2/4, 2: 4/5.
  CHECK(peft::macro_f1(pred, gold) == Approx((2.0 / 3 + 0.5 + 0.8) / 3));
  CHECK(peft::macro_f1(std::vector<int>{0, 0}, std::vector<int>{0, 0}) == 1.0);
  // A class only predicted counts (F1 0), as scikit-learn's average='macro'.
  CHECK(peft::macro_f1(std::vector<int>{1, 0}, std::vector<int>{0, 0}) == Approx(1.0 / 3));
  dmat z(3, 3);
  z << 0.1, 0.9, 0.0,  //
      2.0, 2.0, 1.0,   // tie: first wins
      -1, -2, -0.5;
  CHECK(peft::argmax_rows(z) == std::vector<peft::index>{1, 0, 2});
  CHECK(peft::accuracy(z, std::vector<int>{1, 1, 2}) == Approx(2.0 / 3));
  CHECK(peft::macro_f1(z, std::vector<int>{1, 0, 2}) == 1.0);
  CHECK_THROWS_AS(peft::accuracy(std::vector<int>{}, std::vector<int>{}), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::accuracy(std::vector<int>{0, 1}, std::vector<int>{0}),
                    "accuracy: labels size (predictions) expected 2, got 1");
  CHECK_THROWS_AS(peft::macro_f1(std::vector<int>{0, -1}, std::vector<int>{0, 1}), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::accuracy(z, std::vector<int>{1, 1, 3}),
                    Catch::Contains("label of example 2 expected in [0, 3)"));
  z(1, 1) = std::nan("");
  CHECK_THROWS_AS(peft::argmax_rows(z), peft::numeric_error);
}
