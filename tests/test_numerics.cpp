// SPDX-License-Identifier: Apache-2.0
// Numeric-fault detection: the check-mode switch, the encoder's named checks (forward and
// backward), the always-on checks of what a policy injects, and that no NaN is ever turned
// into silent zeros (losses and clip_grad_norm throw instead).
#include <peft/core/numerics.hpp>
#include <peft/optim/clip.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/compose.hpp>
#include <peft/policies/lora.hpp>
#include <peft/ops/losses.hpp>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "probe_policy.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

namespace {

template <typename Scalar>
constexpr Scalar nan_v = std::numeric_limits<Scalar>::quiet_NaN();
template <typename Scalar>
constexpr Scalar inf_v = std::numeric_limits<Scalar>::infinity();

/// The message of the numeric_error `f` throws ("" when it throws nothing).
template <typename F>
std::string numeric_message(F&& f) {
  try {
    f();
  } catch (const peft::numeric_error& e) {
    return e.what();
  }
  return "";
}

/// Bitwise equality of two matrices (NaN-safe, distinguishes -0 from +0).
template <typename Derived1, typename Derived2>
bool bitwise_equal(const Eigen::DenseBase<Derived1>& a, const Eigen::DenseBase<Derived2>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (peft::index r = 0; r < a.rows(); ++r)
    for (peft::index c = 0; c < a.cols(); ++c) {
      const auto x = a(r, c);
      const auto y = b(r, c);
      if (std::memcmp(&x, &y, sizeof(x)) != 0) return false;
    }
  return true;
}

/// Small encoder weights (no dropout) that a test may corrupt before building the encoder.
template <typename Scalar>
std::shared_ptr<peft::encoder_weights<Scalar>> weights(const std::string& type, std::uint64_t seed = 42) {
  return peft::random_encoder_weights<Scalar>(peft_test::small_config(type, 0.0), seed);
}

peft::batch batch_for(const std::string& type) {
  return peft_test::small_batch(type == "roberta" ? 1 : 0, type != "use_lite");
}

/// Cross-entropy of a linear probe on each sequence's first token (what a classifier does).
template <typename Scalar>
Scalar probe_loss(const peft::matrix<Scalar>& h, const peft::batch& b) {
  const peft::matrix<Scalar> head = peft_test::random_matrix<Scalar>(h.cols(), 3, 5);
  peft::matrix<Scalar> cls(b.size(), h.cols());
  for (peft::index i = 0; i < b.size(); ++i) cls.row(i) = h.row(i * b.time());
  const peft::matrix<Scalar> logits = cls * head;
  std::vector<int> labels(static_cast<std::size_t>(b.size()), 1);
  peft::matrix<Scalar> d_logits;
  return peft::cross_entropy(logits, labels, d_logits);
}

}  // namespace

TEST_CASE("the check-mode switch: set, scope, default", "[numerics]") {
  peft::numerics_check_scope outer(false);
  CHECK_FALSE(peft::check_numerics());
  {
    peft::numerics_check_scope on;
    CHECK(peft::check_numerics());
    {
      peft::numerics_check_scope off(false);
      CHECK_FALSE(peft::check_numerics());
    }
    CHECK(peft::check_numerics());
  }
  CHECK_FALSE(peft::check_numerics());
  peft::set_check_numerics(true);
  CHECK(peft::check_numerics());
  peft::set_check_numerics(false);
  CHECK_FALSE(peft::check_numerics());
}

TEMPLATE_TEST_CASE("check_finite names the tensor, NaN or which infinity, and the entry", "[numerics]", float,
                   double) {
  peft::matrix<TestType> m = peft::matrix<TestType>::Ones(3, 4);
  CHECK_NOTHROW(peft::detail::check_finite(m, "f: x"));
  m(1, 2) = nan_v<TestType>;
  m(2, 0) = inf_v<TestType>;  // later in row-major order: not the one reported
  CHECK_THROWS_WITH(
      peft::detail::check_finite(m, "encoder::forward: layer 3 attention scores"),
      Equals("encoder::forward: layer 3 attention scores: expected finite, got NaN at row 1, column 2"));
  m(1, 2) = 0;
  CHECK_THROWS_WITH(peft::detail::check_finite(m, "w: t"),
                    Equals("w: t: expected finite, got +Inf at row 2, column 0"));
  m(2, 0) = -inf_v<TestType>;
  CHECK_THROWS_AS(peft::detail::check_finite(m, "w: t"), peft::numeric_error);
  CHECK_THROWS_WITH(peft::detail::check_finite(m, "w: t"),
                    Equals("w: t: expected finite, got -Inf at row 2, column 0"));
  // Expressions and blocks are checked in place.
  CHECK_NOTHROW(peft::detail::check_finite(m.topRows(2), "w: t"));
}

TEMPLATE_TEST_CASE(
    "a NaN in a frozen weight of layer 1 is named by layer and op in check mode, and is never zeroed",
    "[numerics][encoder]", float, double) {
  for (const std::string type : {"bert", "use_lite"}) {
    DYNAMIC_SECTION(type) {
      auto w = weights<TestType>(type);
      w->layers[1].ffn_in.weight(3, 5) = nan_v<TestType>;
      const auto b = batch_for(type);
      auto run = [&](const auto& enc) {
        {
          peft::numerics_check_scope on;
          CHECK_THROWS_WITH(
              enc.forward(b),
              Equals("encoder::forward: layer 1 ffn_in output: expected finite, got NaN at row 0, "
                     "column 3 (the frozen ffn_in weight holds NaN at row 3, column 5)"));
        }
        // Check mode off: the forward runs through, the NaN reaches the output (it is not
        // zeroed anywhere on the way) and the loss refuses it.
        peft::numerics_check_scope off(false);
        peft::matrix<TestType> h;
        REQUIRE_NOTHROW(h = enc.forward(b));
        CHECK_FALSE(h.allFinite());
        CHECK(h.array().isNaN().all());  // LayerNorm spreads the NaN over every feature of every token
        CHECK_THROWS_AS(probe_loss(h, b), peft::numeric_error);
        CHECK_THROWS_WITH(probe_loss(h, b), Contains("cross_entropy: loss is NaN at example 0"));
      };
      if (type == "bert")
        run(peft::encoder<peft::bert, TestType>(w));
      else
        run(peft::encoder<peft::use_lite, TestType>(w));
    }
  }
}

TEST_CASE("check mode names every kind of forward op", "[numerics][encoder]") {
  peft::numerics_check_scope on;
  const auto b = batch_for("bert");
  auto message_with = [&](auto corrupt) {
    auto w = weights<double>("bert");
    corrupt(*w);
    peft::encoder<peft::bert, double> enc(w);
    return numeric_message([&] { enc.forward(b); });
  };
  CHECK_THAT(
      message_with([](auto& w) { w.word_embeddings(5, 2) = nan_v<double>; }),
      Contains(
          "encoder::embed: embedding sum (word + position + segment): expected finite, got NaN at row 1"));
  CHECK_THAT(message_with([](auto& w) { w.embedding_norm.gamma(4) = inf_v<double>; }),
             Contains("encoder::embed: embedding LayerNorm output: expected finite, got "));
  CHECK_THAT(message_with([](auto& w) { w.embedding_norm.gamma(4) = inf_v<double>; }),
             Contains("Inf at row 0, column 4"));
  CHECK_THAT(message_with([](auto& w) { w.layers[0].key.bias(1) = -inf_v<double>; }),
             Equals("encoder::forward: layer 0 key output: expected finite, got -Inf at row 0, column 1 "
                    "(the frozen key bias holds -Inf at row 1)"));
  CHECK_THAT(
      message_with([](auto& w) { w.layers[1].attn_out.weight(0, 0) = nan_v<double>; }),
      Contains("encoder::forward: layer 1 attn_out output: expected finite, got NaN at row 0, column 0 "
               "(the frozen attn_out weight holds NaN"));
  CHECK_THAT(
      message_with([](auto& w) { w.layers[0].attn_norm.beta(7) = nan_v<double>; }),
      Equals("encoder::forward: layer 0 attention residual + LayerNorm output: expected finite, got NaN at "
             "row 0, column 7"));
  CHECK_THAT(message_with([](auto& w) { w.layers[1].ffn_norm.gamma(2) = inf_v<double>; }),
             Contains("encoder::forward: layer 1 FFN residual + LayerNorm output: expected finite, got "));
}

TEST_CASE("check mode names attention scores that overflow from finite projections", "[numerics][encoder]") {
  // Query and key feature 0 scaled by 1e20: both projections stay finite in float, their
  // product (~1e40) does not.
  auto w = weights<float>("bert");
  auto& L = w->layers[0];
  L.query.weight.row(0).setZero();
  L.key.weight.row(0).setZero();
  L.query.weight(0, 0) = 1e20f;
  L.key.weight(0, 0) = 1e20f;
  peft::encoder<peft::bert, float> enc(w);
  const auto b = batch_for("bert");
  {
    peft::numerics_check_scope on;
    const std::string msg = numeric_message([&] { enc.forward(b); });
    CHECK_THAT(msg, Contains("encoder::forward: layer 0 attention scores: expected finite, got "));
    CHECK_THAT(msg, Contains("Inf at sequence 0, head 0, query "));
  }
  peft::numerics_check_scope off(false);
  peft::matrix<float> h;
  REQUIRE_NOTHROW(h = enc.forward(b));
  CHECK_FALSE(h.allFinite());
  CHECK_THROWS_AS(probe_loss(h, b), peft::numeric_error);
}

TEMPLATE_TEST_CASE("an Inf in a LoRA or bottleneck-adapter weight is named in check mode",
                   "[numerics][policy]", float, double) {
  const auto b = batch_for("bert");
  peft::encoder<peft::bert, TestType> enc(weights<TestType>("bert"));

  SECTION("LoRA: the on_linear output of layer 1's value projection") {
    peft::lora<TestType> p(enc.shape(), peft::lora_config{}, 3);
    const peft::index blk =
        p.parameters().find("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight");
    REQUIRE(blk >= 0);
    p.parameters().value(blk)(2, 0) = inf_v<TestType>;
    {
      peft::numerics_check_scope on;
      const std::string msg = numeric_message([&] { enc.forward(b, p); });
      CHECK_THAT(msg,
                 Contains("encoder::forward: layer 1 value: policy on_linear output: expected finite, got "));
      CHECK_THAT(msg, Contains("Inf at row 0, column 2"));
    }
    peft::numerics_check_scope off(false);
    peft::matrix<TestType> h;
    REQUIRE_NOTHROW(h = enc.forward(b, p));
    CHECK_THROWS_AS(probe_loss(h, b), peft::numeric_error);
  }
  SECTION("bottleneck adapter: the FFN sub-layer hook of layer 1") {
    auto cfg = peft::bottleneck_config::pfeiffer(4);
    peft::bottleneck_adapter<TestType> p(enc.shape(), cfg, 3);
    const auto& blocks = p.parameters().blocks();
    peft::index blk = -1;
    for (std::size_t i = 0; i < blocks.size(); ++i)
      if (blocks[i].name.find("layer.1.") != std::string::npos &&
          blocks[i].group == peft::param_group::weight) {
        blk = static_cast<peft::index>(i);
        break;
      }
    REQUIRE(blk >= 0);
    INFO(blocks[static_cast<std::size_t>(blk)].name);
    p.parameters().value(blk)(0, 0) = inf_v<TestType>;
    peft::numerics_check_scope on;
    CHECK_THAT(
        numeric_message([&] { enc.forward(b, p); }),
        Contains("encoder::forward: layer 1 FFN: policy on_sublayer_output (post_dropout) output: expected "
                 "finite, got "));
  }
}

TEST_CASE("what a policy injects is always checked, check mode or not", "[numerics][policy]") {
  peft::numerics_check_scope off(false);
  const auto b = batch_for("bert");
  peft::encoder<peft::bert, double> enc(weights<double>("bert"));
  const auto s = enc.shape();

  SECTION("the h0 given to forward_embedded") {
    auto p = peft_test::make_probe<double>(s, 2, 7);
    peft::matrix<double> h0 = enc.embed(b);
    h0(4, 1) = nan_v<double>;
    CHECK_THROWS_WITH(enc.forward_embedded(h0, b, p),
                      Equals("encoder::forward_embedded: h0: expected finite, got NaN at row 4, column 1"));
  }
  SECTION("on_embeddings output") {
    auto p = peft_test::make_probe<double>(s, 2, 7);
    p.theta()[3] = nan_v<double>;  // the embeddings bias comes first
    CHECK_THROWS_WITH(
        enc.forward(b, p),
        Equals("encoder::forward: policy on_embeddings output: expected finite, got NaN at row 0, column 3"));
  }
  SECTION("on_layer_input output") {
    auto p = peft_test::make_probe<double>(s, 2, 7);
    p.theta()[s.embedding_size + 2] = -inf_v<double>;  // then layer 0's input bias
    CHECK_THROWS_WITH(enc.forward(b, p),
                      Equals("encoder::forward: layer 0 policy on_layer_input output: expected "
                             "finite, got -Inf at row 0, column 2"));
  }
  SECTION("kv_prefix vectors") {
    auto p = peft_test::make_probe<double>(s, 2, 7);
    p.theta()[s.embedding_size + s.input_width[0] + 1] = inf_v<double>;  // then layer 0's prefix keys
    CHECK_THROWS_WITH(enc.forward(b, p),
                      Equals("encoder::forward: layer 0 prefix keys (policy kv_prefix output): "
                             "expected finite, got +Inf at row 0, column 1"));
  }
}

TEST_CASE("a NaN gradient coming back into backward is named in check mode, and is never zeroed",
          "[numerics][backward]") {
  const auto b = batch_for("bert");
  peft::encoder<peft::bert, double> enc(weights<double>("bert"));
  peft::lora<double> p(enc.shape(), peft::lora_config{}, 3);
  peft::encoder_tape<double, peft::lora<double>> tape;
  enc.forward(b, p, peft::mode::eval, &tape);
  peft::matrix<double> d_out = peft_test::loss_weights<double>(b, enc.hidden_size(), 11);

  SECTION("the output gradient itself") {
    d_out(2, 3) = nan_v<double>;
    {
      peft::numerics_check_scope on;
      CHECK_THROWS_WITH(
          enc.backward(d_out, p, tape),
          Equals("encoder::backward: output gradient (d_out): expected finite, got NaN at row 2, column 3"));
    }
    // Check mode off: backward runs through and the NaN reaches both the input gradient and
    // the policy's gradients; clipping then refuses them and leaves them as they are.
    peft::numerics_check_scope off(false);
    p.parameters().zero_grad();
    peft::matrix<double> dh;
    REQUIRE_NOTHROW(dh = enc.backward(d_out, p, tape, 0));
    CHECK(dh.array().isNaN().any());
    CHECK(p.parameters().grads().array().isNaN().any());
    const peft::vector<double> before = p.parameters().grads();
    peft::parameter_set<double> set(p.parameters());
    CHECK_THROWS_AS(peft::clip_grad_norm(set, 1.0), peft::numeric_error);
    CHECK(bitwise_equal(p.parameters().grads(), before));
  }
  SECTION("the policy's parameter gradients, when the policy exposes them") {
    const peft::index blk =
        p.parameters().find("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight");
    REQUIRE(blk >= 0);
    p.parameters().grad(blk)(1, 4) = nan_v<double>;
    {
      peft::numerics_check_scope on;
      CHECK_THROWS_WITH(enc.backward(d_out, p, tape),
                        Equals("encoder::backward: gradient of parameter "
                               "'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight': "
                               "expected finite, got "
                               "NaN at row 1, column 4"));
    }
    peft::numerics_check_scope off(false);
    CHECK_NOTHROW(enc.backward(d_out, p, tape));
  }
}

TEST_CASE("check mode reaches the parameter gradients of a composed policy", "[numerics][backward]") {
  const auto b = batch_for("bert");
  peft::encoder<peft::bert, double> enc(weights<double>("bert"));
  using L = peft::lora<double>;
  using A = peft::bottleneck_adapter<double>;
  peft::compose<L, A> p(L(enc.shape(), peft::lora_config{}, 3),
                        A(enc.shape(), peft::bottleneck_config::pfeiffer(4), 4));
  peft::encoder_tape<double, peft::compose<L, A>> tape;
  enc.forward(b, p, peft::mode::eval, &tape);
  const peft::matrix<double> d_out = peft_test::loss_weights<double>(b, enc.hidden_size(), 11);
  auto& store = p.get<1>().parameters();
  store.grads()[store.size() - 1] = -inf_v<double>;
  const auto& last = store.block(store.num_blocks() - 1);
  peft::numerics_check_scope on;
  const std::string msg = numeric_message([&] { enc.backward(d_out, p, tape); });
  CHECK_THAT(msg, Contains("encoder::backward: gradient of parameter '" + last.name +
                           "': expected finite, got -Inf"));
}

namespace {
/// Identity in the forward pass; its backward hook puts a NaN into the gradient of layer 1's
/// FFN output (pre-dropout), as a buggy policy would.
struct nan_backward_policy {
  using scalar_type = double;
  void on_sublayer_output(peft::index, peft::sublayer, peft::placement, peft::matrix<double>&,
                          const peft::hook_context&, peft::detail::empty_tape&) const {}
  void on_sublayer_output_backward(peft::index l, peft::sublayer s, peft::placement p,
                                   peft::matrix<double>& dh, const peft::detail::empty_tape&) {
    if (l == 1 && s == peft::sublayer::ffn && p == peft::placement::pre_dropout) dh(4, 6) = nan_v<double>;
  }
};
}  // namespace

TEST_CASE("a NaN gradient made inside backward is named by layer and hook in check mode",
          "[numerics][backward]") {
  const auto b = batch_for("bert");
  peft::encoder<peft::bert, double> enc(weights<double>("bert"));
  nan_backward_policy p;
  peft::encoder_tape<double, nan_backward_policy> tape;
  const peft::matrix<double> h = enc.forward(b, p, peft::mode::eval, &tape);
  const peft::matrix<double> d_out = peft_test::loss_weights<double>(b, enc.hidden_size(), 11);
  {
    peft::numerics_check_scope on;
    CHECK_THROWS_WITH(
        enc.backward(d_out, p, tape),
        Equals("encoder::backward: layer 1 FFN: policy on_sublayer_output_backward (pre_dropout) "
               "gradient: expected finite, got NaN at row 4, column 6"));
  }
  peft::numerics_check_scope off(false);
  peft::matrix<double> dh;
  REQUIRE_NOTHROW(dh = enc.backward(d_out, p, tape, 0));
  CHECK(dh.array().isNaN().any());  // carried down to the embeddings, not zeroed
}

TEMPLATE_TEST_CASE("clip_grad_norm with a NaN gradient throws and leaves the gradients untouched",
                   "[numerics][clip]", float, double) {
  peft::parameter_store<TestType> a, c;
  a.add("a.weight", 3, 4, peft::param_group::weight);
  c.add("c.bias", 5, 1, peft::param_group::bias);
  for (peft::index i = 0; i < a.size(); ++i)
    a.grads()[i] = static_cast<TestType>(10 + i);  // norm >> 1: would scale
  for (peft::index i = 0; i < c.size(); ++i) c.grads()[i] = static_cast<TestType>(-3 * i);
  c.grads()[2] = nan_v<TestType>;
  const peft::vector<TestType> ga = a.grads(), gc = c.grads();
  peft::parameter_set<TestType> set(a, c);
  CHECK_THROWS_AS(peft::clip_grad_norm(set, 1.0), peft::numeric_error);
  CHECK_THROWS_WITH(peft::clip_grad_norm(set, 1.0), Contains("'c.bias' entry 2"));
  CHECK(bitwise_equal(a.grads(), ga));
  CHECK(bitwise_equal(c.grads(), gc));
  CHECK(std::isnan(c.grads()[2]));
  CHECK(a.grads()[0] == TestType(10));  // neither zeroed nor scaled
}

TEST_CASE("PEFT_CHECK_NUMERICS=1 switches check mode on at first use", "[numerics][env]") {
  const char* saved = std::getenv("PEFT_CHECK_NUMERICS");
  const std::string saved_value = saved ? saved : "";
  const bool saved_switch = peft::check_numerics();

  auto w = weights<double>("bert");
  w->layers[1].ffn_in.weight(3, 5) = nan_v<double>;
  peft::encoder<peft::bert, double> enc(w);
  const auto b = batch_for("bert");

  ::setenv("PEFT_CHECK_NUMERICS", "1", 1);
  peft::detail::reset_check_numerics();
  CHECK(peft::check_numerics());
  CHECK_THROWS_WITH(enc.forward(b), Contains("encoder::forward: layer 1 ffn_in output"));

  for (const char* v : {"true", "ON", "yes"}) {
    ::setenv("PEFT_CHECK_NUMERICS", v, 1);
    peft::detail::reset_check_numerics();
    CHECK(peft::check_numerics());
  }
  for (const char* v : {"0", "", "off", "2"}) {
    ::setenv("PEFT_CHECK_NUMERICS", v, 1);
    peft::detail::reset_check_numerics();
    CHECK_FALSE(peft::check_numerics());
  }
  ::unsetenv("PEFT_CHECK_NUMERICS");
  peft::detail::reset_check_numerics();
  CHECK_FALSE(peft::check_numerics());
  CHECK_NOTHROW(enc.forward(b));

  // An explicit switch wins over the environment, and the environment is read only once.
  ::setenv("PEFT_CHECK_NUMERICS", "1", 1);
  peft::detail::reset_check_numerics();
  peft::set_check_numerics(false);
  CHECK_FALSE(peft::check_numerics());
  peft::set_check_numerics(true);
  ::unsetenv("PEFT_CHECK_NUMERICS");
  CHECK(peft::check_numerics());

  if (saved)
    ::setenv("PEFT_CHECK_NUMERICS", saved_value.c_str(), 1);
  else
    ::unsetenv("PEFT_CHECK_NUMERICS");
  peft::set_check_numerics(saved_switch);
}

TEMPLATE_TEST_CASE("with finite inputs, check mode changes no bit of outputs or gradients",
                   "[numerics][encoder]", float, double) {
  for (const std::string type : {"bert", "roberta", "use_lite"}) {
    DYNAMIC_SECTION(type) {
      auto run = [&](auto enc_tag) {
        using Enc = decltype(enc_tag);
        const Enc enc(peft::random_encoder_weights<TestType>(peft_test::small_config(type, 0.2), 42));
        const auto b = batch_for(type);
        auto p = peft_test::make_probe<TestType>(enc.shape(), 2, 7);
        const peft::matrix<TestType> R = peft_test::loss_weights<TestType>(b, enc.hidden_size(), 11);
        struct result {
          peft::matrix<TestType> plain, h, dh;
          peft::vector<TestType> grad;
        };
        auto once = [&](bool check) {
          peft::numerics_check_scope scope(check);
          result r;
          r.plain = enc.forward(b);
          peft::encoder_tape<TestType, peft_test::probe_policy<TestType>> tape;
          peft::rng gen(123);
          r.h = enc.forward(b, p, peft::mode::train, &tape, &gen);
          p.grad().setZero();
          r.dh = enc.backward(R, p, tape, 0);
          r.grad = p.grad();
          return r;
        };
        const result off = once(false), on = once(true);
        CHECK(off.h.allFinite());
        CHECK(bitwise_equal(off.plain, on.plain));
        CHECK(bitwise_equal(off.h, on.h));
        CHECK(bitwise_equal(off.dh, on.dh));
        CHECK(bitwise_equal(off.grad, on.grad));
      };
      if (type == "bert")
        run(peft::encoder<peft::bert, TestType>(weights<TestType>("bert")));
      else if (type == "roberta")
        run(peft::encoder<peft::roberta, TestType>(weights<TestType>("roberta")));
      else
        run(peft::encoder<peft::use_lite, TestType>(weights<TestType>("use_lite")));
    }
  }
}
