// SPDX-License-Identifier: Apache-2.0
// The frozen encoder: input-gradients and every hook's gradients by finite differences (double),
// frozen-means-frozen, shared weights, backward stopping, and bad input.
#include <peft/model/encoder.hpp>
#include <peft/model/random_weights.hpp>

#include "gradcheck.hpp"
#include "probe_policy.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft_test::check_gradient;
using peft_test::dot_loss;
using peft_test::random_matrix;
using peft_test::small_batch;
using peft_test::small_config;

namespace {

template <typename Arch>
struct fixture {
  std::string type;
  peft::encoder<Arch, double> enc;
  peft::batch b;
  explicit fixture(const std::string& t)
      : type(t),
        enc(peft::random_encoder_weights<double>(small_config(t), 42)),
        b(small_batch(t == "roberta" ? 1 : 0, t != "use_lite")) {}

  peft_test::probe_policy<double> probe(peft::index prefix = 2) const {
    return peft_test::make_probe<double>(enc.shape(), prefix, 3);
  }
};

template <typename Arch>
void check_input_gradient(const std::string& type, peft::mode m) {
  fixture<Arch> f(type);
  const auto& enc = f.enc;
  peft::rng g0(1);
  peft::matrix<double> h0 = enc.embed(f.b, peft::mode::eval, &g0);
  const auto R = peft_test::loss_weights<double>(f.b, enc.hidden_size(), 5);
  peft::no_policy<double> none;
  auto loss = [&] {
    peft::rng gen(77);
    return dot_loss(enc.forward_embedded(h0, f.b, none, m, nullptr, &gen), R);
  };
  peft::encoder_tape<double, peft::no_policy<double>> tape;
  peft::rng gen(77);
  enc.forward_embedded(h0, f.b, none, m, &tape, &gen);
  peft::matrix<double> dh0 = enc.backward(R, none, tape, 0);
  REQUIRE(dh0.rows() == h0.rows());
  REQUIRE(dh0.cols() == h0.cols());
  auto r = check_gradient(h0.data(), h0.size(), dh0.data(), loss, 1e-6);
  INFO(type << " max abs err " << r.max_abs_err << " rel " << r.max_rel_err);
  CHECK(r.max_abs_err < 1e-7);
  CHECK(dh0.cwiseAbs().maxCoeff() > 1e-3);  // the check is not vacuous
}

template <typename Arch>
void check_policy_gradient(const std::string& type) {
  fixture<Arch> f(type);
  auto p = f.probe();
  const auto R = peft_test::loss_weights<double>(f.b, f.enc.hidden_size(), 6);
  auto loss = [&] {
    peft::rng gen(123);
    return dot_loss(f.enc.forward(f.b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, peft_test::probe_policy<double>> tape;
  peft::rng gen(123);
  f.enc.forward(f.b, p, peft::mode::train, &tape, &gen);
  p.grad().setZero();
  f.enc.backward(R, p, tape, 0);
  auto r = check_gradient(p.theta().data(), p.theta().size(), p.grad().data(), loss, 1e-6, 400);
  INFO(type << " policy params: max abs err " << r.max_abs_err << " rel " << r.max_rel_err);
  CHECK(r.max_abs_err < 1e-7);
  CHECK(p.grad().cwiseAbs().maxCoeff() > 1e-3);
}

}  // namespace

TEST_CASE("encoder input-gradient matches finite differences", "[encoder][grad]") {
  SECTION("bert eval") { check_input_gradient<peft::bert>("bert", peft::mode::eval); }
  SECTION("bert train (dropout)") { check_input_gradient<peft::bert>("bert", peft::mode::train); }
  SECTION("roberta train") { check_input_gradient<peft::roberta>("roberta", peft::mode::train); }
  SECTION("use_lite eval") { check_input_gradient<peft::use_lite>("use_lite", peft::mode::eval); }
  SECTION("use_lite train") { check_input_gradient<peft::use_lite>("use_lite", peft::mode::train); }
}

TEST_CASE("every hook's parameter gradient matches finite differences inside the encoder", "[encoder][grad]") {
  SECTION("bert") { check_policy_gradient<peft::bert>("bert"); }
  SECTION("roberta") { check_policy_gradient<peft::roberta>("roberta"); }
  SECTION("use_lite") { check_policy_gradient<peft::use_lite>("use_lite"); }
}

TEST_CASE("hook traits detect exactly the implemented hooks", "[encoder][traits]") {
  using P = peft_test::probe_policy<float>;
  STATIC_REQUIRE(peft::has_on_embeddings_v<P>);
  STATIC_REQUIRE(peft::has_on_layer_input_v<P>);
  STATIC_REQUIRE(peft::has_kv_prefix_v<P>);
  STATIC_REQUIRE(peft::has_on_weight_v<P>);
  STATIC_REQUIRE(peft::has_on_linear_v<P>);
  STATIC_REQUIRE(peft::has_on_sublayer_output_v<P>);
  STATIC_REQUIRE(peft::has_on_encoder_output_v<P>);
  using N = peft::no_policy<float>;
  STATIC_REQUIRE_FALSE(peft::has_on_embeddings_v<N>);
  STATIC_REQUIRE_FALSE(peft::has_kv_prefix_v<N>);
  STATIC_REQUIRE_FALSE(peft::has_on_weight_v<N>);
  STATIC_REQUIRE_FALSE(peft::has_on_sublayer_output_v<N>);
}

TEST_CASE("a zero probe policy leaves the output unchanged; the tape does not change results",
          "[encoder]") {
  fixture<peft::bert> f("bert");
  auto p = f.probe(0);
  p.theta().setZero();
  p.use_weight = true;
  const auto plain = f.enc.forward(f.b);
  const auto with_policy = f.enc.forward(f.b, p);
  CHECK((plain - with_policy).cwiseAbs().maxCoeff() == 0.0);
  peft::encoder_tape<double, peft::no_policy<double>> tape;
  const auto recorded = f.enc.forward(f.b, peft::no_policy<double>{}, peft::mode::eval, &tape);
  CHECK(recorded == plain);
}

TEST_CASE("frozen weights are bitwise unchanged and shared", "[encoder][frozen]") {
  auto w = peft::random_encoder_weights<double>(small_config("bert"), 9);
  const peft::encoder_weights<double> copy = *w;
  peft::shared_weights<double> shared = w;
  w.reset();
  peft::encoder<peft::bert, double> a(shared), b(shared);
  CHECK(&a.weights() == &b.weights());
  CHECK(&a.weights().word_embeddings(0, 0) == &b.weights().word_embeddings(0, 0));
  CHECK(shared.use_count() == 3);
  auto batch = small_batch(0, true);
  peft::index L = a.num_layers();
  std::vector<peft::index> in(size_t(L), 16), att(size_t(L), 16);
  peft_test::probe_policy<double> p(L, 16, in, att, 16, 2, 4);
  peft::encoder_tape<double, decltype(p)> tape;
  peft::rng gen(1);
  auto h = a.forward(batch, p, peft::mode::train, &tape, &gen);
  a.backward(peft::matrix<double>::Ones(h.rows(), h.cols()), p, tape, 0);
  const auto& now = a.weights();
  CHECK(now.word_embeddings == copy.word_embeddings);
  CHECK(now.position_embeddings == copy.position_embeddings);
  for (size_t l = 0; l < copy.layers.size(); ++l) {
    CHECK(now.layers[l].query.weight == copy.layers[l].query.weight);
    CHECK(now.layers[l].value.weight == copy.layers[l].value.weight);
    CHECK(now.layers[l].ffn_out.weight == copy.layers[l].ffn_out.weight);
    CHECK(now.layers[l].attn_norm.gamma == copy.layers[l].attn_norm.gamma);
  }
  STATIC_REQUIRE(std::is_const_v<std::remove_reference_t<decltype(a.weights())>>);
}

namespace {
/// Probe variant whose trainable hooks all live in the top layer.
struct top_only : peft_test::probe_policy<double> {
  using peft_test::probe_policy<double>::probe_policy;
  peft::index lowest_layer(peft::index layers) const { return layers - 1; }
};
}  // namespace

TEST_CASE("backward stops below the lowest trainable layer", "[encoder]") {
  fixture<peft::bert> f("bert");
  std::vector<peft::index> in(2, 16), att(2, 16);
  top_only p(2, 16, in, att, 16, 2, 3);
  peft::encoder_tape<double, top_only> tape;
  f.enc.forward(f.b, p, peft::mode::eval, &tape);
  const auto R = peft_test::loss_weights<double>(f.b, 16, 3);
  p.grad().setZero();
  auto d = f.enc.backward(R, p, tape);  // default stop: lowest_layer = 1
  const peft::vector<double> top_grad = p.grad();
  // The result is the gradient at layer 1's input; layer 0's parameters received nothing.
  CHECK(d.rows() == f.b.rows());
  p.grad().setZero();
  f.enc.backward(R, p, tape, 0);
  const peft::vector<double> full_grad = p.grad();
  // Parameters of layer 1 and of the output hook agree; layer 0's / embeddings' are zero with the stop.
  peft::index nonzero_full_only = 0;
  for (peft::index i = 0; i < full_grad.size(); ++i) {
    if (top_grad[i] != 0.0) CHECK(top_grad[i] == Approx(full_grad[i]).epsilon(1e-12));
    if (top_grad[i] == 0.0 && full_grad[i] != 0.0) ++nonzero_full_only;
  }
  CHECK(nonzero_full_only > 0);
}

TEST_CASE("a tape recording from the lowest trainable layer keeps nothing below it, same gradients",
          "[encoder]") {
  fixture<peft::bert> f("bert");
  std::vector<peft::index> in(2, 16), att(2, 16);
  top_only p(2, 16, in, att, 16, 2, 3);
  const auto R = peft_test::loss_weights<double>(f.b, 16, 3);
  peft::encoder_tape<double, top_only> full, top;
  top.record_from = 1;
  peft::rng g1(9), g2(9);  // train mode: dropout must draw the same masks in both passes
  const auto h_full = f.enc.forward(f.b, p, peft::mode::train, &full, &g1);
  const auto h_top = f.enc.forward(f.b, p, peft::mode::train, &top, &g2);
  CHECK(h_full == h_top);
  CHECK(full.layers[0].x.size() > 0);
  CHECK(top.layers[0].x.size() == 0);  // layer 0 ran but kept no activations
  CHECK(top.layers[1].x.size() > 0);
  p.grad().setZero();
  const auto d_full = f.enc.backward(R, p, full);
  const peft::vector<double> grad_full = p.grad();
  p.grad().setZero();
  const auto d_top = f.enc.backward(R, p, top);
  CHECK(d_full == d_top);
  CHECK(p.grad() == grad_full);
  // Going lower than the tape kept is refused, naming both layers.
  CHECK_THROWS_WITH(f.enc.backward(R, p, top, 0),
                    Catch::Contains("keeps layers from 1") && Catch::Contains("down to layer 0"));
}

TEST_CASE("bad input is rejected with clear errors", "[encoder][errors]") {
  fixture<peft::bert> f("bert");
  auto b = f.b;
  b.ids(0, 1) = 30;
  CHECK_THROWS_WITH(f.enc.forward(b), Catch::Contains("token id expected in [0, 30), got 30"));
  b = f.b;
  b.mask.row(1).setZero();
  CHECK_THROWS_WITH(f.enc.forward(b), Catch::Contains("sequence 1 has no real token"));
  std::vector<std::vector<std::int32_t>> longseq(1, std::vector<std::int32_t>(17, 4));
  CHECK_THROWS_WITH(f.enc.forward(peft::make_batch(longseq, 0)), Catch::Contains("sequence length expected <= 16, got 17"));
  b = f.b;
  b.mask.resize(1, 1);
  CHECK_THROWS_AS(f.enc.forward(b), peft::invalid_argument);
  b = f.b;
  b.segments(0, 0) = 2;
  CHECK_THROWS_WITH(f.enc.forward(b), Catch::Contains("segment id expected in [0, 2), got 2"));
  CHECK_THROWS_WITH(f.enc.forward(f.b, peft::no_policy<double>{}, peft::mode::train),
                    Catch::Contains("needs a random generator"));
  CHECK_THROWS_AS(peft::make_batch({}, 0), peft::invalid_argument);
  CHECK_THROWS_AS(peft::make_batch({{1, 2}, {}}, 0), peft::invalid_argument);
  CHECK_THROWS_AS((peft::encoder<peft::roberta, double>(f.enc.shared())), peft::invalid_argument);
  CHECK_THROWS_AS((peft::encoder<peft::bert, double>(nullptr)), peft::invalid_argument);
  peft::encoder_tape<double, peft::no_policy<double>> empty;
  peft::no_policy<double> none;
  CHECK_THROWS_WITH(f.enc.backward(peft::matrix<double>::Zero(3, 16), none, empty), Catch::Contains("tape holds 0 layers"));
}

TEST_CASE("DistilBERT drops the FFN output but not the attention output, as its TransformerBlock does",
          "[encoder][families]") {
  // The fraction of exact zeros in what reaches the post-dropout hook of each sub-layer, in
  // train mode (hidden dropout 0.2 in small_config): about 0.2 where a dropout ran, 0 where not.
  auto zero_share = [](const std::string& model_type, peft::sublayer s) {
    auto cfg = peft_test::small_config("bert");
    cfg.model_type = model_type;
    const peft::encoder<peft::bert, double> enc(peft::random_encoder_weights<double>(cfg, 42));
    auto p = peft_test::make_probe<double>(enc.shape(), 0, 3);
    peft::encoder_tape<double, peft_test::probe_policy<double>> tape;
    peft::rng gen(7);
    enc.forward(small_batch(0, true), p, peft::mode::train, &tape, &gen);
    const auto& h = tape.policy.sub_in[int(s)][int(peft::placement::post_dropout)].at(0);
    return double((h.array() == 0.0).count()) / double(h.size());
  };
  CHECK(zero_share("bert", peft::sublayer::attention) > 0.1);
  CHECK(zero_share("bert", peft::sublayer::ffn) > 0.1);
  CHECK(zero_share("distilbert", peft::sublayer::attention) == 0.0);
  CHECK(zero_share("distilbert", peft::sublayer::ffn) > 0.1);
}
