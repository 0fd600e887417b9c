// SPDX-License-Identifier: Apache-2.0
// Modular prompts (MPMP): gradients of z, A and router logits by finite differences inside
// the encoder (eval and train mode, deep and shallow, BERT and USE-lite widths, before and
// after materialize), relaxed-Bernoulli sampling statistics, prompt layout, router-only
// phases with AdamW, materialize() and tiling equivalences, bad input, checkpoints.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/model/encoder.hpp>
#include <peft/optim/adam.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/policies/prefix_tuning.hpp>

#include <cmath>
#include <fstream>

#include "gradcheck.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using idx = peft::index;
using peft::modular_prompt;
using peft::modular_prompt_config;
using peft::modular_prompt_parts;
using peft_test::small_model;

namespace {

modular_prompt_config small_mp(bool deep, idx n = 2, idx modules = 3, idx dim = 4, idx tasks = 1,
                               double tau = 1.0) {
  modular_prompt_config c;
  c.deep = deep;
  c.num_prompt_tokens = n;
  c.num_modules = modules;
  c.intrinsic_dim = dim;
  c.num_tasks = tasks;
  c.temperature = tau;
  return c;
}

/// O(1) values everywhere so that every path carries a visible gradient.
template <typename Scalar>
void randomise_policy(modular_prompt<Scalar>& p, std::uint64_t seed) {
  peft::rng g(seed);
  auto fill = [&](peft::vector<Scalar>& v, double scale) {
    for (idx i = 0; i < v.size(); ++i) v[i] = static_cast<Scalar>(g.normal() * scale);
  };
  fill(p.router_parameters().values(), 1.0);
  fill(p.prompt_parameters().values(), 0.6);
  fill(p.projection_parameters().values(), 0.5);
}

/// FD check of one store's gradient (and of the embedding-output gradient) in mode @p m;
/// train mode reseeds the generator per call, so dropout and router noise are fixed.
template <typename Enc, typename P>
peft_test::policy_grad_result check_store(const Enc& enc, const peft::batch& b, P& p,
                                          peft::parameter_store<double>& store, peft::mode m, int count = 50,
                                          int input_count = 30) {
  using mat = peft::matrix<double>;
  const auto R = peft_test::loss_weights<double>(b, enc.hidden_size(), 11);
  peft::rng g0(3);
  const mat h0_init = enc.embed(b, peft::mode::eval, &g0);
  mat h0 = h0_init;
  auto loss = [&] {
    peft::rng gen(123);
    return peft_test::dot_loss(enc.forward_embedded(h0, b, p, m, nullptr, &gen), R);
  };
  peft::encoder_tape<double, P> tape;
  peft::rng gen(123);
  enc.forward_embedded(h0, b, p, m, &tape, &gen);
  p.zero_grad();
  const mat dh0 = enc.backward(R, p, tape, 0);
  const peft::vector<double> analytic = store.grads();
  peft_test::policy_grad_result r;
  r.params =
      peft_test::check_gradient(store.values().data(), store.size(), analytic.data(), loss, 1e-6, count);
  if (input_count > 0) {
    r.input = peft_test::check_gradient(h0.data(), h0.size(), dh0.data(), loss, 1e-6, input_count, 9);
    r.max_input_grad = dh0.cwiseAbs().maxCoeff();
  }
  r.max_param_grad = analytic.cwiseAbs().maxCoeff();
  return r;
}

template <typename Arch>
void check_mp_gradients(const std::string& type, bool deep, bool materialized) {
  small_model<Arch> m(type);
  const auto shape = m.enc.shape();
  // Two tasks (task 1 selected) and tau != 1, so the row choice and the 1/tau factor are checked.
  modular_prompt<double> p(shape, small_mp(deep, 2, 3, 4, 2, 0.7), 5);
  randomise_policy(p, 17);
  p.set_task(1);
  if (materialized) p.materialize();
  // Materialisation does not touch the routing, so its eval path is covered by the other cases.
  const std::vector<peft::mode> modes = materialized
                                            ? std::vector<peft::mode>{peft::mode::train}
                                            : std::vector<peft::mode>{peft::mode::eval, peft::mode::train};
  for (auto md : modes) {
    const char* mode_name = md == peft::mode::eval ? "eval" : "train";
    std::vector<std::pair<std::string, peft::parameter_store<double>*>> stores = {
        {"router", &p.router_parameters()}, {materialized ? "prompts" : "z", &p.prompt_parameters()}};
    if (!materialized) stores.push_back({"A", &p.projection_parameters()});
    bool first = true;
    for (auto& st : stores) {
      // The input gradient is the same for every store: check it once per mode.
      const auto r = check_store(m.enc, m.b, p, *st.second, md, 50, first ? 30 : 0);
      INFO(type << (deep ? " deep" : " shallow") << (materialized ? " materialised " : " ") << mode_name
                << " " << st.first << ": params max abs err " << r.params.max_abs_err << " (rel "
                << r.params.max_rel_err << ", max grad " << r.max_param_grad << "), input "
                << r.input.max_abs_err << " (rel " << r.input.max_rel_err << ")");
      CHECK(r.params.max_abs_err < 1e-7);
      CHECK(r.max_param_grad > 1e-3);
      if (first) {
        CHECK(r.input.max_abs_err < 1e-7);
        CHECK(r.max_input_grad > 1e-3);
      }
      first = false;
    }
    // Task 0's router row gets no gradient.
    const auto G = p.router_parameters().grad(0);
    CHECK(G.row(0).cwiseAbs().maxCoeff() == 0.0);
    CHECK(G.row(1).cwiseAbs().maxCoeff() > 1e-3);
  }
}

/// Midpoint rule for E[sigmoid((R + log u - log(1 - u)) / tau)], u ~ U(0, 1).
double expected_relaxed_mean(double R, double tau, int nodes = 200000) {
  double s = 0;
  for (int i = 0; i < nodes; ++i) {
    const double u = (i + 0.5) / nodes;
    s += 1.0 / (1.0 + std::exp(-(R + std::log(u) - std::log1p(-u)) / tau));
  }
  return s / nodes;
}

peft::encoder_shape tiny_shape(idx layers = 2, idx hidden = 8) {
  peft::encoder_shape s;
  s.model_type = "bert";
  s.num_layers = layers;
  s.num_heads = 2;
  s.embedding_size = hidden;
  s.hidden_size = hidden;
  s.intermediate_size = 2 * hidden;
  s.input_width.assign(static_cast<std::size_t>(layers), hidden);
  s.attention_width.assign(static_cast<std::size_t>(layers), hidden);
  s.output_width.assign(static_cast<std::size_t>(layers), hidden);
  s.backbone_parameters = 1000;
  return s;
}

}  // namespace

TEST_CASE("modular prompt gradients match finite differences inside the encoder", "[modular_prompt][grad]") {
  SECTION("bert, deep") { check_mp_gradients<peft::bert>("bert", true, false); }
  SECTION("bert, shallow") { check_mp_gradients<peft::bert>("bert", false, false); }
  SECTION("use_lite, deep") { check_mp_gradients<peft::use_lite>("use_lite", true, false); }
  SECTION("use_lite, shallow") { check_mp_gradients<peft::use_lite>("use_lite", false, false); }
  SECTION("use_lite, deep, materialised") { check_mp_gradients<peft::use_lite>("use_lite", true, true); }
  SECTION("bert, shallow, materialised") { check_mp_gradients<peft::bert>("bert", false, true); }
}

TEST_CASE("modular prompt defaults, blocks and initialisation follow the reference",
          "[modular_prompt][params]") {
  const modular_prompt_config c;
  CHECK(c.num_modules == 8);
  CHECK(c.num_prompt_tokens == 50);
  CHECK(c.intrinsic_dim == 300);
  CHECK(c.num_tasks == 1);
  CHECK(c.deep);
  CHECK(c.temperature == 1.0);
  CHECK(c.sample_router);

  const auto s = tiny_shape(2, 8);
  modular_prompt<float> p(s, c, 1);
  CHECK(p.num_slots() == 2);
  CHECK(p.lowest_layer(2) == 0);
  REQUIRE(p.router_parameters().num_blocks() == 1);
  CHECK(p.router_parameters().block(0).name == "router");
  CHECK((p.router_parameters().block(0).rows == 1 && p.router_parameters().block(0).cols == 16));
  REQUIRE(p.prompt_parameters().num_blocks() == 1);
  CHECK(p.prompt_parameters().block(0).name == "z");
  CHECK((p.prompt_parameters().block(0).rows == 16 && p.prompt_parameters().block(0).cols == 300));
  REQUIRE(p.projection_parameters().num_blocks() == 2);
  CHECK(p.projection_parameters().block(1).name == "A.1");
  CHECK((p.projection_parameters().block(1).rows == 300 && p.projection_parameters().block(1).cols == 400));
  CHECK(p.total_parameters() == 16 + 16 * 300 + 2 * 300 * 400);
  CHECK(p.num_parameters() == p.total_parameters());
  CHECK(p.stores().size() == 3);
  // U(-1e-3, 1e-3) for router and z; U(-1/sqrt(n*H), 1/sqrt(n*H)) for A.
  const double rmax = p.router_parameters().values().cwiseAbs().maxCoeff();
  const double zmax = p.prompt_parameters().values().cwiseAbs().maxCoeff();
  const double amax = p.projection_parameters().values().cwiseAbs().maxCoeff();
  CHECK((rmax <= 1e-3 && rmax > 5e-4));
  CHECK((zmax <= 1e-3 && zmax > 9e-4));
  CHECK((amax <= 0.05 && amax > 0.049));

  // Shallow: one slot, router [T x M]; USE-lite-like widths: slot width = layer input width.
  auto u = tiny_shape(3, 16);
  u.model_type = "use_lite";
  u.input_width[0] = 8;
  modular_prompt<double> sh(u, small_mp(false, 3, 4, 5, 2), 0);
  CHECK(sh.num_slots() == 1);
  CHECK(sh.slot_width(0) == 8);
  CHECK(sh.router_parameters().size() == 2 * 4);
  CHECK(sh.prompt_parameters().size() == 4 * 5);
  CHECK(sh.projection_parameters().size() == 5 * 3 * 8);
  modular_prompt<double> dp(u, small_mp(true, 3, 4, 5, 2), 0);
  CHECK(dp.slot_width(0) == 8);
  CHECK(dp.slot_width(2) == 16);
  CHECK(dp.projection_parameters().block(0).cols == 3 * 8);
  CHECK(dp.projection_parameters().block(2).cols == 3 * 16);

  // Copies own their values.
  modular_prompt<double> copy = dp;
  copy.router_parameters().values().setConstant(3.0);
  copy.prompt_parameters().values().setConstant(3.0);
  CHECK(dp.router_parameters().values().cwiseAbs().maxCoeff() <= 1e-3);
  CHECK(dp.prompt_parameters().values().cwiseAbs().maxCoeff() <= 1e-3);
}

TEST_CASE("the routed prompt is added at positions 1..n of every sequence", "[modular_prompt][layout]") {
  small_model<peft::use_lite> m("use_lite");
  modular_prompt<double> p(m.enc.shape(), small_mp(true, 2, 3, 4), 2);
  randomise_policy(p, 4);
  for (idx s = 0; s < p.num_slots(); ++s) {
    // prompt(s) = sum_k r^_k P_{s,k}, with r^ the normalised sigmoid of the router logits.
    const peft::row_vector<double> logits = p.router_parameters().value(0).row(0).segment(s * 3, 3);
    peft::vector<double> r(3);
    for (idx k = 0; k < 3; ++k) r[k] = 1.0 / (1.0 + std::exp(-logits[k]));
    r /= r.sum() + 1e-12;
    CHECK((p.routing_weights(s) - r).cwiseAbs().maxCoeff() < 1e-15);
    const peft::row_vector<double> flat = r.transpose() * p.module_prompts(s);
    const idx H = p.slot_width(s);
    const peft::matrix<double> P = Eigen::Map<const peft::matrix<double>>(flat.data(), 2, H);
    CHECK((p.prompt(s) - P).cwiseAbs().maxCoeff() < 1e-12);
    CHECK((p.module_prompts(s) - p.intrinsic(s) * p.projection_parameters().value(s)).cwiseAbs().maxCoeff() <
          1e-15);

    // The hook adds it to rows b*T + 1 .. b*T + n only.
    const idx B = 2, T = 4;
    peft::matrix<double> h = peft::matrix<double>::Zero(B * T, H);
    peft::hook_context ctx;
    ctx.batch_size = B;
    ctx.time = T;
    modular_prompt<double>::tape_type t;
    p.on_layer_input(s, h, ctx, t);
    for (idx b = 0; b < B; ++b) {
      CHECK(h.row(b * T).cwiseAbs().maxCoeff() == 0.0);
      CHECK((h.block(b * T + 1, 0, 2, H) - p.prompt(s)).cwiseAbs().maxCoeff() < 1e-12);
      CHECK(h.row(b * T + 3).cwiseAbs().maxCoeff() == 0.0);
    }
  }
  // The shallow variant touches layer 0 only.
  modular_prompt<double> sh(m.enc.shape(), small_mp(false, 2, 3, 4), 2);
  peft::matrix<double> h1 = peft::matrix<double>::Zero(3, 16);
  peft::hook_context ctx;
  ctx.batch_size = 1;
  ctx.time = 3;
  modular_prompt<double>::tape_type t;
  sh.on_layer_input(1, h1, ctx, t);
  CHECK(h1.cwiseAbs().maxCoeff() == 0.0);
  // And it changes the encoder output; so does the deep one.
  const auto plain = m.enc.forward(m.b);
  randomise_policy(sh, 5);
  CHECK((m.enc.forward(m.b, sh) - plain).cwiseAbs().maxCoeff() > 1e-3);
  CHECK((m.enc.forward(m.b, p) - plain).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("relaxed-Bernoulli router samples: P(r > 1/2) = sigmoid(R) and the right mean",
          "[modular_prompt][sampling]") {
  const std::vector<double> logits = {-2.0, -0.5, 0.0, 1.0, 3.0};
  const idx M = static_cast<idx>(logits.size());
  for (double tau : {1.0, 0.5}) {
    modular_prompt<double> p(tiny_shape(1, 4), small_mp(false, 1, M, 2, 1, tau), 0);
    for (idx k = 0; k < M; ++k) p.router_parameters().value(0)(0, k) = logits[static_cast<std::size_t>(k)];
    const int N = 20000;
    peft::rng gen(99);
    peft::hook_context ctx;
    ctx.run_mode = peft::mode::train;
    ctx.gen = &gen;
    ctx.record = true;
    ctx.batch_size = 1;
    ctx.time = 2;
    std::vector<double> above(static_cast<std::size_t>(M), 0.0), mean(static_cast<std::size_t>(M), 0.0);
    peft::matrix<double> h(2, 4);
    for (int i = 0; i < N; ++i) {
      h.setZero();
      modular_prompt<double>::tape_type t;
      p.on_layer_input(0, h, ctx, t);
      if (i == 0) REQUIRE(t.sampled);
      const auto& r = t.weights[0];
      for (idx k = 0; k < M; ++k) {
        // The recorded sample is sigmoid((R + noise) / tau).
        if (i < 5)
          CHECK(r[k] == Approx(1.0 / (1.0 + std::exp(-(logits[std::size_t(k)] + t.noise[0][k]) / tau))));
        above[std::size_t(k)] += r[k] > 0.5 ? 1.0 : 0.0;
        mean[std::size_t(k)] += r[k];
      }
    }
    for (idx k = 0; k < M; ++k) {
      const double R = logits[std::size_t(k)];
      const double q = 1.0 / (1.0 + std::exp(-R));
      const double frac = above[std::size_t(k)] / N;
      const double mu = mean[std::size_t(k)] / N;
      const double want_mu = expected_relaxed_mean(R, tau);
      INFO("tau " << tau << ", R " << R << ": P(r > 1/2) " << frac << " vs sigmoid(R) " << q << "; mean "
                  << mu << " vs " << want_mu);
      CHECK(std::abs(frac - q) < 4.5 * std::sqrt(q * (1 - q) / N));
      CHECK(std::abs(mu - want_mu) < 4.5 * 0.5 / std::sqrt(double(N)));
    }
    // Evaluation mode: exactly sigmoid(R), nothing drawn.
    peft::hook_context ev = ctx;
    ev.run_mode = peft::mode::eval;
    ev.gen = nullptr;
    modular_prompt<double>::tape_type t;
    p.on_layer_input(0, h, ev, t);
    CHECK_FALSE(t.sampled);
    for (idx k = 0; k < M; ++k)
      CHECK(t.weights[0][k] == Approx(1.0 / (1.0 + std::exp(-logits[std::size_t(k)]))).epsilon(1e-14));
  }
  // sample_router = false keeps sigmoid(R) in train mode and draws nothing.
  auto c = small_mp(false, 1, 2, 2);
  c.sample_router = false;
  modular_prompt<double> q(tiny_shape(1, 4), c, 0);
  peft::hook_context ctx;
  ctx.run_mode = peft::mode::train;
  ctx.record = true;
  ctx.batch_size = 1;
  ctx.time = 2;
  peft::matrix<double> h = peft::matrix<double>::Zero(2, 4);
  modular_prompt<double>::tape_type t;
  q.on_layer_input(0, h, ctx, t);  // no generator needed
  CHECK_FALSE(t.sampled);
}

TEST_CASE("router-only phase exposes L*M logits and leaves z, A and the encoder bitwise unchanged",
          "[modular_prompt][phases]") {
  small_model<peft::bert> m("bert");
  const auto weights_before = m.enc.weights();
  modular_prompt<double> p(m.enc.shape(), small_mp(true, 2, 3, 4, 4), 7);  // a 4-task "library"
  randomise_policy(p, 8);
  const peft::vector<double> z0 = p.prompt_parameters().values();
  const peft::vector<double> A0 = p.projection_parameters().values();

  // Downstream: fresh router for one task, router-only phase.
  p.reset_router(1, 21);
  CHECK(p.num_tasks() == 1);
  CHECK(p.task() == 0);
  CHECK(p.router_parameters().value(0).cwiseAbs().maxCoeff() <= 1e-3);
  p.set_trainable(modular_prompt_parts::router_only());
  const idx L = m.enc.num_layers(), M = 3;
  REQUIRE(p.stores().size() == 1);
  CHECK(p.stores()[0] == &p.router_parameters());
  CHECK(p.num_parameters() == L * M);
  peft::parameter_set<double> set;
  peft::add_policy_parameters(set, p);  // what the trainer does
  CHECK(set.size() == L * M);
  CHECK(set.num_stores() == 1);

  const peft::vector<double> r0 = p.router_parameters().values();
  peft::adamw_hyper hy;
  hy.lr = 0.05;
  peft::adamw<double> opt(hy);
  opt.init(set);
  const auto R = peft_test::loss_weights<double>(m.b, m.enc.hidden_size(), 5);
  for (int step = 0; step < 4; ++step) {
    peft::rng gen(static_cast<std::uint64_t>(100 + step));
    peft::encoder_tape<double, modular_prompt<double>> tape;
    m.enc.forward(m.b, p, peft::mode::train, &tape, &gen);
    set.zero_grad();
    m.enc.backward(R, p, tape);
    opt.step(set);
  }
  CHECK((p.router_parameters().values() - r0).cwiseAbs().maxCoeff() > 1e-2);
  CHECK(p.prompt_parameters().values() == z0);
  CHECK(p.projection_parameters().values() == A0);
  CHECK(p.prompt_parameters().grads().cwiseAbs().maxCoeff() == 0.0);  // frozen stores get no gradient
  CHECK(p.projection_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(peft_test::same_weights(weights_before, m.enc.weights()));

  // Stage 2 after materialize(): the prompts only (M * n * H per layer), router frozen.
  p.materialize();
  p.set_trainable(modular_prompt_parts::prompts_only());
  REQUIRE(p.stores().size() == 1);
  CHECK(p.stores()[0] == &p.prompt_parameters());
  CHECK(p.num_parameters() == L * M * 2 * 16);
  // Projection selected but absent after materialize(): nothing extra.
  p.set_trainable(modular_prompt_parts::all());
  CHECK(p.stores().size() == 2);
  p.set_trainable(modular_prompt_parts::none());
  CHECK(p.stores().empty());
  CHECK(p.num_parameters() == 0);
}

TEST_CASE("materialize() keeps the forward pass and replaces z and A by the prompts",
          "[modular_prompt][materialize]") {
  for (bool deep : {true, false}) {
    small_model<peft::use_lite> m("use_lite");
    modular_prompt<double> p(m.enc.shape(), small_mp(deep, 2, 3, 4, 2), 3);
    randomise_policy(p, 6);
    p.set_task(1);
    const auto eval_before = m.enc.forward(m.b, p);
    peft::rng g1(8);
    const auto train_before = m.enc.forward(m.b, p, peft::mode::train, nullptr, &g1);
    std::vector<peft::matrix<double>> prompts;
    for (idx s = 0; s < p.num_slots(); ++s) prompts.push_back(p.module_prompts(s));
    p.materialize();
    CHECK(p.materialized());
    CHECK(p.projection_parameters().size() == 0);
    REQUIRE(p.prompt_parameters().num_blocks() == p.num_slots());
    for (idx s = 0; s < p.num_slots(); ++s) {
      CHECK(p.prompt_parameters().block(s).name == "prompt." + std::to_string(s));
      CHECK((p.prompt_parameters().value(s) - prompts[std::size_t(s)]).cwiseAbs().maxCoeff() < 1e-14);
    }
    CHECK(p.task() == 1);
    CHECK((m.enc.forward(m.b, p) - eval_before).cwiseAbs().maxCoeff() < 1e-6);
    peft::rng g2(8);
    CHECK((m.enc.forward(m.b, p, peft::mode::train, nullptr, &g2) - train_before).cwiseAbs().maxCoeff() <
          1e-6);
    p.materialize();  // no-op
    CHECK((m.enc.forward(m.b, p) - eval_before).cwiseAbs().maxCoeff() < 1e-6);
    CHECK_THROWS_WITH(p.intrinsic(0), Catch::Contains("replaced by materialize()"));
    CHECK_THROWS_WITH(p.set_intrinsic(0, peft::vector<double>::Zero(4)),
                      Catch::Contains("replaced by materialize()"));
  }
}

TEST_CASE("tiling one intrinsic vector over a layer's modules makes the output router-independent",
          "[modular_prompt][tile]") {
  small_model<peft::bert> m("bert");
  modular_prompt<double> p(m.enc.shape(), small_mp(true, 2, 3, 4), 1);
  randomise_policy(p, 2);
  const auto untiled = m.enc.forward(m.b, p);
  peft::rng g(3);
  for (idx s = 0; s < p.num_slots(); ++s) {
    peft::vector<double> z(4);
    for (idx i = 0; i < 4; ++i) z[i] = g.normal();
    p.set_intrinsic(s, z);
    for (idx k = 0; k < 3; ++k) CHECK(p.intrinsic(s).row(k) == z.transpose());
    CHECK((p.mixed_intrinsic(s) - z.transpose()).cwiseAbs().maxCoeff() < 1e-11);
  }
  const auto eval0 = m.enc.forward(m.b, p);
  peft::rng ga(4);
  const auto train0 = m.enc.forward(m.b, p, peft::mode::train, nullptr, &ga);
  CHECK((eval0 - untiled).cwiseAbs().maxCoeff() > 1e-3);
  // A different router, and other relaxed-Bernoulli noise: the same output.
  for (idx i = 0; i < p.router_parameters().size(); ++i) p.router_parameters().values()[i] = 3.0 * g.normal();
  CHECK((m.enc.forward(m.b, p) - eval0).cwiseAbs().maxCoeff() < 1e-9);
  peft::rng gb(4);
  CHECK((m.enc.forward(m.b, p, peft::mode::train, nullptr, &gb) - train0).cwiseAbs().maxCoeff() < 1e-9);
  // Without tiling the router matters.
  modular_prompt<double> q(m.enc.shape(), small_mp(true, 2, 3, 4), 1);
  randomise_policy(q, 2);
  const auto before = m.enc.forward(m.b, q);
  q.router_parameters().values() *= -1.0;
  CHECK((m.enc.forward(m.b, q) - before).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("modular prompt rejects bad configs and inputs with clear messages", "[modular_prompt][errors]") {
  small_model<peft::bert> m("bert");
  const auto s = m.enc.shape();
  auto bad = [&](auto edit, const char* text) {
    auto c = small_mp(true);
    edit(c);
    CHECK_THROWS_AS(modular_prompt<double>(s, c, 0), peft::invalid_argument);
    CHECK_THROWS_WITH(modular_prompt<double>(s, c, 0), Catch::Contains(text));
  };
  bad([](modular_prompt_config& c) { c.num_modules = 0; }, "num_modules expected >= 1, got 0");
  bad([](modular_prompt_config& c) { c.num_prompt_tokens = -1; }, "num_prompt_tokens expected >= 1, got -1");
  bad([](modular_prompt_config& c) { c.intrinsic_dim = 0; }, "intrinsic_dim expected >= 1, got 0");
  bad([](modular_prompt_config& c) { c.num_tasks = 0; }, "num_tasks expected >= 1, got 0");
  bad([](modular_prompt_config& c) { c.temperature = 0; }, "temperature expected finite and > 0");
  bad([](modular_prompt_config& c) { c.temperature = std::nan(""); }, "temperature expected finite and > 0");
  auto no_layers = s;
  no_layers.num_layers = 0;
  CHECK_THROWS_WITH(modular_prompt<double>(no_layers, small_mp(true), 0),
                    Catch::Contains("num_layers expected > 0"));

  // Sequence 1 of the small batch has 3 tokens: n = 2 fits, n = 3 does not.
  modular_prompt<double> ok(s, small_mp(true, 2), 0);
  CHECK_NOTHROW(m.enc.forward(m.b, ok));
  modular_prompt<double> p3(s, small_mp(true, 3), 0);
  CHECK_THROWS_AS(m.enc.forward(m.b, p3), peft::invalid_argument);
  CHECK_THROWS_WITH(
      m.enc.forward(m.b, p3),
      Catch::Contains("sequence 1 has 3 real tokens, expected >= 4 ([CLS] + 3 prompt placeholders"));
  modular_prompt<double> p6(s, small_mp(false, 6), 0);
  CHECK_THROWS_WITH(m.enc.forward(m.b, p6), Catch::Contains("sequence length expected >= 7"));

  // Train mode needs a generator for the router samples.
  peft::matrix<double> h = peft::matrix<double>::Zero(3, 16);
  peft::hook_context ctx;
  ctx.run_mode = peft::mode::train;
  ctx.batch_size = 1;
  ctx.time = 3;
  modular_prompt<double>::tape_type t;
  CHECK_THROWS_WITH(ok.on_layer_input(0, h, ctx, t), Catch::Contains("needs a random generator"));
  peft::matrix<double> narrow = peft::matrix<double>::Zero(3, 8);
  ctx.run_mode = peft::mode::eval;
  CHECK_THROWS_WITH(ok.on_layer_input(0, narrow, ctx, t),
                    Catch::Contains("hidden width of layer 0 expected 16, got 8"));
  ctx.time = 0;
  CHECK_THROWS_WITH(ok.on_layer_input(0, h, ctx, t), Catch::Contains("batch_size x time expected to cover"));
  // Backward without a recorded forward.
  modular_prompt<double>::tape_type empty;
  CHECK_THROWS_WITH(ok.on_layer_input_backward(0, h, empty),
                    Catch::Contains("no recorded forward for layer 0"));

  CHECK_THROWS_WITH(ok.set_task(1), Catch::Contains("task expected in [0, 1), got 1"));
  CHECK_THROWS_WITH(ok.reset_router(0), Catch::Contains("num_tasks expected >= 1, got 0"));
  CHECK_THROWS_WITH(ok.set_intrinsic(0, peft::vector<double>::Zero(3)),
                    Catch::Contains("intrinsic vector size expected 4, got 3"));
  CHECK_THROWS_WITH(ok.set_intrinsic(2, peft::vector<double>::Zero(4)),
                    Catch::Contains("slot expected in [0, 2), got 2"));
  peft::vector<double> nan_z = peft::vector<double>::Zero(4);
  nan_z[1] = std::nan("");
  CHECK_THROWS_WITH(ok.set_intrinsic(0, nan_z), Catch::Contains("expected finite"));
  modular_prompt<double> sh(s, small_mp(false), 0);
  CHECK_THROWS_WITH(sh.intrinsic(1), Catch::Contains("shallow: slot 0 only"));
}

TEST_CASE("modular prompt save/load round trip (library and materialised) and rejected checkpoints",
          "[modular_prompt][io]") {
  small_model<peft::use_lite, float> m("use_lite");
  const auto s = m.enc.shape();
  modular_prompt<float> a(s, small_mp(true, 2, 3, 4, 3, 0.5), 9);
  randomise_policy(a, 10);
  a.set_task(2);
  const auto out = m.enc.forward(m.b, a);
  const std::string dir = peft_test::scratch_dir("modular_prompt_io");

  peft::save_policy(dir, a);
  {
    const auto j = peft::read_adapter_config(dir);
    CHECK(j["peft_type"] == "MODULAR_PROMPT");
    CHECK(j["num_tasks"] == 3);
    CHECK(j["task"] == 2);
    CHECK(j["materialized"] == false);
    const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
    CHECK(f.names().size() == 4);  // router, z, A.0, A.1
    CHECK(f.info("router").shape == std::vector<std::int64_t>{3, 2, 3});
    CHECK(f.info("z").shape == std::vector<std::int64_t>{2, 3, 4});
    CHECK(f.info("A.0").shape == std::vector<std::int64_t>{4, 2 * 8});
    CHECK(f.info("A.1").shape == std::vector<std::int64_t>{4, 2 * 16});
  }
  auto b = peft::load_policy<modular_prompt<float>>(dir, s);
  CHECK(b.task() == 2);
  CHECK(b.config().temperature == 0.5);
  CHECK_FALSE(b.materialized());
  CHECK(b.router_parameters().values() == a.router_parameters().values());
  CHECK(b.prompt_parameters().values() == a.prompt_parameters().values());
  CHECK(b.projection_parameters().values() == a.projection_parameters().values());
  CHECK(m.enc.forward(m.b, b) == out);

  a.materialize();
  const auto out_mat = m.enc.forward(m.b, a);
  peft::save_policy(dir, a);
  CHECK(peft::read_adapter_config(dir)["materialized"] == true);
  auto c = peft::load_policy<modular_prompt<float>>(dir, s);
  CHECK(c.materialized());
  CHECK(c.prompt_parameters().values() == a.prompt_parameters().values());
  CHECK(m.enc.forward(m.b, c) == out_mat);

  CHECK_THROWS_WITH(peft::load_policy<peft::prefix_tuning<float>>(dir, s),
                    Catch::Contains("'peft_type' expected \"PREFIX_TUNING\", got \"MODULAR_PROMPT\""));
  small_model<peft::bert, float> other("bert");
  CHECK_THROWS_WITH(peft::load_policy<modular_prompt<float>>(dir, other.enc.shape()),
                    Catch::Contains("'model_type' expected \"bert\""));
  {
    auto j = peft::read_adapter_config(dir);
    j["num_modules"] = 5;
    std::ofstream(dir + "/adapter_config.json") << j.dump();
    CHECK_THROWS_WITH(peft::load_policy<modular_prompt<float>>(dir, s),
                      Catch::Contains("tensor 'prompt.0' shape expected [5, 16], got [3, 16]"));
    j["num_modules"] = 3;
    j["task"] = 3;
    std::ofstream(dir + "/adapter_config.json") << j.dump();
    CHECK_THROWS_WITH(peft::load_policy<modular_prompt<float>>(dir, s),
                      Catch::Contains("field 'task' expected in [0, 3), got 3"));
  }
  auto tensors = a.export_tensors();
  tensors["prompt.1"].data[2] = std::nanf("");
  CHECK_THROWS_WITH(c.import_tensors(tensors), Catch::Contains("value expected finite"));
  tensors = a.export_tensors();
  tensors["z"] = peft::tensor{{1}, {0.0f}};
  CHECK_THROWS_WITH(c.import_tensors(tensors),
                    Catch::Contains("unexpected tensor 'z' (this policy is materialised)"));
  std::filesystem::remove_all(dir);
}
