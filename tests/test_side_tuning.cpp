// SPDX-License-Identifier: Apache-2.0
// Side-tuning: α blending as in the reference, gradients by finite differences inside a real
// encoder (BERT- and USE-lite-shaped, both side-network kinds), no encoder backward, the
// cached-encoder path, checkpoints, and a run on the real USE-lite encoder.
#include "test_common.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/side_tuning.hpp>

#include "gradcheck.hpp"
#include "small_model.hpp"

using peft_test::check_gradient;
using peft_test::dot_loss;
using peft_test::random_matrix;
using peft_test::small_config;

namespace {


peft::batch small_batch(bool segments) {
  std::vector<std::vector<std::int32_t>> ids = {{2, 5, 7, 9, 11, 3}, {2, 8, 3}, {2, 13, 17, 19, 3}};
  std::vector<std::vector<std::int32_t>> seg = {{0, 0, 0, 1, 1, 1}, {0, 0, 1}, {0, 0, 0, 1, 1}};
  return peft::make_batch(ids, 0, segments ? &seg : nullptr);
}

template <typename Scalar>
peft::matrix<Scalar> loss_weights(const peft::batch& b, peft::index cols, std::uint64_t seed) {
  peft::matrix<Scalar> R = random_matrix<Scalar>(b.rows(), cols, seed);
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < b.time(); ++t)
      if (!b.mask(i, t)) R.row(i * b.time() + t).setZero();
  return R;
}

peft::side_tuning_config small_side(peft::side_network_kind kind, double dropout = 0.2) {
  peft::side_tuning_config c;
  c.side = kind;
  c.side_hidden = kind == peft::side_network_kind::mlp ? 6 : 8;
  c.side_heads = 2;
  c.side_intermediate = 12;
  c.dropout = dropout;
  c.alpha_init = 0.3;  // away from 0 so that every term of dα is exercised
  return c;
}

template <typename Arch, typename Scalar = double>
struct fixture {
  std::string type;
  peft::encoder<Arch, Scalar> enc;
  peft::batch b;
  explicit fixture(const std::string& t, double dropout = 0.2)
      : type(t),
        enc(peft::random_encoder_weights<Scalar>(small_config(t, dropout), 42)),
        b(small_batch(t != "use_lite")) {}
};

const char* kind_name(peft::side_network_kind k) { return peft::to_string(k); }

// ---------------------------------------------------------------------------------------
// Gradient checks

/// Parameters (side network and α) inside a real encoder forward/backward, train mode.
template <typename Arch>
void check_parameter_gradient(const std::string& type, peft::side_network_kind kind) {
  fixture<Arch> f(type);
  peft::side_tuning<double> p(f.enc.shape(), small_side(kind), 11);
  const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 6);
  auto loss = [&] {
    peft::rng gen(123);
    return dot_loss(f.enc.forward(f.b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, peft::side_tuning<double>> tape;
  peft::rng gen(123);
  f.enc.forward(f.b, p, peft::mode::train, &tape, &gen);
  p.parameters().zero_grad();
  f.enc.backward(R, p, tape);
  auto& v = p.parameters().values();
  const auto g = p.parameters().grads();
  auto r = check_gradient(v.data(), v.size(), g.data(), loss, 1e-6, 300);
  // α is one coordinate: check it explicitly, not by chance of sampling.
  const peft::index ia = p.parameters().block(p.parameters().find("side_tuning.alpha")).offset;
  auto ra = check_gradient(v.data() + ia, 1, g.data() + ia, loss, 1e-6);
  INFO(type << " " << kind_name(kind) << ": params max abs err " << r.max_abs_err << " rel " << r.max_rel_err
            << "; alpha abs err " << ra.max_abs_err << " (d/da = " << g[ia] << ")");
  std::printf("side_tuning FD %s %s: params max abs %.3g rel %.3g (%d coords); alpha abs %.3g rel %.3g\n",
              type.c_str(), kind_name(kind), r.max_abs_err, r.max_rel_err, r.checked, ra.max_abs_err,
              ra.max_rel_err);
  CHECK(r.max_abs_err < 1e-7);
  CHECK(ra.max_abs_err < 1e-7);
  CHECK(std::abs(g[ia]) > 1e-3);  // not vacuous
  CHECK(g.cwiseAbs().maxCoeff() > 1e-3);
}

/// Input-gradients: (1) what the hook passes back, i.e. d loss / d(encoder output), and the
/// gradient of h0 through the side network, by differences of the cached `blend`;
/// (2) the total gradient of the embedding output inside the real encoder, i.e. the
/// encoder's backward of the hook's result (stop_layer 0 forced) plus the side network's.
template <typename Arch>
void check_input_gradient(const std::string& type, peft::side_network_kind kind) {
  fixture<Arch> f(type);
  peft::side_tuning<double> p(f.enc.shape(), small_side(kind), 12);
  const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 7);

  // (1) cached path, train mode (side dropout on), perturbing base_h and h0.
  auto c = peft::side_tuning<double>::encode(f.enc, f.b);
  typename peft::side_tuning<double>::tape_type t;
  peft::rng g1(5);
  p.blend(c.base, c.h0, f.b, peft::mode::train, &g1, &t);
  peft::matrix<double> d_h0;
  auto q = p;  // its gradients are not wanted here
  const peft::matrix<double> d_base = q.blend_backward(R, t, &d_h0);
  auto loss_cached = [&] {
    peft::rng gen(5);
    return dot_loss(p.blend(c.base, c.h0, f.b, peft::mode::train, &gen), R);
  };
  auto rb = check_gradient(c.base.data(), c.base.size(), d_base.data(), loss_cached, 1e-6, 300);
  auto rh = check_gradient(c.h0.data(), c.h0.size(), d_h0.data(), loss_cached, 1e-6, 300);
  CHECK((d_base - p.alpha() * R).cwiseAbs().maxCoeff() <= 1e-14);  // alpha * dh, up to the last bit of alpha's rounding

  // (2) inside the encoder: d loss / d h0 = encoder backward of α·R + side network's d h0.
  peft::rng g0(1);
  peft::matrix<double> h0 = f.enc.embed(f.b, peft::mode::eval, &g0);
  auto loss_full = [&] {
    peft::rng gen(77);
    return dot_loss(f.enc.forward_embedded(h0, f.b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, peft::side_tuning<double>> tape;
  peft::rng gen(77);
  f.enc.forward_embedded(h0, f.b, p, peft::mode::train, &tape, &gen);
  auto p2 = p;
  peft::matrix<double> side_dh0;
  auto p3 = p;
  p3.blend_backward(R, tape.policy, &side_dh0);
  peft::matrix<double> total = f.enc.backward(R, p2, tape, 0) + side_dh0;
  auto rf = check_gradient(h0.data(), h0.size(), total.data(), loss_full, 1e-6, 300);
  INFO(type << " " << kind_name(kind) << ": d base " << rb.max_abs_err << ", d h0 (cached) " << rh.max_abs_err
            << ", d h0 (encoder) " << rf.max_abs_err);
  std::printf(
      "side_tuning FD %s %s inputs: d base abs %.3g, d h0 cached abs %.3g, d h0 via encoder abs %.3g\n",
      type.c_str(), kind_name(kind), rb.max_abs_err, rh.max_abs_err, rf.max_abs_err);
  CHECK(rb.max_abs_err < 1e-7);
  CHECK(rh.max_abs_err < 1e-7);
  CHECK(rf.max_abs_err < 1e-7);
  CHECK(d_h0.cwiseAbs().maxCoeff() > 1e-3);
  CHECK(side_dh0.cwiseAbs().maxCoeff() > 1e-3);
}

/// Wraps side-tuning and counts the encoder's backward visits below the encoder output.
template <typename Scalar>
struct counting_policy {
  using scalar_type = Scalar;
  using mat = peft::matrix<Scalar>;
  using tape_type = typename peft::side_tuning<Scalar>::tape_type;
  peft::side_tuning<Scalar>* inner;
  int layer_backward_calls = 0;
  int embedding_backward_calls = 0;

  void on_embeddings(mat&, const peft::hook_context&, tape_type&) const {}
  void on_embeddings_backward(mat&, const tape_type&) { ++embedding_backward_calls; }
  void on_layer_input(peft::index, mat&, const peft::hook_context&, tape_type&) const {}
  void on_layer_input_backward(peft::index, mat&, const tape_type&) { ++layer_backward_calls; }
  void on_encoder_output(const mat& h0, mat& h, const peft::hook_context& ctx, tape_type& t) const {
    inner->on_encoder_output(h0, h, ctx, t);
  }
  void on_encoder_output_backward(mat& dh, const tape_type& t) { inner->on_encoder_output_backward(dh, t); }
  peft::index lowest_layer(peft::index num_layers) const { return inner->lowest_layer(num_layers); }
};

}  // namespace

TEST_CASE(
    "side_tuning: parameter gradients (side network and alpha) match finite differences inside the encoder",
    "[side_tuning][grad]") {
  using K = peft::side_network_kind;
  SECTION("bert mlp") { check_parameter_gradient<peft::bert>("bert", K::mlp); }
  SECTION("bert transformer") { check_parameter_gradient<peft::bert>("bert", K::transformer); }
  SECTION("use_lite mlp") { check_parameter_gradient<peft::use_lite>("use_lite", K::mlp); }
  SECTION("use_lite transformer") { check_parameter_gradient<peft::use_lite>("use_lite", K::transformer); }
}

TEST_CASE("side_tuning: input gradients match finite differences", "[side_tuning][grad]") {
  using K = peft::side_network_kind;
  SECTION("bert mlp") { check_input_gradient<peft::bert>("bert", K::mlp); }
  SECTION("bert transformer") { check_input_gradient<peft::bert>("bert", K::transformer); }
  SECTION("use_lite mlp") { check_input_gradient<peft::use_lite>("use_lite", K::mlp); }
  SECTION("use_lite transformer") { check_input_gradient<peft::use_lite>("use_lite", K::transformer); }
}

TEST_CASE(
    "side_tuning: alpha weights the base and is sigmoid of a logit initialised to 0, as in the reference",
    "[side_tuning]") {
  fixture<peft::bert> f("bert");
  peft::side_tuning_config cfg;  // reference defaults: learned, init 0.0
  cfg.side_hidden = 6;
  peft::side_tuning<double> p(f.enc.shape(), cfg, 1);
  CHECK(p.alpha() == 0.5);
  CHECK(p.parameters().value(p.parameters().find("side_tuning.alpha"))(0, 0) == 0.0);
  auto c = peft::side_tuning<double>::encode(f.enc, f.b);
  // Side output alone: α = 0 with a fixed blend.
  peft::side_tuning_config side_only = cfg;
  side_only.alpha = peft::alpha_mode::fixed;
  side_only.alpha_fixed = 0.0;
  peft::side_tuning<double> s(f.enc.shape(), side_only, 1);
  const auto side = s.blend(c.base, c.h0, f.b);
  const auto out = p.blend(c.base, c.h0, f.b);
  CHECK((out - (0.5 * c.base + 0.5 * side)).cwiseAbs().maxCoeff() < 1e-15);
  // Another logit: α = σ(a) on the base.
  p.parameters().value(p.parameters().find("side_tuning.alpha"))(0, 0) = 1.39;  // imitation-learning config
  const double a = 1.0 / (1.0 + std::exp(-1.39));
  CHECK(p.alpha() == Approx(a).epsilon(1e-15));
  CHECK((p.blend(c.base, c.h0, f.b) - (a * c.base + (1 - a) * side)).cwiseAbs().maxCoeff() < 1e-14);
  // The hook inside the encoder produces the same blend.
  CHECK((f.enc.forward(f.b, p) - p.blend(c.base, c.h0, f.b)).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE(
    "side_tuning: the paper-described schedule decays alpha linearly, alpha = 1 leaves the encoder output "
    "unchanged",
    "[side_tuning]") {
  fixture<peft::use_lite> f("use_lite");
  peft::side_tuning_config cfg = small_side(peft::side_network_kind::transformer);
  cfg.alpha = peft::alpha_mode::schedule;
  cfg.schedule = {1.0, 0.2, 10};
  peft::side_tuning<double> p(f.enc.shape(), cfg, 3);
  CHECK(p.parameters().find("side_tuning.alpha") == -1);  // nothing to train for α
  CHECK(p.alpha() == 1.0);
  const auto plain = f.enc.forward(f.b);
  CHECK((f.enc.forward(f.b, p) - plain).cwiseAbs().maxCoeff() == 0.0);  // bitwise: step 0 trusts the base
  p.set_step(5);
  CHECK(p.alpha() == Approx(0.6).epsilon(1e-12));
  p.set_step(10);
  CHECK(p.alpha() == Approx(0.2).epsilon(1e-12));
  p.set_step(1000);
  CHECK(p.alpha() == Approx(0.2).epsilon(1e-12));
  CHECK_THROWS_AS(p.set_step(-1), peft::invalid_argument);
  p.set_step(3);
  // Gradients in schedule mode flow to the side network only, scaled by (1 - α).
  peft::encoder_tape<double, peft::side_tuning<double>> tape;
  const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 3);
  f.enc.forward(f.b, p, peft::mode::eval, &tape);
  const auto d = f.enc.backward(R, p, tape);
  CHECK((d - p.alpha() * R).cwiseAbs().maxCoeff() <= 1e-14);
  CHECK(p.parameters().grads().cwiseAbs().maxCoeff() > 0.0);

  // Fixed α = 1 is the identity too.
  peft::side_tuning_config fixed = cfg;
  fixed.alpha = peft::alpha_mode::fixed;
  fixed.alpha_fixed = 1.0;
  peft::side_tuning<double> one(f.enc.shape(), fixed, 4);
  CHECK((f.enc.forward(f.b, one) - plain).cwiseAbs().maxCoeff() == 0.0);
  peft::alpha_schedule s{0.9, 0.1, 4};
  CHECK(s.at(0) == 0.9);
  CHECK(s.at(2) == Approx(0.5));
  CHECK(s.at(4) == 0.1);
  CHECK(s.at(7) == 0.1);
}

TEST_CASE("side_tuning: lowest_layer is num_layers and training runs no encoder backward", "[side_tuning]") {
  fixture<peft::bert> f("bert");
  peft::side_tuning<double> p(f.enc.shape(), small_side(peft::side_network_kind::transformer), 5);
  CHECK(p.lowest_layer(f.enc.num_layers()) == f.enc.num_layers());
  CHECK(peft::lowest_trainable_layer(p, 7) == 7);
  STATIC_REQUIRE(peft::has_on_encoder_output_v<peft::side_tuning<double>>);
  STATIC_REQUIRE(peft::has_lowest_layer_v<peft::side_tuning<double>>);
  STATIC_REQUIRE_FALSE(peft::has_on_layer_input_v<peft::side_tuning<double>>);
  STATIC_REQUIRE_FALSE(peft::has_on_sublayer_output_v<peft::side_tuning<double>>);

  counting_policy<double> w{&p};
  const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 4);
  peft::encoder_tape<double, counting_policy<double>> tape;
  peft::rng gen(9);
  f.enc.forward(f.b, w, peft::mode::train, &tape, &gen);
  const auto d = f.enc.backward(R, w, tape);  // default stop: the policy's lowest layer
  CHECK(w.layer_backward_calls == 0);
  CHECK(w.embedding_backward_calls == 0);
  // What comes back is the gradient of the encoder output, never propagated into the encoder.
  CHECK((d - p.alpha() * R).cwiseAbs().maxCoeff() <= 1e-14);
  CHECK(p.parameters().grads().cwiseAbs().maxCoeff() > 0.0);
  // The counter works: forcing stop_layer 0 visits every layer.
  f.enc.backward(R, w, tape, 0);
  CHECK(w.layer_backward_calls == f.enc.num_layers());
  CHECK(w.embedding_backward_calls == 1);
}

TEST_CASE("side_tuning: the cached-encoder path gives the outputs and gradients of the full path",
          "[side_tuning][cache]") {
  using K = peft::side_network_kind;
  for (K kind : {K::mlp, K::transformer}) {
    INFO(kind_name(kind));
    // Eval mode: the encoder runs in eval mode in both paths (as the reference's frozen base).
    {
      fixture<peft::bert> f("bert");
      peft::side_tuning<double> p(f.enc.shape(), small_side(kind), 6);
      auto q = p;
      const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 8);
      peft::encoder_tape<double, peft::side_tuning<double>> tape;
      const auto full = f.enc.forward(f.b, p, peft::mode::eval, &tape);
      const auto d_full = f.enc.backward(R, p, tape);
      const auto c = peft::side_tuning<double>::encode(f.enc, f.b);
      typename peft::side_tuning<double>::tape_type t;
      const auto cached = q.blend(c.base, c.h0, f.b, peft::mode::eval, nullptr, &t);
      const auto d_cached = q.blend_backward(R, t);
      CHECK(cached == full);
      CHECK(d_cached == d_full);
      CHECK(q.parameters().grads() == p.parameters().grads());
    }
    // Train mode with the side network's dropout, over an encoder without dropout (so the
    // encoder's train and eval outputs agree and the generator feeds the side network only).
    {
      fixture<peft::use_lite> f("use_lite", 0.0);
      peft::side_tuning<double> p(f.enc.shape(), small_side(kind, 0.3), 6);
      auto q = p;
      const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 8);
      peft::encoder_tape<double, peft::side_tuning<double>> tape;
      peft::rng g1(21), g2(21);
      const auto full = f.enc.forward(f.b, p, peft::mode::train, &tape, &g1);
      f.enc.backward(R, p, tape);
      const auto c = peft::side_tuning<double>::encode(f.enc, f.b);
      typename peft::side_tuning<double>::tape_type t;
      const auto cached = q.blend(c.base, c.h0, f.b, peft::mode::train, &g2, &t);
      q.blend_backward(R, t);
      CHECK(cached == full);
      CHECK(q.parameters().grads() == p.parameters().grads());
      // The dropout really was on: an eval pass differs.
      CHECK((q.blend(c.base, c.h0, f.b) - cached).cwiseAbs().maxCoeff() > 1e-6);
    }
  }
}

TEST_CASE("side_tuning: the per-example cache reproduces any batch of cached examples",
          "[side_tuning][cache]") {
  fixture<peft::bert> f("bert");
  peft::side_tuning<double> p(f.enc.shape(), small_side(peft::side_network_kind::transformer), 8);
  peft::side_tuning_cache<double> cache;
  // Encode the examples in two differently padded batches ...
  std::vector<std::vector<std::int32_t>> s0 = {{2, 5, 7, 9, 11, 3}, {2, 8, 3}};
  std::vector<std::vector<std::int32_t>> s1 = {{2, 13, 17, 19, 3}};
  cache.add(f.enc, peft::make_batch(s0, 0), {10, 11});
  cache.add(f.enc, peft::make_batch(s1, 0), {12});
  CHECK(cache.size() == 3);
  CHECK(cache.contains(12));
  // ... and train on another arrangement of them.
  std::vector<std::vector<std::int32_t>> mix = {{2, 13, 17, 19, 3}, {2, 5, 7, 9, 11, 3}, {2, 8, 3}};
  const auto b = peft::make_batch(mix, 0);
  const auto c = cache.gather(b, {12, 10, 11});
  const auto direct = f.enc.forward(b, p);
  const auto cached = p.blend(c.base, c.h0, b);
  double worst = 0;
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < b.time(); ++t)
      if (b.mask(i, t))
        worst = std::max(worst,
                         (direct.row(i * b.time() + t) - cached.row(i * b.time() + t)).cwiseAbs().maxCoeff());
  INFO("max abs diff on real tokens " << worst);
  CHECK(worst < 1e-12);
  CHECK_THROWS_WITH(cache.gather(b, {12, 10, 99}), Catch::Contains("example id 99 not in the cache"));
  CHECK_THROWS_WITH(cache.gather(b, {10, 12, 11}), Catch::Contains("example id 10 length expected 6"));
  CHECK_THROWS_AS(cache.add(f.enc, b, {1, 2}), peft::invalid_argument);
}

TEST_CASE("side_tuning: parameters() holds exactly the side network's blocks and alpha",
          "[side_tuning][params]") {
  fixture<peft::use_lite> f("use_lite");
  const peft::index E = 8, H = 16;
  {
    auto cfg = small_side(peft::side_network_kind::mlp);  // hidden 6
    peft::side_tuning<double> p(f.enc.shape(), cfg, 1);
    std::vector<std::pair<std::string, peft::index>> want = {{"side_tuning.alpha", 1},
                                                             {"side_tuning.side.mlp.fc1.weight", 6 * E},
                                                             {"side_tuning.side.mlp.fc1.bias", 6},
                                                             {"side_tuning.side.mlp.fc2.weight", H * 6},
                                                             {"side_tuning.side.mlp.fc2.bias", H}};
    REQUIRE(p.parameters().num_blocks() == static_cast<peft::index>(want.size()));
    peft::index total = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      CHECK(p.parameters().block(static_cast<peft::index>(i)).name == want[i].first);
      CHECK(p.parameters().block(static_cast<peft::index>(i)).size() == want[i].second);
      total += want[i].second;
    }
    CHECK(p.num_parameters() == total);
    CHECK(p.parameters().block(0).group == peft::param_group::bias);  // α: no weight decay
    CHECK(p.backbone_share() == Approx(double(total) / double(f.enc.shape().backbone_parameters)));
    cfg.alpha = peft::alpha_mode::fixed;
    peft::side_tuning<double> fixed(f.enc.shape(), cfg, 1);
    CHECK(fixed.num_parameters() == total - 1);
    CHECK(fixed.parameters().find("side_tuning.alpha") == -1);
  }
  {
    auto cfg = small_side(peft::side_network_kind::transformer);  // d 8, ffn 12
    peft::side_tuning<double> p(f.enc.shape(), cfg, 1);
    const std::string t = "side_tuning.side.transformer.";
    std::vector<std::pair<std::string, peft::index>> want = {
        {"side_tuning.alpha", 1},
        {t + "input.weight", 8 * E},
        {t + "input.bias", 8},
        {t + "layer.attention.self.query.weight", 64},
        {t + "layer.attention.self.query.bias", 8},
        {t + "layer.attention.self.key.weight", 64},
        {t + "layer.attention.self.key.bias", 8},
        {t + "layer.attention.self.value.weight", 64},
        {t + "layer.attention.self.value.bias", 8},
        {t + "layer.attention.output.dense.weight", 64},
        {t + "layer.attention.output.dense.bias", 8},
        {t + "layer.attention.output.LayerNorm.weight", 8},
        {t + "layer.attention.output.LayerNorm.bias", 8},
        {t + "layer.intermediate.dense.weight", 12 * 8},
        {t + "layer.intermediate.dense.bias", 12},
        {t + "layer.output.dense.weight", 8 * 12},
        {t + "layer.output.dense.bias", 8},
        {t + "layer.output.LayerNorm.weight", 8},
        {t + "layer.output.LayerNorm.bias", 8},
        {t + "output.weight", H * 8},
        {t + "output.bias", H}};
    REQUIRE(p.parameters().num_blocks() == static_cast<peft::index>(want.size()));
    peft::index total = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      CHECK(p.parameters().block(static_cast<peft::index>(i)).name == want[i].first);
      CHECK(p.parameters().block(static_cast<peft::index>(i)).size() == want[i].second);
      total += want[i].second;
    }
    CHECK(p.num_parameters() == total);
    CHECK(p.parameters().block(p.parameters().find(t + "layer.output.LayerNorm.weight")).group ==
          peft::param_group::norm);
    CHECK(p.parameters().value(p.parameters().find(t + "layer.output.LayerNorm.weight")).isOnes());
    // PyTorch nn.Linear default init: |w| <= 1/sqrt(fan_in).
    CHECK(p.parameters().value(p.parameters().find(t + "input.weight")).cwiseAbs().maxCoeff() <=
          1.0 / std::sqrt(double(E)));
  }
}

TEST_CASE("side_tuning: SGD steps change only the policy's values, the frozen weights stay bitwise equal",
          "[side_tuning][frozen]") {
  fixture<peft::bert> f("bert");
  const peft::encoder_weights<double> before = f.enc.weights();
  peft::side_tuning<double> p(f.enc.shape(), small_side(peft::side_network_kind::transformer), 9);
  const auto cfg_before = p.config_json();
  const auto values_before = p.parameters().values();
  const auto R = loss_weights<double>(f.b, f.enc.hidden_size(), 10);
  for (int step = 0; step < 3; ++step) {
    peft::encoder_tape<double, peft::side_tuning<double>> tape;
    peft::rng gen(static_cast<std::uint64_t>(step));
    f.enc.forward(f.b, p, peft::mode::train, &tape, &gen);
    p.parameters().zero_grad();
    f.enc.backward(R, p, tape);
    p.parameters().values() -= 0.1 * p.parameters().grads();
  }
  const auto& now = f.enc.weights();
  CHECK(now.word_embeddings == before.word_embeddings);
  CHECK(now.position_embeddings == before.position_embeddings);
  CHECK(now.token_type_embeddings == before.token_type_embeddings);
  CHECK(now.embedding_norm.gamma == before.embedding_norm.gamma);
  for (std::size_t l = 0; l < before.layers.size(); ++l) {
    const auto &a = now.layers[l], &b = before.layers[l];
    CHECK(a.query.weight == b.query.weight);
    CHECK(a.key.weight == b.key.weight);
    CHECK(a.value.weight == b.value.weight);
    CHECK(a.attn_out.weight == b.attn_out.weight);
    CHECK(a.ffn_in.weight == b.ffn_in.weight);
    CHECK(a.ffn_out.weight == b.ffn_out.weight);
    CHECK(a.ffn_out.bias == b.ffn_out.bias);
    CHECK(a.attn_norm.gamma == b.attn_norm.gamma);
    CHECK(a.ffn_norm.beta == b.ffn_norm.beta);
  }
  CHECK(p.config_json() == cfg_before);  // hyper-parameters and encoder shape untouched
  CHECK(p.parameters().values() != values_before);
  // Every block moved (α too).
  for (peft::index i = 0; i < p.parameters().num_blocks(); ++i) {
    const auto& blk = p.parameters().block(i);
    INFO(blk.name);
    CHECK((p.parameters().values().segment(blk.offset, blk.size()) -
           values_before.segment(blk.offset, blk.size()))
              .cwiseAbs()
              .maxCoeff() > 0.0);
  }
}

TEST_CASE("side_tuning: copies are independent", "[side_tuning]") {
  fixture<peft::bert> f("bert");
  peft::side_tuning<double> p(f.enc.shape(), small_side(peft::side_network_kind::mlp), 9);
  const auto out = f.enc.forward(f.b, p);
  auto q = p;
  q.parameters().values().setConstant(0.25);
  q.parameters().grads().setConstant(1.0);
  q.set_step(7);
  CHECK(f.enc.forward(f.b, p) == out);
  CHECK(p.parameters().grads().isZero());
  CHECK(p.step() == 0);
  CHECK(q.parameters().values().data() != p.parameters().values().data());
}

TEST_CASE("side_tuning: bad hyper-parameters and bad inputs throw naming the field",
          "[side_tuning][errors]") {
  fixture<peft::bert> f("bert");
  const auto shape = f.enc.shape();
  auto bad = [&](auto mutate, const char* what) {
    peft::side_tuning_config c = small_side(peft::side_network_kind::transformer);
    mutate(c);
    CHECK_THROWS_WITH(peft::side_tuning<double>(shape, c, 0), Catch::Contains(what));
  };
  bad([](auto& c) { c.side_hidden = 0; }, "side_hidden expected > 0, got 0");
  bad([](auto& c) { c.side_heads = 3; }, "side_heads expected a divisor of side_hidden 8, got 3");
  bad([](auto& c) { c.side_intermediate = -1; }, "side_intermediate expected > 0");
  bad([](auto& c) { c.dropout = 1.0; }, "dropout expected in [0, 1)");
  bad([](auto& c) { c.layer_norm_eps = 0; }, "layer_norm_eps expected > 0");
  bad([](auto& c) { c.alpha_init = std::nan(""); }, "alpha_init expected finite");
  bad(
      [](auto& c) {
        c.alpha = peft::alpha_mode::fixed;
        c.alpha_fixed = 1.5;
      },
      "alpha_fixed expected in [0, 1]");
  bad(
      [](auto& c) {
        c.alpha = peft::alpha_mode::schedule;
        c.schedule.steps = 0;
      },
      "schedule.steps expected > 0");
  bad(
      [](auto& c) {
        c.alpha = peft::alpha_mode::schedule;
        c.schedule.end = -0.1;
      },
      "schedule.end expected in [0, 1]");
  peft::encoder_shape empty;
  CHECK_THROWS_WITH(peft::side_tuning<double>(empty, {}, 0), Catch::Contains("num_layers expected > 0"));

  peft::side_tuning<double> p(shape, small_side(peft::side_network_kind::transformer), 0);
  auto c = peft::side_tuning<double>::encode(f.enc, f.b);
  peft::matrix<double> wrong(c.h0.rows(), 3);
  CHECK_THROWS_WITH(p.blend(c.base, wrong, f.b),
                    Catch::Contains("side_tuning::blend: h0 shape expected [18, 16], got [18, 3]"));
  CHECK_THROWS_WITH(p.blend(wrong, c.h0, f.b),
                    Catch::Contains("encoder output shape expected [18, 16], got [18, 3]"));
  CHECK_THROWS_WITH(p.blend(c.base, c.h0, f.b, peft::mode::train),
                    Catch::Contains("needs a random generator"));
  typename peft::side_tuning<double>::tape_type empty_tape;
  CHECK_THROWS_WITH(p.blend_backward(c.base, empty_tape), Catch::Contains("tape is empty"));
  typename peft::side_tuning<double>::tape_type t;
  p.blend(c.base, c.h0, f.b, peft::mode::eval, nullptr, &t);
  CHECK_THROWS_WITH(p.blend_backward(wrong, t),
                    Catch::Contains("gradient shape expected [18, 16], got [18, 3]"));
}

TEST_CASE("side_tuning: save -> load reproduces the outputs bit for bit, mismatched checkpoints are rejected",
          "[side_tuning][checkpoint]") {
  namespace fs = std::filesystem;
  fixture<peft::bert, float> f("bert");
  const std::string root = peft_test::scratch_dir("side_tuning");
  using K = peft::side_network_kind;
  for (K kind : {K::mlp, K::transformer}) {
    for (auto am : {peft::alpha_mode::learned, peft::alpha_mode::schedule}) {
      INFO(kind_name(kind) << " " << peft::to_string(am));
      auto cfg = small_side(kind);
      cfg.alpha = am;
      cfg.schedule = {0.9, 0.3, 20};
      peft::side_tuning<float> p(f.enc.shape(), cfg, 17);
      p.set_step(4);
      // Train a step so the values are not the initial ones.
      peft::encoder_tape<float, peft::side_tuning<float>> tape;
      peft::rng gen(2);
      f.enc.forward(f.b, p, peft::mode::train, &tape, &gen);
      f.enc.backward(loss_weights<float>(f.b, f.enc.hidden_size(), 3), p, tape);
      p.parameters().values() -= 0.05f * p.parameters().grads();
      const std::string dir = root + "/" + kind_name(kind) + "_" + peft::to_string(am);
      peft::save_policy(dir, p);
      auto q = peft::load_policy<peft::side_tuning<float>>(dir, f.enc.shape());
      CHECK(q.parameters().values() == p.parameters().values());
      CHECK(q.config_json() == p.config_json());
      CHECK(q.alpha() == p.alpha());
      CHECK(f.enc.forward(f.b, q) == f.enc.forward(f.b, p));
      const auto cfg_json = nlohmann::json::parse(peft_test::read_text(dir + "/adapter_config.json"));
      CHECK(cfg_json["peft_type"] == "SIDE_TUNING");
      CHECK(cfg_json["side_network"] == kind_name(kind));
    }
  }

  // Another encoder shape: the hidden size is named.
  peft::side_tuning<float> p(f.enc.shape(), small_side(K::mlp), 1);
  const std::string dir = root + "/mlp_default";
  peft::save_policy(dir, p);
  auto other_cfg = small_config("bert");
  other_cfg.hidden_size = 24;
  other_cfg.embedding_size = 24;
  peft::encoder<peft::bert, float> other(peft::random_encoder_weights<float>(other_cfg, 1));
  CHECK_THROWS_WITH(peft::load_policy<peft::side_tuning<float>>(dir, other.shape()),
                    Catch::Contains("field 'hidden_size' expected 24 (encoder), got 16 (checkpoint)"));
  auto layers_cfg = small_config("bert");
  layers_cfg.num_layers = 3;
  peft::encoder<peft::bert, float> deeper(peft::random_encoder_weights<float>(layers_cfg, 1));
  CHECK_THROWS_WITH(peft::load_policy<peft::side_tuning<float>>(dir, deeper.shape()),
                    Catch::Contains("field 'num_layers' expected 3 (encoder), got 2 (checkpoint)"));
  peft::encoder<peft::use_lite, float> lite(peft::random_encoder_weights<float>(small_config("use_lite"), 1));
  CHECK_THROWS_WITH(peft::load_policy<peft::side_tuning<float>>(dir, lite.shape()),
                    Catch::Contains("field 'model_type' expected \"use_lite\""));

  // Another method.
  auto j = nlohmann::json::parse(peft_test::read_text(dir + "/adapter_config.json"));
  j["peft_type"] = "LORA";
  { std::ofstream(dir + "/adapter_config.json") << j.dump(2); }
  CHECK_THROWS_WITH(peft::load_policy<peft::side_tuning<float>>(dir, f.enc.shape()),
                    Catch::Contains("'peft_type' expected \"SIDE_TUNING\", got \"LORA\""));
  CHECK_THROWS_WITH(peft::side_tuning<float>::from_config(j, f.enc.shape()),
                    Catch::Contains("field 'peft_type' expected \"SIDE_TUNING\", got \"LORA\""));

  // A config saying transformer over mlp tensors: the tensor set is checked.
  j["peft_type"] = "SIDE_TUNING";
  j["side_network"] = "transformer";
  j["side_hidden_size"] = 8;
  { std::ofstream(dir + "/adapter_config.json") << j.dump(2); }
  CHECK_THROWS_WITH(peft::load_policy<peft::side_tuning<float>>(dir, f.enc.shape()),
                    Catch::Contains("missing tensor 'side_tuning.side.transformer"));
  // Bad values in the json name the field.
  auto k = p.config_json();
  k["alpha_mode"] = "cosine";
  CHECK_THROWS_WITH(peft::side_tuning<float>::from_config(k, f.enc.shape()),
                    Catch::Contains("field 'alpha_mode'"));
  k = p.config_json();
  k["side_hidden_size"] = "big";
  CHECK_THROWS_WITH(peft::side_tuning<float>::from_config(k, f.enc.shape()),
                    Catch::Contains("field 'side_hidden_size' expected an integer"));
  k = p.config_json();
  k["side_dropout"] = 2.0;
  CHECK_THROWS_WITH(peft::side_tuning<float>::from_config(k, f.enc.shape()),
                    Catch::Contains("dropout expected in [0, 1), got 2"));
  fs::remove_all(root);
}

TEST_CASE("side_tuning on the real USE-lite encoder: forward, backward, one step lowers the loss",
          "[side_tuning][use_lite]") {
  peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(peft_test::use_lite_dir()));
  std::vector<std::vector<std::int32_t>> ids = {
      {5, 17, 230, 41, 9, 88, 6}, {12, 300, 44}, {7, 7, 1000, 2000, 31}};
  const auto b = peft::make_batch(ids, 0);
  using K = peft::side_network_kind;
  const auto c = peft::side_tuning<float>::encode(enc, b);  // cached once, reused below
  for (K kind : {K::mlp, K::transformer}) {
    INFO(kind_name(kind));
    peft::side_tuning_config cfg;
    cfg.side = kind;
    cfg.side_hidden = 32;
    cfg.side_heads = 4;
    cfg.side_intermediate = 64;
    peft::side_tuning<float> p(enc.shape(), cfg, 3);
    CHECK(p.parameters().block(1).cols == 256);  // the side network reads USE-lite's 256-wide embeddings
    const auto target = random_matrix<float>(b.rows(), enc.hidden_size(), 4, 0.05);
    auto loss_of = [&](const peft::matrix<float>& out) {
      double l = 0;
      for (peft::index i = 0; i < b.size(); ++i)
        for (peft::index t = 0; t < b.time(); ++t)
          if (b.mask(i, t))
            l += 0.5 * (out.row(i * b.time() + t) - target.row(i * b.time() + t)).squaredNorm();
      return l;
    };
    peft::encoder_tape<float, peft::side_tuning<float>> tape;
    const auto out = enc.forward(b, p, peft::mode::eval, &tape);
    const double before = loss_of(out);
    peft::matrix<float> d = out - target;
    for (peft::index i = 0; i < b.size(); ++i)
      for (peft::index t = 0; t < b.time(); ++t)
        if (!b.mask(i, t)) d.row(i * b.time() + t).setZero();
    const auto back = enc.backward(d, p, tape);
    CHECK((back - p.alpha() * d).cwiseAbs().maxCoeff() == 0.0f);
    // The cached path agrees with the hook path on the real encoder.
    CHECK(p.blend(c.base, c.h0, b) == out);
    // A short step along the normalised gradient (the loss sums over 15 x 512 outputs).
    const float gnorm = p.parameters().grads().norm();
    REQUIRE(gnorm > 0.0f);
    p.parameters().values() -= (1e-2f / gnorm) * p.parameters().grads();
    const double after = loss_of(p.blend(c.base, c.h0, b));
    std::printf("side_tuning real USE-lite %s: %lld params (%.4f%% of %lld), loss %.6f -> %.6f\n",
                kind_name(kind), static_cast<long long>(p.num_parameters()), 100.0 * p.backbone_share(),
                static_cast<long long>(enc.shape().backbone_parameters), before, after);
    CHECK(after < before);
  }
}
