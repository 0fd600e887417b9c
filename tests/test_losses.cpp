// SPDX-License-Identifier: Apache-2.0
// Losses and metrics: values and gradients against F.cross_entropy / F.kl_div and, for the other
// task kinds, F.mse_loss, F.binary_cross_entropy_with_logits, F.cross_entropy(ignore_index=-100)
// and transformers' QA start/end loss (tests/reference/torch_optim.py), finite differences,
// stability, bad input, NaN handling.
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

// --- Losses of the other task kinds: regression, multi-label, token classification, extractive QA.

namespace {

/// One of the fixed inputs the tests below share with torch_optim.py's task_losses().
dmat task_z() {
  dmat z(4, 3);
  for (peft::index i = 0; i < 4; ++i)
    for (peft::index k = 0; k < 3; ++k)
      z(i, k) = 0.3 * std::sin(1.1 * static_cast<double>(3 * i + k)) * static_cast<double>(2 + i);
  return z;
}
dmat mse_targets() {
  dmat t(4, 3);
  for (peft::index i = 0; i < 4; ++i)
    for (peft::index k = 0; k < 3; ++k) t(i, k) = std::cos(0.7 * static_cast<double>(3 * i + k));
  return t;
}
dmat bce_targets() { return (dmat(4, 3) << 1, 0, 0.25, 0, 1, 1, 0.5, 0, 1, 0, 0.75, 0).finished(); }
dmat token_z() {
  dmat z(7, 4);
  for (peft::index i = 0; i < 7; ++i)
    for (peft::index k = 0; k < 4; ++k) z(i, k) = 2.0 * std::sin(0.9 * static_cast<double>(4 * i + k) + 0.4);
  return z;
}
const std::vector<int> token_labels = {2, peft::ignore_label, 0, 3, -100, 1, 3};
constexpr peft::index span_T = 5;
dmat span_z() {
  dmat z(15, 2);
  for (peft::index r = 0; r < 15; ++r)
    for (peft::index c = 0; c < 2; ++c) z(r, c) = 1.5 * std::cos(0.8 * static_cast<double>(2 * r + c) + 0.1);
  return z;
}
const std::vector<peft::index> span_start = {1, 7, -2}, span_end = {3, 4, 5};

nlohmann::json task_reference() {
  return nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/optim.json"))
      .at("task_losses");
}

/// Runs @p f in double and float on the logits of reference case @p r; checks value and gradient
/// against torch's (double: 1e-12, float: 1e-5).
template <typename F>
void check_against_torch(const nlohmann::json& r, F&& f) {
  const dmat z = from_json(r.at("z"));
  const double want = r.at("value").get<double>();
  const dmat want_grad = from_json(r.at("grad"));
  dmat g;
  const double v = f(z, g);
  INFO("double: loss rel diff " << std::abs(v - want) / std::abs(want) << ", gradient max diff "
                                << max_abs(g - want_grad));
  CHECK(v == Approx(want).epsilon(1e-12));
  CHECK(max_abs(g - want_grad) < 1e-12);
  const peft::matrix<float> zf = z.cast<float>();
  peft::matrix<float> gf;
  const float vf = f(zf, gf);
  INFO("float: loss rel diff " << std::abs(static_cast<double>(vf) - want) / std::abs(want)
                               << ", gradient max diff " << max_abs(gf.cast<double>() - want_grad));
  CHECK(static_cast<double>(vf) == Approx(want).epsilon(1e-5));
  CHECK(max_abs(gf.cast<double>() - want_grad) < 1e-5);
}

}  // namespace

TEST_CASE("task losses: values and gradients equal torch (double and float)", "[losses][torch]") {
  if (!have_reference()) return;
  const auto ref = task_reference();
  SECTION("mse_loss = F.mse_loss") {
    const dmat t = from_json(ref.at("mse").at("targets"));
    check_against_torch(ref.at("mse"), [&](const auto& z, auto& g) {
      using S = typename std::decay_t<decltype(z)>::Scalar;
      return peft::mse_loss(z, peft::matrix<S>(t.cast<S>()), g);
    });
  }
  SECTION("bce_with_logits = F.binary_cross_entropy_with_logits (soft targets)") {
    const dmat t = from_json(ref.at("bce").at("targets"));
    check_against_torch(ref.at("bce"), [&](const auto& z, auto& g) {
      using S = typename std::decay_t<decltype(z)>::Scalar;
      return peft::bce_with_logits(z, peft::matrix<S>(t.cast<S>()), g);
    });
  }
  SECTION("bce_with_logits with |z| = 1000 = torch's stable value") {
    const dmat t = from_json(ref.at("bce_large").at("targets"));
    CHECK(max_abs(from_json(ref.at("bce_large").at("z"))) == 1000);
    check_against_torch(ref.at("bce_large"), [&](const auto& x, auto& g) {
      using S = typename std::decay_t<decltype(x)>::Scalar;
      return peft::bce_with_logits(x, peft::matrix<S>(t.cast<S>()), g);
    });
  }
  SECTION("token_cross_entropy = F.cross_entropy(ignore_index=-100)") {
    const auto labels = ref.at("token").at("labels").get<std::vector<int>>();
    CHECK(labels == token_labels);  // two of them -100
    check_against_torch(ref.at("token"),
                        [&](const auto& z, auto& g) { return peft::token_cross_entropy(z, labels, g); });
  }
  SECTION("span_cross_entropy = BertForQuestionAnswering's loss (clamp(0, T), ignore_index = T)") {
    const auto T = ref.at("span").at("T").get<peft::index>();
    const auto start = ref.at("span").at("start").get<std::vector<peft::index>>();
    const auto end = ref.at("span").at("end").get<std::vector<peft::index>>();
    CHECK(start == span_start);  // one >= T (ignored), one < 0 (clamped to 0)
    CHECK(end == span_end);      // one == T (ignored)
    check_against_torch(ref.at("span"), [&](const auto& z, auto& g) {
      return peft::span_cross_entropy(z, T, start, end, g);
    });
  }
}

TEST_CASE("task losses: gradients by finite differences (double)", "[losses][gradcheck]") {
  dmat g, scratch;
  SECTION("mse_loss") {
    const dmat t = mse_targets();
    peft::mse_loss(task_z(), t, g);
    check_fd(task_z(), g, [&](const dmat& x) { return peft::mse_loss(x, t, scratch); });
  }
  SECTION("bce_with_logits") {
    const dmat t = bce_targets();
    peft::bce_with_logits(task_z(), t, g);
    check_fd(task_z(), g, [&](const dmat& x) { return peft::bce_with_logits(x, t, scratch); });
  }
  SECTION("token_cross_entropy; ignored rows get zero gradient") {
    peft::token_cross_entropy(token_z(), token_labels, g);
    check_fd(token_z(), g,
             [&](const dmat& x) { return peft::token_cross_entropy(x, token_labels, scratch); });
    CHECK(g.row(1).isZero(0));
    CHECK(g.row(4).isZero(0));
  }
  SECTION("span_cross_entropy; ignored positions get zero gradient") {
    peft::span_cross_entropy(span_z(), span_T, span_start, span_end, g);
    check_fd(span_z(), g, [&](const dmat& x) {
      return peft::span_cross_entropy(x, span_T, span_start, span_end, scratch);
    });
    CHECK(g.block(5, 0, 5, 1).isZero(0));   // example 1's start (7 >= T) is ignored
    CHECK(g.block(10, 1, 5, 1).isZero(0));  // example 2's end (5 = T) is ignored
    CHECK(g(10, 0) < 0);                    // example 2's start -2 counts as position 0
  }
}

TEST_CASE("task losses: hand-computed values and reductions", "[losses]") {
  dmat g, g2;
  SECTION("mse_loss: mean over all elements") {
    const dmat z = (dmat(2, 2) << 1, 2, 3, 4).finished();
    const dmat t = (dmat(2, 2) << 0, 2, 5, 4).finished();
    CHECK(peft::mse_loss(z, t, g) == Approx((1.0 + 4.0) / 4));
    CHECK(g == (dmat(2, 2) << 0.5, 0, -1, 0).finished());
  }
  SECTION("bce_with_logits: z = 0 gives log 2, gradient (1/2 - t) / (B K)") {
    const dmat t = (dmat(1, 2) << 1, 0.25).finished();
    CHECK(peft::bce_with_logits(dmat::Zero(1, 2), t, g) == Approx(std::log(2.0)));
    CHECK(g(0, 0) == Approx(-0.25));
    CHECK(g(0, 1) == Approx(0.125));
  }
  SECTION("bce_with_logits: |z| = 1000 stays finite and right, in double and float") {
    const dmat z = (dmat(2, 2) << 1000, -1000, 1000, -1000).finished();
    const dmat t = (dmat(2, 2) << 1, 0, 0, 1).finished();  // two right (loss 0), two wrong (loss 1000)
    CHECK(peft::bce_with_logits(z, t, g) == Approx(500.0));
    CHECK(g == (dmat(2, 2) << 0, 0, 0.25, -0.25).finished());
    peft::matrix<float> gf;
    CHECK(peft::bce_with_logits(z.cast<float>(), peft::matrix<float>(t.cast<float>()), gf) == Approx(500.0f));
    CHECK(gf.allFinite());
    CHECK(max_abs(gf.cast<double>() - g) < 1e-7);
    // A large but correct logit: loss log1p(e^-40) ~ 4.2e-18, not 0 from log(1 - 1e-18 rounding).
    CHECK(peft::bce_with_logits(dmat::Constant(1, 1, 40), dmat::Constant(1, 1, 1), g) ==
          Approx(std::exp(-40.0)).epsilon(1e-12));
  }
  SECTION("token_cross_entropy = cross_entropy over the kept rows") {
    const dmat z = token_z();
    std::vector<int> kept;
    dmat zk(5, 4);
    peft::index r = 0;
    for (std::size_t i = 0; i < token_labels.size(); ++i)
      if (token_labels[i] != peft::ignore_label) {
        kept.push_back(token_labels[i]);
        zk.row(r++) = z.row(static_cast<peft::index>(i));
      }
    CHECK(peft::token_cross_entropy(z, token_labels, g) ==
          Approx(peft::cross_entropy(zk, kept, g2)).epsilon(1e-15));
    r = 0;
    for (std::size_t i = 0; i < token_labels.size(); ++i)
      if (token_labels[i] != peft::ignore_label) {
        CHECK(max_abs(g.row(static_cast<peft::index>(i)) - g2.row(r++)) < 1e-16);
      }
    // No ignored row: cross_entropy (the same gradient bit for bit).
    const std::vector<int> all = {2, 1, 0, 3, 0, 1, 3};
    CHECK(peft::token_cross_entropy(z, all, g) == Approx(peft::cross_entropy(z, all, g2)).epsilon(1e-15));
    CHECK(g == g2);
  }
  SECTION("token_cross_entropy: every row ignored gives 0 and a zero gradient (torch: NaN)") {
    g = dmat::Constant(1, 1, 42);
    CHECK(peft::token_cross_entropy(token_z(), std::vector<int>(7, -100), g) == 0.0);
    CHECK(g.rows() == 7);
    CHECK(g.cols() == 4);
    CHECK(g.isZero(0));
  }
  SECTION("span_cross_entropy: uniform logits give log T; layout of rows and columns") {
    CHECK(peft::span_cross_entropy(dmat::Zero(8, 2), 4, {0, 3}, {1, 2}, g) == Approx(std::log(4.0)));
    // Start half: (1/4 - onehot) / (2 * 2) in column 0, rows b*T + t.
    CHECK(g(0, 0) == Approx(-0.75 / 4));
    CHECK(g(1, 0) == Approx(0.25 / 4));
    CHECK(g(7, 0) == Approx(-0.75 / 4));
    CHECK(g(1, 1) == Approx(-0.75 / 4));
    CHECK(g(6, 1) == Approx(-0.75 / 4));
    // One example, a sharp start: start half ~ 0, end half log 4.
    dmat z = dmat::Zero(4, 2);
    z(2, 0) = 50;
    CHECK(peft::span_cross_entropy(z, 4, {2}, {0}, g) == Approx(std::log(4.0) / 2));
  }
  SECTION("span_cross_entropy = the mean of two cross_entropy calls over [B x T] logits") {
    const dmat z = span_z();
    dmat s(3, span_T), e(3, span_T);
    for (peft::index b = 0; b < 3; ++b)
      for (peft::index t = 0; t < span_T; ++t) {
        s(b, t) = z(b * span_T + t, 0);
        e(b, t) = z(b * span_T + t, 1);
      }
    const std::vector<peft::index> st = {1, 4, 0}, en = {3, 4, 2};  // none ignored
    const double want = (peft::cross_entropy(s, st, g2) + peft::cross_entropy(e, en, g2)) / 2;
    CHECK(peft::span_cross_entropy(z, span_T, st, en, g) == Approx(want).epsilon(1e-14));
    // Every start ignored: only the end half, halved (torch: NaN).
    const double end_only = peft::cross_entropy(e, en, g2) / 2;
    CHECK(peft::span_cross_entropy(z, span_T, {5, 6, 100}, en, g) == Approx(end_only).epsilon(1e-14));
    CHECK(g.col(0).isZero(0));
    CHECK(peft::span_cross_entropy(z, span_T, {5, 5, 5}, {9, 9, 9}, g) == 0.0);
    CHECK(g.isZero(0));
  }
  SECTION("Maps and expressions as input") {
    const dmat z = task_z(), t = mse_targets();
    const double ref = peft::mse_loss(z, t, g2);
    Eigen::Map<const dmat> m(z.data(), z.rows(), z.cols());
    CHECK(peft::mse_loss(m, t, g) == ref);
    CHECK(peft::mse_loss(z * 1.0, t, g) == ref);
    // Ignoring a row = weight 0 in the weighted cross-entropy, the others 1 / (kept rows).
    const dvec w = (dvec(3) << 0.5, 0, 0.5).finished();
    CHECK(peft::token_cross_entropy(token_z().topRows(3), std::vector<int>{2, -100, 0}, g) ==
          Approx(peft::cross_entropy(token_z().topRows(3), std::vector<int>{2, 1, 0}, w, g2)).epsilon(1e-15));
    CHECK(max_abs(g - g2) < 1e-16);
  }
}

TEST_CASE("task losses: bad input is rejected with a clear message", "[losses]") {
  dmat g = dmat::Constant(1, 1, 42.0);
  const dmat keep = g;
  const dmat z = task_z();
  SECTION("mse_loss") {
    CHECK_THROWS_MSG(peft::mse_loss(z, dmat(4, 2), g), peft::invalid_argument,
                     Catch::Contains("mse_loss: targets shape expected [4, 3] (the logits), got [4, 2]"));
    CHECK_THROWS_MSG(peft::mse_loss(dmat(0, 3), dmat(0, 3), g), peft::invalid_argument,
                     Catch::Contains("mse_loss: batch size (logit rows) expected > 0, got 0"));
  }
  SECTION("bce_with_logits") {
    dmat t = bce_targets();
    t(2, 1) = 1.5;
    CHECK_THROWS_MSG(
        peft::bce_with_logits(z, t, g), peft::invalid_argument,
        Catch::Contains("bce_with_logits: target of row 2, column 1 expected in [0, 1], got 1.5"));
    t(2, 1) = -0.25;
    CHECK_THROWS_MSG(peft::bce_with_logits(z, t, g), peft::invalid_argument,
                     Catch::Contains("target of row 2, column 1 expected in [0, 1], got -0.25"));
    CHECK_THROWS_MSG(peft::bce_with_logits(z, dmat(3, 3), g), peft::invalid_argument,
                     Catch::Contains("bce_with_logits: targets shape expected [4, 3]"));
  }
  SECTION("token_cross_entropy") {
    std::vector<int> l = token_labels;
    l[3] = 4;
    CHECK_THROWS_MSG(
        peft::token_cross_entropy(token_z(), l, g), peft::invalid_argument,
        Catch::Contains(
            "token_cross_entropy: label of row 3 expected in [0, 4) or -100 (ignore_label), got 4"));
    l[3] = -1;
    CHECK_THROWS_MSG(peft::token_cross_entropy(token_z(), l, g), peft::invalid_argument,
                     Catch::Contains("label of row 3 expected in [0, 4) or -100 (ignore_label), got -1"));
    CHECK_THROWS_MSG(peft::token_cross_entropy(token_z(), std::vector<int>{0, 1}, g), peft::invalid_argument,
                     Catch::Contains("token_cross_entropy: labels size (logit rows) expected 7, got 2"));
  }
  SECTION("span_cross_entropy") {
    const dmat zs = span_z();
    CHECK_THROWS_MSG(
        peft::span_cross_entropy(zs, 4, span_start, span_end, g), peft::invalid_argument,
        Catch::Contains("span_cross_entropy: logit rows expected a positive multiple of T = 4, got 15"));
    CHECK_THROWS_MSG(peft::span_cross_entropy(zs, 0, span_start, span_end, g), peft::invalid_argument,
                     Catch::Contains("span_cross_entropy: tokens per example T expected > 0, got 0"));
    CHECK_THROWS_MSG(peft::span_cross_entropy(token_z(), 7, {0}, {0}, g), peft::invalid_argument,
                     Catch::Contains("span_cross_entropy: logit columns (start, end) expected 2, got 4"));
    CHECK_THROWS_MSG(peft::span_cross_entropy(zs, span_T, {1, 2}, span_end, g), peft::invalid_argument,
                     Catch::Contains("start positions size (examples = logit rows / T) expected 3, got 2"));
    CHECK_THROWS_MSG(peft::span_cross_entropy(zs, span_T, span_start, {1, 2, 3, 4}, g),
                     peft::invalid_argument,
                     Catch::Contains("end positions size (examples = logit rows / T) expected 3, got 4"));
    CHECK_THROWS_MSG(peft::span_cross_entropy(dmat(0, 2), span_T, {}, {}, g), peft::invalid_argument,
                     Catch::Contains("positive multiple of T = 5, got 0"));
  }
  CHECK(g == keep);  // untouched by failed calls
}

TEST_CASE("task losses: non-finite logits or targets throw numeric_error naming the entry", "[losses][nan]") {
  dmat g = dmat::Constant(1, 1, 42.0);
  const dmat keep = g;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  dmat z = task_z();
  z(1, 2) = nan;
  CHECK_THROWS_MSG(peft::mse_loss(z, mse_targets(), g), peft::numeric_error,
                   Catch::Contains("mse_loss: predictions expected finite, got NaN at row 1, column 2"));
  CHECK_THROWS_MSG(peft::bce_with_logits(z, bce_targets(), g), peft::numeric_error,
                   Catch::Contains("bce_with_logits: logits expected finite, got NaN at row 1, column 2"));
  dmat t = mse_targets();
  t(3, 0) = -inf;
  CHECK_THROWS_MSG(peft::mse_loss(task_z(), t, g), peft::numeric_error,
                   Catch::Contains("mse_loss: targets expected finite, got -Inf at row 3, column 0"));
  t = bce_targets();
  t(0, 1) = nan;
  CHECK_THROWS_MSG(peft::bce_with_logits(task_z(), t, g), peft::numeric_error,
                   Catch::Contains("bce_with_logits: targets expected finite, got NaN at row 0, column 1"));
  // A non-finite logit throws even on a row whose label is ignored (torch's gradient would be NaN).
  dmat zt = token_z();
  zt(1, 3) = inf;
  CHECK_THROWS_MSG(
      peft::token_cross_entropy(zt, token_labels, g), peft::numeric_error,
      Catch::Contains("token_cross_entropy: logits expected finite, got +Inf at row 1, column 3"));
  dmat zs = span_z();
  zs(7, 1) = nan;
  CHECK_THROWS_MSG(peft::span_cross_entropy(zs, span_T, span_start, span_end, g), peft::numeric_error,
                   Catch::Contains("span_cross_entropy: logits expected finite, got NaN at row 7, column 1"));
  // Finite inputs whose loss overflows.
  CHECK_THROWS_MSG(peft::mse_loss(dmat::Constant(1, 1, 1e200), dmat::Constant(1, 1, -1e200), g),
                   peft::numeric_error, Catch::Contains("mse_loss: loss is +Inf at example 0"));
  peft::matrix<float> gf;
  CHECK_THROWS_MSG(
      peft::mse_loss(peft::matrix<float>::Constant(1, 2, 3e19f), peft::matrix<float>::Zero(1, 2), gf),
      peft::numeric_error, Catch::Contains("mse_loss: loss is +Inf at example 0"));
  CHECK(gf.size() == 0);
  dmat big = dmat::Zero(4, 2);
  big(0, 0) = 1e308;
  big(1, 0) = -1e308;
  CHECK_THROWS_MSG(peft::span_cross_entropy(big, 4, {1}, {0}, g), peft::numeric_error,
                   Catch::Contains("span_cross_entropy: loss is +Inf at example 0"));
  CHECK(g == keep);
}

namespace {

/// The pairs of torch_optim.py's "cosine_pairs" case: 4 pairs of 5-wide embeddings.
dmat pair_z() {
  dmat z(8, 5);
  for (peft::index r = 0; r < 8; ++r)
    for (peft::index c = 0; c < 5; ++c)
      z(r, c) = std::sin(0.6 * static_cast<double>(5 * r + c) + 0.3) * (1 + 0.5 * static_cast<double>(r));
  return z;
}
const std::vector<float> pair_targets = {1.0f, 0.0f, 1.0f, 0.0f};

}  // namespace

TEST_CASE("cosine_pair_loss: SetFit's pair loss against torch, finite differences and by hand", "[losses]") {
  dmat g, scratch;
  SECTION("= F.mse_loss(F.cosine_similarity(u, v), t) (torch, double and float)") {
    if (!have_reference()) return;
    const auto r = task_reference().at("cosine_pairs");
    CHECK(max_abs(from_json(r.at("z")) - pair_z()) < 1e-12);  // the same inputs, up to libm rounding
    CHECK(r.at("targets").get<std::vector<float>>() == pair_targets);
    check_against_torch(r, [&](const auto& z, auto& gr) { return peft::cosine_pair_loss(z, pair_targets, gr); });
  }
  SECTION("gradient by finite differences (double)") {
    // Absolute error: some entries of this gradient are near 0, where a relative one says little.
    peft::cosine_pair_loss(pair_z(), pair_targets, g);
    dmat x = pair_z();
    const auto r = peft_test::check_gradient(
        x.data(), x.size(), g.data(), [&] { return peft::cosine_pair_loss(x, pair_targets, scratch); }, 1e-6);
    INFO("max abs err " << r.max_abs_err << ", largest entry " << max_abs(g));
    CHECK(r.max_abs_err < 1e-9);
    CHECK(max_abs(g) > 1e-2);
    CHECK(r.checked == x.size());
  }
  SECTION("by hand: parallel, orthogonal and opposite pairs; the scale of a row does not matter") {
    dmat z(6, 2);
    z << 1, 0,   // pair 0: (1,0) and (3,0), cos 1
        0, 2,    // pair 1: (0,2) and (5,0), cos 0
        1, 1,    // pair 2: (1,1) and (-2,-2), cos -1
        3, 0, 5, 0, -2, -2;
    const double v = peft::cosine_pair_loss(z, {1.0f, 0.0f, 0.0f}, g);
    CHECK(v == Approx((0.0 + 0.0 + 1.0) / 3));
    CHECK(g.topRows(2).isZero(1e-15));  // the first two pairs are already at their targets
    CHECK(g.row(1 + 3).isZero(1e-15));
    // Pair 2 at cos -1 is a stationary point of the cosine, so its gradient vanishes too.
    CHECK(g.row(2).norm() < 1e-12);
    dmat z2 = z;
    z2.row(0) *= 7;
    CHECK(peft::cosine_pair_loss(z2, {1.0f, 0.0f, 0.0f}, scratch) == Approx(v));
  }
  SECTION("a zero embedding has cosine 0 (torch's eps), not NaN") {
    dmat z = dmat::Zero(2, 3);
    z(1, 0) = 1;
    CHECK(peft::cosine_pair_loss(z, {1.0f}, g) == Approx(1.0));
    CHECK(g.allFinite());
  }
  SECTION("bad input") {
    CHECK_THROWS_WITH(peft::cosine_pair_loss(dmat::Ones(3, 2), {1.0f}, g),
                      Catch::Contains("two per pair") && Catch::Contains("got 3"));
    CHECK_THROWS_WITH(peft::cosine_pair_loss(dmat::Ones(4, 2), {1.0f}, g),
                      Catch::Contains("targets (one per pair)") && Catch::Contains("expected 2, got 1"));
    CHECK_THROWS_WITH(peft::cosine_pair_loss(dmat::Ones(2, 2), {1.5f}, g),
                      Catch::Contains("target of pair 0 expected in [-1, 1], got 1.5"));
    dmat z = dmat::Ones(2, 2);
    z(1, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(peft::cosine_pair_loss(z, {1.0f}, g), peft::numeric_error);
  }
}
