// SPDX-License-Identifier: Apache-2.0
// Bottleneck adapters (Houlsby / Pfeiffer / LiST): gradients inside the encoder, near-identity
// init, frozen weights, parameter blocks, copies, checkpoints, bad input and the real USE-lite.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/policies/bottleneck_adapter.hpp>

#include <filesystem>
#include <fstream>

#include "small_model.hpp"

using peft::bottleneck_adapter;
using peft::bottleneck_config;
using namespace peft_test;

namespace {

template <typename Arch>
void fd_check(const std::string& type, const bottleneck_config& cfg, const char* label) {
  small_model<Arch> m(type);
  bottleneck_adapter<double> a(m.enc.shape(), cfg, 5);
  randomise(a.parameters().values(), 0.3, 17);
  auto r = check_policy_in_encoder(m.enc, m.b, a, a.parameters().values(), a.parameters().grads());
  INFO(type << " " << label << ": params abs " << r.params.max_abs_err << " rel " << r.params.max_rel_err
            << "; input abs " << r.input.max_abs_err << " rel " << r.input.max_rel_err);
  CHECK(r.params.max_abs_err < 1e-7);
  CHECK(r.input.max_abs_err < 1e-7);
  CHECK(r.max_param_grad > 1e-3);
  CHECK(r.max_input_grad > 1e-3);
}

bottleneck_config swish_ffn_only_layer1() {
  auto c = bottleneck_config::houlsby(3);
  c.activation = peft::adapter_activation::swish;
  c.location = peft::adapter_location::ffn;
  c.layers = {1};
  c.where = peft::placement::pre_dropout;
  return c;
}

}  // namespace

TEST_CASE("bottleneck adapter gradients match finite differences inside the encoder", "[bottleneck][grad]") {
  SECTION("bert houlsby") { fd_check<peft::bert>("bert", bottleneck_config::houlsby(4), "houlsby"); }
  SECTION("bert list") { fd_check<peft::bert>("bert", bottleneck_config::list(4), "list"); }
  SECTION("bert pfeiffer") { fd_check<peft::bert>("bert", bottleneck_config::pfeiffer(0), "pfeiffer"); }
  SECTION("bert swish, layer 1 only") { fd_check<peft::bert>("bert", swish_ffn_only_layer1(), "swish"); }
  SECTION("use_lite houlsby") { fd_check<peft::use_lite>("use_lite", bottleneck_config::houlsby(4), "houlsby"); }
  SECTION("use_lite list") { fd_check<peft::use_lite>("use_lite", bottleneck_config::list(4), "list"); }
  SECTION("bert AdapterHub seq_bn: reads LN(h + x), scaling 2") {
    auto c = bottleneck_config::pfeiffer(3);
    c.original_ln_before = true;
    c.scaling = 2.0;
    fd_check<peft::bert>("bert", c, "seq_bn");
  }
  SECTION("bert original_ln_before at both sub-layers, branch added to LN(h + x)") {
    auto c = bottleneck_config::houlsby(3);
    c.original_ln_before = true;
    c.residual_before_ln = false;
    c.activation = peft::adapter_activation::relu;
    fd_check<peft::bert>("bert", c, "residual after ln");
  }
  SECTION("roberta gelu-erf") {
    auto c = bottleneck_config::houlsby(5);
    c.activation = peft::adapter_activation::gelu;
    fd_check<peft::roberta>("roberta", c, "gelu");
  }
}

TEST_CASE("presets hold the published settings", "[bottleneck]") {
  const auto h = bottleneck_config::houlsby();
  CHECK(h.bottleneck_size == 64);
  CHECK(h.location == peft::adapter_location::both);
  CHECK(h.where == peft::placement::post_dropout);
  CHECK(h.activation == peft::adapter_activation::gelu_tanh);
  CHECK(h.bias);
  CHECK(h.init == peft::adapter_init::truncated_normal);
  CHECK(h.init_std == 1e-3);
  const auto l = bottleneck_config::list();
  CHECK(l.bottleneck_size == 128);
  CHECK(l.where == peft::placement::pre_dropout);
  CHECK(l.activation == peft::adapter_activation::identity);
  CHECK_FALSE(l.bias);
  CHECK(l.init_std == 2e-4);
  const auto p = bottleneck_config::pfeiffer();
  CHECK(p.location == peft::adapter_location::ffn);
  CHECK(p.reduction_factor == 16.0);
  // BERT-base: Pfeiffer reduction 16 gives m = 48.
  bottleneck_adapter<float> pa(bert_base_shape(), p, 1);
  CHECK(pa.bottleneck_size(0) == 48);
  CHECK(pa.num_parameters() == 12 * (2 * 768 * 48 + 48 + 768));
  CHECK(pa.lowest_layer(12) == 0);
}

TEST_CASE("adapters start near the identity", "[bottleneck][init]") {
  const auto shape = bert_base_shape();
  const auto z = random_matrix<double>(64, 768, 4);
  SECTION("LiST r=128, N(0, 2e-4)") {
    bottleneck_adapter<double> a(shape, bottleneck_config::list(), 7);
    const double rel = a.adapter_delta(3, peft::sublayer::ffn, z).norm() / z.norm();
    INFO("LiST ||A(z) - z|| / ||z|| = " << rel);
    CHECK(rel < 1e-4);
    CHECK(rel > 1e-7);
    // The weights have the requested spread.
    const auto& v = a.parameters().values();
    const double sd = std::sqrt(v.squaredNorm() / static_cast<double>(v.size()));
    CHECK(sd == Approx(2e-4).epsilon(0.02));
  }
  SECTION("Houlsby m=64, truncated N(0, 1e-3)") {
    bottleneck_adapter<double> a(shape, bottleneck_config::houlsby(), 7);
    const double rel = a.adapter_delta(0, peft::sublayer::attention, z).norm() / z.norm();
    INFO("Houlsby ||A(z) - z|| / ||z|| = " << rel);
    CHECK(rel < 1e-3);
    const auto& v = a.parameters().values();
    CHECK(v.cwiseAbs().maxCoeff() <= 2e-3);  // truncated at two standard deviations
  }
  SECTION("inside a small encoder the output barely moves") {
    small_model<peft::bert> m("bert");
    bottleneck_adapter<double> a(m.enc.shape(), bottleneck_config::list(8), 3);
    const auto plain = m.enc.forward(m.b);
    const auto with = m.enc.forward(m.b, a);
    const double rel = (with - plain).norm() / plain.norm();
    INFO("relative output change " << rel);
    CHECK(rel < 1e-5);
    a.parameters().values().setZero();
    CHECK((m.enc.forward(m.b, a) - plain).cwiseAbs().maxCoeff() == 0.0);
  }
}

TEST_CASE("parameters() holds exactly the adapter blocks", "[bottleneck][params]") {
  small_model<peft::use_lite> m("use_lite");
  const auto shape = m.enc.shape();
  bottleneck_adapter<double> h(shape, bottleneck_config::houlsby(4), 1);
  const auto& blocks = h.parameters().blocks();
  REQUIRE(blocks.size() == 2 * 2 * 4);
  CHECK(blocks[0].name == "encoder.layer.0.attention.output.adapters.default.adapter_down.0.weight");
  CHECK(blocks[1].name == "encoder.layer.0.attention.output.adapters.default.adapter_down.0.bias");
  CHECK(blocks[2].name == "encoder.layer.0.attention.output.adapters.default.adapter_up.weight");
  CHECK(blocks[3].name == "encoder.layer.0.attention.output.adapters.default.adapter_up.bias");
  CHECK(blocks[4].name == "encoder.layer.0.output.adapters.default.adapter_down.0.weight");
  CHECK(blocks[1].group == peft::param_group::bias);
  CHECK(blocks[2].group == peft::param_group::weight);
  const peft::index W = shape.output_width[0];
  CHECK(blocks[0].rows == 4);
  CHECK(blocks[0].cols == W);
  CHECK(blocks[2].rows == W);
  CHECK(h.num_parameters() == 2 * 2 * (2 * W * 4 + 4 + W));
  CHECK(h.share_of_backbone() == Approx(double(h.num_parameters()) / double(shape.backbone_parameters)));

  auto lc = bottleneck_config::list(3);
  lc.layers = {1};
  lc.adapter_name = "task";
  bottleneck_adapter<double> l(shape, lc, 1);
  REQUIRE(l.parameters().num_blocks() == 4);
  CHECK(l.parameters().block(0).name == "encoder.layer.1.attention.output.adapters.task.adapter_down.0.weight");
  CHECK(l.parameters().block(1).name == "encoder.layer.1.attention.output.adapters.task.adapter_up.weight");
  CHECK(l.num_parameters() == 2 * 2 * W * 3);
  CHECK(l.lowest_layer(2) == 1);
  CHECK_FALSE(l.adapts(0, peft::sublayer::ffn));
  CHECK(l.adapts(1, peft::sublayer::ffn));
}

TEST_CASE("frozen weights are bitwise unchanged by training; only the adapter moves", "[bottleneck][frozen]") {
  small_model<peft::bert> m("bert");
  const peft::encoder_weights<double> before = m.enc.weights();
  bottleneck_adapter<double> a(m.enc.shape(), bottleneck_config::houlsby(4), 2);
  const auto R = loss_weights<double>(m.b, 16, 1);
  const peft::vector<double> start = a.parameters().values();
  peft_test::sgd_steps(m.enc, m.b, a, R, 3, 0.1);
  CHECK(same_weights(before, m.enc.weights()));
  CHECK((a.parameters().values() - start).cwiseAbs().maxCoeff() > 0);
}

TEST_CASE("copies are independent", "[bottleneck]") {
  small_model<peft::bert> m("bert");
  bottleneck_adapter<double> a(m.enc.shape(), bottleneck_config::houlsby(4), 2);
  const peft::vector<double> keep = a.parameters().values();
  auto b = a;
  b.parameters().values().array() += 1.0;
  b.parameters().value(0)(0, 0) = 42.0;
  CHECK(a.parameters().values() == keep);
  CHECK(a.parameters().value(0)(0, 0) != 42.0);
}

TEST_CASE("bottleneck adapter save/load round trip and rejected checkpoints", "[bottleneck][io]") {
  small_model<peft::bert, float> m("bert");
  auto cfg = bottleneck_config::houlsby(4);
  cfg.layers = {1, 0};
  bottleneck_adapter<float> a(m.enc.shape(), cfg, 9);
  peft::rng g(1);
  for (peft::index i = 0; i < a.num_parameters(); ++i) a.parameters().values()[i] = static_cast<float>(g.normal() * 0.2);
  const std::string dir = scratch_dir("bottleneck_io");
  peft::save_policy(dir, a);
  auto b = peft::load_policy<bottleneck_adapter<float>>(dir, m.enc.shape());
  CHECK(b.parameters().values() == a.parameters().values());
  CHECK(b.config().layers == cfg.layers);
  CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));

  const auto cfg_json = peft::read_adapter_config(dir);
  CHECK(cfg_json["peft_type"] == "BOTTLENECK_ADAPTER");
  CHECK(cfg_json["peft_cpp"]["version"] == peft::version_string);
  CHECK(cfg_json["hidden_size"] == 16);
  const auto file = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(file.metadata()["format"] == "pt");
  CHECK(file.info("encoder.layer.1.output.adapters.default.adapter_up.bias").shape == std::vector<std::int64_t>{16});
  CHECK(file.info("encoder.layer.1.output.adapters.default.adapter_up.weight").shape ==
        std::vector<std::int64_t>{16, 4});

  // Another encoder shape.
  small_model<peft::use_lite, float> other("use_lite");
  CHECK_THROWS_WITH(peft::load_policy<bottleneck_adapter<float>>(dir, other.enc.shape()),
                    Catch::Contains("model_type") && Catch::Contains("use_lite"));
  auto wider = m.enc.shape();
  wider.hidden_size = 32;
  CHECK_THROWS_WITH(peft::load_policy<bottleneck_adapter<float>>(dir, wider),
                    Catch::Contains("'hidden_size' expected 32 (encoder), got 16"));
  // Another method.
  {
    auto j = peft::read_adapter_config(dir);
    j["peft_type"] = "LORA";
    std::ofstream(dir + "/adapter_config.json") << j.dump();
    CHECK_THROWS_WITH(peft::load_policy<bottleneck_adapter<float>>(dir, m.enc.shape()),
                      Catch::Contains("'peft_type' expected \"BOTTLENECK_ADAPTER\", got \"LORA\""));
  }
  // A config whose bottleneck size disagrees with the tensors.
  {
    peft::save_policy(dir, a);
    auto j = peft::read_adapter_config(dir);
    j["bottleneck_size"] = 5;
    std::ofstream(dir + "/adapter_config.json") << j.dump();
    CHECK_THROWS_WITH(peft::load_policy<bottleneck_adapter<float>>(dir, m.enc.shape()),
                      Catch::Contains("adapters.default.adapter_down.0.") && Catch::Contains("shape expected [5") &&
                          Catch::Contains("got [4"));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("bad hyper-parameters throw, naming the field", "[bottleneck][errors]") {
  const auto shape = small_model<peft::bert>("bert").enc.shape();
  auto c = bottleneck_config::houlsby(-1);
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("bottleneck_size"));
  c = bottleneck_config::houlsby(0);
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("reduction_factor"));
  c = bottleneck_config::houlsby(2);
  c.layers = {0, 2};
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("layers[1] expected in [0, 2), got 2"));
  c.layers = {1, 1};
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("distinct"));
  c = bottleneck_config::houlsby(2);
  c.init_std = -1;
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("init_std"));
  c = bottleneck_config::houlsby(2);
  c.adapter_name = "a.b";
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("adapter_name"));
  c = bottleneck_config::houlsby(2);
  c.scaling = std::nan("");
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0), Catch::Contains("scaling expected finite"));
  c = bottleneck_config::list(2);
  c.original_ln_before = true;
  CHECK_THROWS_WITH(bottleneck_adapter<double>(shape, c, 0),
                    Catch::Contains("original_ln_before expects placement post_dropout"));
  bottleneck_adapter<double> a(shape, bottleneck_config::houlsby(2), 0);
  CHECK_THROWS_WITH(a.adapter_delta(0, peft::sublayer::ffn, peft::matrix<double>::Zero(2, 5)),
                    Catch::Contains("input columns expected 16, got 5"));
}

TEST_CASE("original_ln_before: the unit reads LN(h + x) and the block's LayerNorm runs after it", "[bottleneck]") {
  // One unit at layer 1's FFN. Reading LN2(h + x) changes the output against reading h, and a
  // unit whose branch is zero (up-projection zero) leaves the encoder exactly as without it.
  small_model<peft::bert> m("bert");
  auto c = bottleneck_config::pfeiffer(3);
  c.layers = {1};
  c.original_ln_before = true;
  bottleneck_adapter<double> after(m.enc.shape(), c, 3);
  randomise(after.parameters().values(), 0.5, 4);
  auto before_cfg = c;
  before_cfg.original_ln_before = false;
  bottleneck_adapter<double> before(m.enc.shape(), before_cfg, 3);
  before.parameters().values() = after.parameters().values();
  const auto plain = m.enc.forward(m.b);
  const auto y_after = m.enc.forward(m.b, after);
  const auto y_before = m.enc.forward(m.b, before);
  CHECK((y_after - plain).cwiseAbs().maxCoeff() > 1e-3);
  CHECK((y_after - y_before).cwiseAbs().maxCoeff() > 1e-3);
  // Zero up-projection and bias: the unit adds nothing.
  for (peft::index k = 0; k < after.parameters().num_blocks(); ++k)
    if (after.parameters().blocks()[static_cast<std::size_t>(k)].name.find("adapter_up") != std::string::npos)
      after.parameters().value(k).setZero();
  CHECK((m.enc.forward(m.b, after) - plain).cwiseAbs().maxCoeff() < 1e-12);
  // A pre-norm encoder has no residual-sum LayerNorm after the sub-layer: refused by name when
  // the adapter is built for its shape, and by the encoder for one whose shape hides it.
  small_model<peft::use_lite> u("use_lite");
  CHECK(u.enc.shape().pre_norm);
  CHECK_FALSE(m.enc.shape().pre_norm);
  CHECK_THROWS_WITH(bottleneck_adapter<double>(u.enc.shape(), c, 3),
                    Catch::Contains("original_ln_before expects a post-norm encoder"));
  auto hidden = u.enc.shape();
  hidden.pre_norm = false;
  bottleneck_adapter<double> on_use(hidden, c, 3);
  CHECK_THROWS_WITH(u.enc.forward(u.b, on_use), Catch::Contains("original_ln_before"));
}

TEST_CASE("LiST adapter on the real USE-lite encoder: one step lowers the loss", "[bottleneck][use_lite]") {
  peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(use_lite_dir()));
  const auto shape = enc.shape();
  bottleneck_adapter<float> a(shape, bottleneck_config::list(16), 1);
  CHECK(a.parameters().blocks().front().cols == shape.output_width[0]);
  auto b = peft::make_batch({{5, 120, 431, 77, 9}, {5, 300, 9}}, 0);
  const auto R = loss_weights<float>(b, enc.hidden_size(), 2);
  auto loss = [&] { return dot_loss(enc.forward(b, a), R); };
  const double before = loss();
  peft::encoder_tape<float, bottleneck_adapter<float>> tape;
  enc.forward(b, a, peft::mode::eval, &tape);
  a.parameters().zero_grad();
  enc.backward(R, a, tape);
  const double gnorm = a.parameters().grads().norm();
  REQUIRE(gnorm > 0);
  a.parameters().values() -= static_cast<float>(1e-2 / gnorm) * a.parameters().grads();
  const double after = loss();
  INFO("loss " << before << " -> " << after << ", |grad| " << gnorm);
  CHECK(after < before);
}
