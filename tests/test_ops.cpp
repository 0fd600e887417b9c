// SPDX-License-Identifier: Apache-2.0
// Finite-difference checks (double precision) of every op's backward pass.
#include <peft/core/random.hpp>
#include <peft/ops/activation.hpp>
#include <peft/ops/attention.hpp>
#include <peft/ops/dropout.hpp>
#include <peft/ops/layer_norm.hpp>
#include <peft/ops/linear.hpp>

#include "gradcheck.hpp"
#include "test_common.hpp"

using Idx = peft::index;
using mat = peft::matrix<double>;
using vec = peft::vector<double>;
using peft_test::check_gradient;
using peft_test::dot_loss;
using peft_test::random_matrix;

namespace {
constexpr double kStep = 1e-6;
constexpr double kTol = 1e-7;
}  // namespace

TEST_CASE("linear backward matches finite differences", "[ops]") {
  mat x = random_matrix<double>(5, 7, 1), w = random_matrix<double>(3, 7, 2), R = random_matrix<double>(5, 3, 3);
  vec b = random_matrix<double>(3, 1, 4);
  auto loss = [&] { return dot_loss(peft::ops::linear_forward_ret(x, w, b), R); };
  mat dx;
  peft::ops::linear_backward_input(R, w, dx);
  auto rx = check_gradient(x.data(), x.size(), dx.data(), loss, kStep);
  CHECK(rx.max_abs_err < kTol);
  mat dw = mat::Zero(3, 7);
  vec db = vec::Zero(3);
  peft::ops::linear_backward_weight(x, R, dw, &db);
  CHECK(check_gradient(w.data(), w.size(), dw.data(), loss, kStep).max_abs_err < kTol);
  CHECK(check_gradient(b.data(), b.size(), db.data(), loss, kStep).max_abs_err < kTol);
}

TEST_CASE("layer norm backward matches finite differences", "[ops]") {
  mat x = random_matrix<double>(4, 9, 5, 2.0), R = random_matrix<double>(4, 9, 6);
  vec g = random_matrix<double>(9, 1, 7), bb = random_matrix<double>(9, 1, 8);
  auto loss = [&] {
    mat y;
    peft::ops::layer_norm_forward(x, g, bb, 1e-5, y, nullptr);
    return dot_loss(y, R);
  };
  mat y;
  peft::ops::layer_norm_cache<double> cache;
  peft::ops::layer_norm_forward(x, g, bb, 1e-5, y, &cache);
  mat dx;
  vec dg = vec::Zero(9), db = vec::Zero(9);
  peft::ops::layer_norm_backward(R, g, cache, dx, &dg, &db);
  CHECK(check_gradient(x.data(), x.size(), dx.data(), loss, kStep).max_abs_err < kTol);
  CHECK(check_gradient(g.data(), g.size(), dg.data(), loss, kStep).max_abs_err < kTol);
  CHECK(check_gradient(bb.data(), bb.size(), db.data(), loss, kStep).max_abs_err < kTol);
  // In-place forward and backward give the same numbers.
  mat xi = x;
  peft::ops::layer_norm_forward(xi, g, bb, 1e-5, xi, nullptr);
  CHECK(xi.isApprox(y, 1e-14));
  mat Ri = R;
  peft::ops::layer_norm_backward(Ri, g, cache, Ri);
  CHECK(Ri.isApprox(dx, 1e-14));
}

TEST_CASE("activations backward match finite differences", "[ops]") {
  for (auto act : {peft::activation::gelu_erf, peft::activation::gelu_tanh, peft::activation::relu}) {
    mat u = random_matrix<double>(6, 5, 9, 2.0), R = random_matrix<double>(6, 5, 10);
    auto loss = [&] {
      mat y;
      peft::ops::activation_forward(act, u, y);
      return dot_loss(y, R);
    };
    mat du = R;
    peft::ops::activation_backward(act, u, du);
    CHECK(check_gradient(u.data(), u.size(), du.data(), loss, kStep).max_abs_err < kTol);
  }
  // GELU (erf) against known values.
  mat u(1, 3);
  u << -1.0, 0.5, 2.0;
  mat y;
  peft::ops::activation_forward(peft::activation::gelu_erf, u, y);
  CHECK(y(0, 0) == Approx(-0.15865525393145707).epsilon(1e-12));
  CHECK(y(0, 1) == Approx(0.34573123063700656).epsilon(1e-12));
  CHECK(y(0, 2) == Approx(1.9544997361036416).epsilon(1e-12));
}

namespace {
struct attention_case {
  Idx B, T, H, P, d;
  double dropout;
};

void check_attention(const attention_case& c) {
  peft::ops::attention_shape shape{c.B, c.T, c.H, c.P};
  mat q = random_matrix<double>(c.B * c.T, c.d, 11), k = random_matrix<double>(c.B * c.T, c.d, 12),
      v = random_matrix<double>(c.B * c.T, c.d, 13), pk = random_matrix<double>(c.P, c.d, 14),
      pv = random_matrix<double>(c.P, c.d, 15), R = random_matrix<double>(c.B * c.T, c.d, 16);
  peft::id_matrix mask = peft::id_matrix::Ones(c.B, c.T);
  // Uneven lengths: sequence b keeps T - b tokens.
  for (Idx b = 0; b < c.B; ++b)
    for (Idx t = c.T - b; t < c.T; ++t) mask(b, t) = 0;
  const double scale = 1.0 / std::sqrt(double(c.d / c.H));
  auto run = [&](peft::ops::attention_cache<double>* cache) {
    peft::rng gen(99);  // same dropout mask on every call
    mat ctx;
    peft::ops::attention_forward(shape, q, k, v, c.P ? &pk : nullptr, c.P ? &pv : nullptr, mask, scale, c.dropout,
                                 c.dropout > 0 ? &gen : nullptr, ctx, cache);
    return ctx;
  };
  auto loss = [&] { return dot_loss(run(nullptr), R); };
  peft::ops::attention_cache<double> cache;
  run(&cache);
  mat dq, dk, dv, dpk, dpv;
  peft::ops::attention_backward(shape, R, q, k, v, c.P ? &pk : nullptr, c.P ? &pv : nullptr, cache, scale, dq, dk,
                                dv, c.P ? &dpk : nullptr, c.P ? &dpv : nullptr);
  CHECK(check_gradient(q.data(), q.size(), dq.data(), loss, kStep).max_abs_err < kTol);
  CHECK(check_gradient(k.data(), k.size(), dk.data(), loss, kStep).max_abs_err < kTol);
  CHECK(check_gradient(v.data(), v.size(), dv.data(), loss, kStep).max_abs_err < kTol);
  if (c.P) {
    CHECK(check_gradient(pk.data(), pk.size(), dpk.data(), loss, kStep).max_abs_err < kTol);
    CHECK(check_gradient(pv.data(), pv.size(), dpv.data(), loss, kStep).max_abs_err < kTol);
  }
}
}  // namespace

TEST_CASE("attention backward matches finite differences", "[ops]") {
  SECTION("plain, padded") { check_attention({3, 5, 2, 0, 8, 0.0}); }
  SECTION("with prefix") { check_attention({2, 4, 2, 3, 8, 0.0}); }
  SECTION("with prefix and dropout") { check_attention({2, 4, 2, 2, 8, 0.3}); }
}

TEST_CASE("attention ignores padded keys and matches a direct softmax", "[ops]") {
  const Idx T = 4, d = 4;
  mat q = random_matrix<double>(T, d, 21), k = random_matrix<double>(T, d, 22), v = random_matrix<double>(T, d, 23);
  peft::id_matrix mask(1, T);
  mask << 1, 1, 1, 0;
  mat ctx;
  peft::ops::attention_forward<double>({1, T, 1, 0}, q, k, v, nullptr, nullptr, mask, 0.5, 0.0, nullptr, ctx, nullptr);
  for (Idx i = 0; i < T; ++i) {
    vec s(3);
    for (Idx j = 0; j < 3; ++j) s[j] = std::exp(0.5 * q.row(i).dot(k.row(j)));
    s /= s.sum();
    peft::row_vector<double> expect = s[0] * v.row(0) + s[1] * v.row(1) + s[2] * v.row(2);
    CHECK((ctx.row(i) - expect).cwiseAbs().maxCoeff() < 1e-12);
  }
  // Changing a padded key or value leaves the output unchanged.
  k.row(3).setConstant(100.0);
  v.row(3).setConstant(-100.0);
  mat ctx2;
  peft::ops::attention_forward<double>({1, T, 1, 0}, q, k, v, nullptr, nullptr, mask, 0.5, 0.0, nullptr, ctx2, nullptr);
  CHECK(ctx2 == ctx);
}

TEST_CASE("attention over a batch of uneven lengths: every row of every sequence and head is its own softmax",
          "[ops]") {
  // Three sequences of lengths 5, 2 and 4 padded to 5, two heads of width 3, two prefix
  // keys/values every query sees. Each sequence must use its own mask (a mask taken from
  // another row changes these rows) and never another sequence's keys.
  const Idx B = 3, T = 5, H = 2, P = 2, dh = 3, d = H * dh;
  const std::vector<Idx> lengths = {5, 2, 4};
  mat q = random_matrix<double>(B * T, d, 31), k = random_matrix<double>(B * T, d, 32),
      v = random_matrix<double>(B * T, d, 33), pk = random_matrix<double>(P, d, 34),
      pv = random_matrix<double>(P, d, 35);
  peft::id_matrix mask = peft::id_matrix::Zero(B, T);
  for (Idx b = 0; b < B; ++b) mask.row(b).head(lengths[static_cast<std::size_t>(b)]).setOnes();
  const double scale = 1.0 / std::sqrt(double(dh));
  mat ctx;
  peft::ops::attention_forward<double>({B, T, H, P}, q, k, v, &pk, &pv, mask, scale, 0.0, nullptr, ctx, nullptr);
  REQUIRE(ctx.rows() == B * T);
  REQUIRE(ctx.cols() == d);
  double worst = 0;
  for (Idx b = 0; b < B; ++b) {
    const Idx len = lengths[static_cast<std::size_t>(b)];
    for (Idx h = 0; h < H; ++h)
      for (Idx t = 0; t < len; ++t) {
        const auto qi = q.row(b * T + t).segment(h * dh, dh);
        // Scores over the prefix keys, then this sequence's real keys; a plain softmax.
        std::vector<double> e;
        for (Idx j = 0; j < P; ++j) e.push_back(std::exp(scale * qi.dot(pk.row(j).segment(h * dh, dh))));
        for (Idx j = 0; j < len; ++j) e.push_back(std::exp(scale * qi.dot(k.row(b * T + j).segment(h * dh, dh))));
        double z = 0;
        for (double x : e) z += x;
        peft::row_vector<double> expect = peft::row_vector<double>::Zero(dh);
        for (Idx j = 0; j < P; ++j) expect += e[static_cast<std::size_t>(j)] / z * pv.row(j).segment(h * dh, dh);
        for (Idx j = 0; j < len; ++j)
          expect += e[static_cast<std::size_t>(P + j)] / z * v.row(b * T + j).segment(h * dh, dh);
        worst = std::max(worst, (ctx.row(b * T + t).segment(h * dh, dh) - expect).cwiseAbs().maxCoeff());
      }
  }
  INFO("max abs difference from the direct softmax " << worst);
  CHECK(worst < 1e-12);
}

TEST_CASE("dropout masks are inverted and seeded", "[ops]") {
  peft::rng a(5), b(5);
  mat m1, m2;
  peft::ops::make_dropout_mask(100, 100, 0.25, a, m1);
  peft::ops::make_dropout_mask(100, 100, 0.25, b, m2);
  CHECK(m1 == m2);
  const double zeros = double((m1.array() == 0.0).count()) / double(m1.size());
  CHECK(zeros == Approx(0.25).margin(0.02));
  CHECK(m1.maxCoeff() == Approx(1.0 / 0.75));
  CHECK(m1.mean() == Approx(1.0).margin(0.03));
}
