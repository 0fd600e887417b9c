// SPDX-License-Identifier: Apache-2.0
// AdapterFusion: gradients inside the encoder, V = I behaviour, the ‖I − V‖² regulariser,
// frozen adapters and encoder, parameter blocks, copies, checkpoints and bad input.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/policies/adapter_fusion.hpp>

#include <filesystem>

#include "small_model.hpp"

using peft::adapter_fusion;
using peft::adapter_fusion_config;
using peft::bottleneck_adapter;
using peft::bottleneck_config;
using namespace peft_test;

namespace {

template <typename Scalar>
std::vector<std::shared_ptr<const bottleneck_adapter<Scalar>>> trained_adapters(const peft::encoder_shape& shape,
                                                                               int n, peft::placement where,
                                                                               bool ln_before = false,
                                                                               bool residual_before_ln = true) {
  std::vector<std::shared_ptr<const bottleneck_adapter<Scalar>>> out;
  const char* names[] = {"a", "b", "c"};
  for (int i = 0; i < n; ++i) {
    auto c = bottleneck_config::pfeiffer(3);
    c.adapter_name = names[i];
    c.where = where;
    c.original_ln_before = ln_before;
    c.residual_before_ln = residual_before_ln;
    c.scaling = ln_before ? 1.5 : 1.0;
    auto a = std::make_shared<bottleneck_adapter<Scalar>>(shape, c, static_cast<std::uint64_t>(10 + i));
    peft::rng g(static_cast<std::uint64_t>(100 + i));
    for (peft::index k = 0; k < a->num_parameters(); ++k)
      a->parameters().values()[k] = static_cast<Scalar>(g.normal() * 0.4);  // "trained": far from init
    out.push_back(a);
  }
  return out;
}

template <typename Arch>
void fd_check(const std::string& type, peft::placement where, const adapter_fusion_config& cfg,
              bool ln_before = false, bool residual_before_ln = true) {
  small_model<Arch> m(type);
  adapter_fusion<double> f(m.enc.shape(),
                           trained_adapters<double>(m.enc.shape(), 3, where, ln_before, residual_before_ln), cfg, 4);
  randomise(f.parameters().values(), 0.3, 5);
  auto r = check_policy_in_encoder(m.enc, m.b, f, f.parameters().values(), f.parameters().grads());
  INFO(type << ": params abs " << r.params.max_abs_err << " rel " << r.params.max_rel_err << "; input abs "
            << r.input.max_abs_err << " rel " << r.input.max_rel_err);
  CHECK(r.params.max_abs_err < 1e-7);
  CHECK(r.input.max_abs_err < 1e-7);
  CHECK(r.max_param_grad > 1e-3);
  CHECK(r.max_input_grad > 1e-3);
}

}  // namespace

TEST_CASE("fusion gradients match finite differences inside the encoder", "[fusion][grad]") {
  adapter_fusion_config dyn;  // dynamic: query, key, value, score dropout 0.1
  SECTION("bert, post-dropout") { fd_check<peft::bert>("bert", peft::placement::post_dropout, dyn); }
  SECTION("use_lite, post-dropout") { fd_check<peft::use_lite>("use_lite", peft::placement::post_dropout, dyn); }
  SECTION("bert, pre-dropout adapters, temperature 2") {
    auto c = dyn;
    c.temperature = 2.0;
    fd_check<peft::bert>("bert", peft::placement::pre_dropout, c);
  }
  SECTION("bert, AdapterHub seq_bn adapters (query and adapters read LN2(h + x))") {
    fd_check<peft::bert>("bert", peft::placement::post_dropout, dyn, true);
  }
  SECTION("bert, seq_bn adapters with residual_before_ln false") {
    fd_check<peft::bert>("bert", peft::placement::post_dropout, dyn, true, false);
  }
  SECTION("bert, static (no value matrix)") {
    auto c = dyn;
    c.value = false;
    fd_check<peft::bert>("bert", peft::placement::post_dropout, c);
  }
}

TEST_CASE("fusion with V = I gives the alpha-weighted sum of adapter outputs plus the residual", "[fusion]") {
  small_model<peft::bert> m("bert");
  const auto shape = m.enc.shape();
  auto ads = trained_adapters<double>(shape, 2, peft::placement::post_dropout);
  adapter_fusion<double> f(shape, ads, adapter_fusion_config{}, 3);
  // value_initialized: identity with 1e-6 off the diagonal.
  const auto V0 = f.parameters().value(f.parameters().find("encoder.layer.1.output.adapter_fusion_layer.a,b.value.weight"));
  CHECK(V0(0, 0) == 1.0);
  CHECK(V0(0, 1) == 1e-6);
  f.parameters().value(4).setIdentity();  // layer 0 value.weight, exactly I
  const auto h = random_matrix<double>(7, 16, 2);
  auto out = h;
  adapter_fusion<double>::tape_type t;
  peft::hook_context ctx;
  f.on_sublayer_output(0, peft::sublayer::ffn, peft::placement::post_dropout, out, ctx, t);
  // By hand.
  const auto Wq = f.parameters().value(0), bq = f.parameters().value(1);
  const auto Wk = f.parameters().value(2), bk = f.parameters().value(3);
  peft::matrix<double> Q = h * Wq.transpose();
  Q.rowwise() += bq.col(0).transpose();
  std::vector<peft::matrix<double>> up;
  peft::matrix<double> S(7, 2);
  for (int n = 0; n < 2; ++n) {
    up.push_back(ads[size_t(n)]->adapter_delta(0, peft::sublayer::ffn, h));
    peft::matrix<double> K = up.back() * Wk.transpose();
    K.rowwise() += bk.col(0).transpose();
    S.col(n) = (Q.array() * K.array()).rowwise().sum().matrix();
  }
  peft::matrix<double> expected = h;
  for (peft::index r = 0; r < 7; ++r) {
    const double a0 = 1.0 / (1.0 + std::exp(S(r, 1) - S(r, 0)));
    expected.row(r) += a0 * up[0].row(r) + (1 - a0) * up[1].row(r);
  }
  CHECK((out - expected).cwiseAbs().maxCoeff() < 1e-12);
  // Other sub-layers / placements are untouched.
  auto same = h;
  f.on_sublayer_output(0, peft::sublayer::attention, peft::placement::post_dropout, same, ctx, t);
  f.on_sublayer_output(0, peft::sublayer::ffn, peft::placement::pre_dropout, same, ctx, t);
  CHECK(same == h);
}

TEST_CASE("the fusion regulariser is sum ||I - V||^2 with the right gradient, only with a value matrix",
          "[fusion][reg]") {
  small_model<peft::bert> m("bert");
  const auto shape = m.enc.shape();
  auto ads = trained_adapters<double>(shape, 2, peft::placement::post_dropout);
  adapter_fusion<double> f(shape, ads, adapter_fusion_config{}, 3);
  const double at_init = f.regularization_loss();
  CHECK(at_init == Approx(2 * (16 * 16 - 16) * 1e-12).epsilon(1e-9));
  randomise(f.parameters().values(), 0.5, 8);
  double manual = 0;
  for (peft::index l = 0; l < 2; ++l) {
    const auto V = f.parameters().value(f.parameters().find("encoder.layer." + std::to_string(l) +
                                                            ".output.adapter_fusion_layer.a,b.value.weight"));
    manual += (peft::matrix<double>::Identity(16, 16) - V).squaredNorm();
  }
  CHECK(f.regularization_loss() == Approx(manual).epsilon(1e-12));
  f.parameters().zero_grad();
  f.add_regularization_grad(0.01);
  const peft::vector<double> g = f.parameters().grads();
  auto loss = [&] { return 0.01 * f.regularization_loss(); };
  auto r = check_gradient(f.parameters().values().data(), f.parameters().values().size(), g.data(), loss, 1e-6, 300);
  INFO("regulariser grad abs err " << r.max_abs_err);
  CHECK(r.max_abs_err < 1e-8);
  CHECK(g.cwiseAbs().maxCoeff() > 1e-3);

  adapter_fusion_config st;
  st.value = false;
  adapter_fusion<double> s(shape, ads, st, 3);
  CHECK(s.regularization_loss() == 0.0);
  s.add_regularization_grad(1.0);
  CHECK(s.parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  adapter_fusion_config noreg;
  noreg.regularization = false;
  adapter_fusion<double> n(shape, ads, noreg, 3);
  randomise(n.parameters().values(), 0.5, 8);
  CHECK(n.regularization_loss() == 0.0);
}

TEST_CASE("fusion parameters are the fusion layers only; adapters and encoder stay frozen", "[fusion][params]") {
  small_model<peft::use_lite> m("use_lite");
  const auto shape = m.enc.shape();
  auto ads = trained_adapters<double>(shape, 3, peft::placement::post_dropout);
  std::vector<peft::vector<double>> adapter_values;
  for (const auto& a : ads) adapter_values.push_back(a->parameters().values());
  const peft::encoder_weights<double> before = m.enc.weights();
  adapter_fusion<double> f(shape, ads, adapter_fusion_config{}, 3);
  CHECK(f.fusion_name() == "a,b,c");
  const auto& blocks = f.parameters().blocks();
  REQUIRE(blocks.size() == 2 * 5);
  CHECK(blocks[0].name == "encoder.layer.0.output.adapter_fusion_layer.a,b,c.query.weight");
  CHECK(blocks[1].name == "encoder.layer.0.output.adapter_fusion_layer.a,b,c.query.bias");
  CHECK(blocks[2].name == "encoder.layer.0.output.adapter_fusion_layer.a,b,c.key.weight");
  CHECK(blocks[3].name == "encoder.layer.0.output.adapter_fusion_layer.a,b,c.key.bias");
  CHECK(blocks[4].name == "encoder.layer.0.output.adapter_fusion_layer.a,b,c.value.weight");
  const peft::index W = shape.output_width[0];
  CHECK(f.num_parameters() == 2 * (3 * W * W + 2 * W));
  CHECK(f.lowest_layer(2) == 0);
  const auto R = loss_weights<double>(m.b, m.enc.hidden_size(), 3);
  const peft::vector<double> start = f.parameters().values();
  peft_test::sgd_steps(m.enc, m.b, f, R, 3, 0.05, [](adapter_fusion<double>& p) { p.add_regularization_grad(0.01); });
  CHECK((f.parameters().values() - start).cwiseAbs().maxCoeff() > 0);
  for (std::size_t i = 0; i < ads.size(); ++i) CHECK(ads[i]->parameters().values() == adapter_values[i]);
  CHECK(same_weights(before, m.enc.weights()));
  // Copies are independent.
  const peft::vector<double> kept = f.parameters().values();
  auto g = f;
  g.parameters().values().array() += 1;
  CHECK(f.parameters().values() == kept);
  CHECK(g.parameters().values() != kept);
}

TEST_CASE("fusion save/load round trip reproduces the outputs; mismatches are rejected", "[fusion][io]") {
  small_model<peft::bert, float> m("bert");
  const auto shape = m.enc.shape();
  adapter_fusion<float> f(shape, trained_adapters<float>(shape, 2, peft::placement::post_dropout),
                          adapter_fusion_config{}, 3);
  peft::rng g(4);
  for (peft::index i = 0; i < f.num_parameters(); ++i) f.parameters().values()[i] = static_cast<float>(g.normal() * 0.3);
  const std::string dir = scratch_dir("fusion_io");
  peft::save_policy(dir, f);
  auto back = peft::load_policy<adapter_fusion<float>>(dir, shape);
  CHECK(back.parameters().values() == f.parameters().values());
  REQUIRE(back.adapters().size() == 2);
  CHECK(back.adapters()[1]->parameters().values() == f.adapters()[1]->parameters().values());
  CHECK(back.adapters()[1]->config().adapter_name == "b");
  CHECK(m.enc.forward(m.b, back) == m.enc.forward(m.b, f));
  const auto file = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(file.contains("encoder.layer.0.output.adapter_fusion_layer.a,b.value.weight"));
  CHECK(file.contains("encoder.layer.0.output.adapters.a.adapter_down.0.weight"));
  // Loading as a plain adapter names the method.
  CHECK_THROWS_WITH(peft::load_policy<bottleneck_adapter<float>>(dir, shape),
                    Catch::Contains("'peft_type' expected \"BOTTLENECK_ADAPTER\", got \"ADAPTER_FUSION\""));
  auto other = shape;
  other.num_layers = 3;
  CHECK_THROWS_WITH(peft::load_policy<adapter_fusion<float>>(dir, other), Catch::Contains("'num_layers' expected 3"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("bad fusion set-ups throw, naming the problem", "[fusion][errors]") {
  small_model<peft::bert> m("bert");
  const auto shape = m.enc.shape();
  auto ads = trained_adapters<double>(shape, 2, peft::placement::post_dropout);
  adapter_fusion_config c;
  c.temperature = 0;
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, ads, c, 0), Catch::Contains("temperature"));
  c = adapter_fusion_config{};
  c.dropout = 1.0;
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, ads, c, 0), Catch::Contains("dropout"));
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, {}, adapter_fusion_config{}, 0), Catch::Contains("at least 1"));
  auto dup = ads;
  dup.push_back(ads[0]);
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, dup, adapter_fusion_config{}, 0), Catch::Contains("distinct"));
  auto houl = bottleneck_config::houlsby(2);
  houl.adapter_name = "h";
  auto withatt = ads;
  withatt.push_back(std::make_shared<bottleneck_adapter<double>>(shape, houl, 1));
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, withatt, adapter_fusion_config{}, 0),
                    Catch::Contains("attention-position unit"));
  auto l1 = bottleneck_config::pfeiffer(2);
  l1.adapter_name = "z";
  l1.layers = {1};
  auto mixed = ads;
  mixed.push_back(std::make_shared<bottleneck_adapter<double>>(shape, l1, 1));
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, mixed, adapter_fusion_config{}, 0),
                    Catch::Contains("different FFN layers"));
  CHECK_THROWS_WITH(adapter_fusion<double>(shape, {nullptr}, adapter_fusion_config{}, 0), Catch::Contains("null"));
}
