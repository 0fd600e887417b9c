// SPDX-License-Identifier: Apache-2.0
// Prefix-tuning: gradients by finite differences inside the encoder (MLP and ejected modes),
// eject() changes nothing, length 0 is the identity, frozen weights, blocks, copies,
// checkpoints, and the real USE-lite encoder (layer 0 attention 256 wide).
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/prefix_tuning.hpp>

#include <filesystem>
#include <fstream>

#include "small_model.hpp"
#include "gradcheck.hpp"
#include "test_common.hpp"

using peft::prefix_tuning;
using peft::prefix_tuning_config;
using peft_test::loss_weights;
using peft_test::same_weights;
using peft_test::small_model;

namespace {

prefix_tuning_config small_prefix(peft::index n, bool mlp, peft::index mid = 6) {
  prefix_tuning_config c;
  c.num_virtual_tokens = n;
  c.prefix_projection = mlp;
  c.encoder_hidden_size = mid;
  return c;
}

template <typename Arch>
void check_prefix_gradients(const std::string& type, bool eject) {
  small_model<Arch> m(type);
  prefix_tuning<double> p(m.enc.shape(), small_prefix(3, true), 5);
  // Scale the MLP down a little so tanh is not saturated and the prefix is O(1).
  p.parameters().values() *= 0.7;
  if (eject) p.eject();
  auto r =
      peft_test::check_policy_in_encoder(m.enc, m.b, p, p.parameters().values(), p.parameters().grads(), 300);
  INFO(type << (eject ? " ejected" : " MLP") << ": params max abs err " << r.params.max_abs_err << " (rel "
            << r.params.max_rel_err << "), input " << r.input.max_abs_err << " (rel " << r.input.max_rel_err
            << ")");
  CHECK(r.params.max_abs_err < 1e-7);
  CHECK(r.input.max_abs_err < 1e-7);
  CHECK(r.max_param_grad > 1e-3);
  CHECK(r.max_input_grad > 1e-3);
}

}  // namespace

TEST_CASE("prefix-tuning gradients match finite differences inside the encoder", "[prefix][grad]") {
  SECTION("bert, MLP re-parameterisation") { check_prefix_gradients<peft::bert>("bert", false); }
  SECTION("bert, ejected prefix") { check_prefix_gradients<peft::bert>("bert", true); }
  SECTION("use_lite, MLP re-parameterisation") { check_prefix_gradients<peft::use_lite>("use_lite", false); }
  SECTION("use_lite, ejected prefix") { check_prefix_gradients<peft::use_lite>("use_lite", true); }
}

TEST_CASE("eject() leaves the outputs bit for bit and keeps only the prefix", "[prefix][eject]") {
  small_model<peft::use_lite, float> m("use_lite");
  const auto s = m.enc.shape();
  prefix_tuning<float> p(s, small_prefix(4, true, 8), 3);
  REQUIRE_FALSE(p.ejected());
  const auto before_eval = m.enc.forward(m.b, p);
  peft::rng g1(8);
  const auto before_train = m.enc.forward(m.b, p, peft::mode::train, nullptr, &g1);
  const auto exported = p.export_tensors();
  const auto P = p.prefix();
  p.eject();
  CHECK(p.ejected());
  REQUIRE(p.parameters().num_blocks() == 1);
  CHECK(p.parameters().block(0).name == "prompt_embeddings");
  CHECK(p.parameters().block(0).rows == 4);
  CHECK(p.parameters().block(0).cols == 2 * (s.attention_width[0] + s.attention_width[1]));
  CHECK(p.num_parameters() == 4 * p.prefix_columns());
  CHECK(p.prefix() == P);
  CHECK(m.enc.forward(m.b, p) == before_eval);
  peft::rng g2(8);
  CHECK(m.enc.forward(m.b, p, peft::mode::train, nullptr, &g2) == before_train);
  CHECK(p.export_tensors().at("prompt_embeddings").data == exported.at("prompt_embeddings").data);
  p.eject();  // a second eject is a no-op
  CHECK(m.enc.forward(m.b, p) == before_eval);
}

TEST_CASE("a prefix of length 0 leaves the encoder unchanged; a prefix changes it", "[prefix][init]") {
  small_model<peft::bert> m("bert");
  const auto plain = m.enc.forward(m.b);
  for (bool mlp : {true, false}) {
    prefix_tuning<double> p(m.enc.shape(), small_prefix(0, mlp), 1);
    CHECK(p.num_parameters() == 0);
    CHECK(p.kv_prefix_length(0) == 0);
    CHECK((m.enc.forward(m.b, p) - plain).cwiseAbs().maxCoeff() == 0.0);
    CHECK(p.export_tensors().at("prompt_embeddings").shape == std::vector<std::int64_t>{0, 64});
  }
  prefix_tuning<double> q(m.enc.shape(), small_prefix(2, true), 1);
  CHECK((m.enc.forward(m.b, q) - plain).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("prefix-tuning parameters() holds exactly the PrefixEncoder blocks", "[prefix][params]") {
  small_model<peft::bert> m("bert");
  const auto s = m.enc.shape();
  prefix_tuning<double> p(s, small_prefix(3, true, 6), 0);
  const auto& b = p.parameters().blocks();
  REQUIRE(b.size() == 5);
  CHECK(b[0].name == "prompt_encoder.embedding.weight");
  CHECK((b[0].rows == 3 && b[0].cols == 16));
  CHECK(b[1].name == "prompt_encoder.transform.0.weight");
  CHECK((b[1].rows == 6 && b[1].cols == 16));
  CHECK(b[2].name == "prompt_encoder.transform.0.bias");
  CHECK(b[2].group == peft::param_group::bias);
  CHECK(b[2].size() == 6);
  CHECK(b[3].name == "prompt_encoder.transform.2.weight");
  CHECK((b[3].rows == 2 * 2 * 16 && b[3].cols == 6));
  CHECK(b[4].name == "prompt_encoder.transform.2.bias");
  CHECK(b[4].size() == 64);
  CHECK(p.num_parameters() == 3 * 16 + 6 * 16 + 6 + 64 * 6 + 64);
  CHECK(p.layer_offset(1) == 32);

  prefix_tuning<double> direct(s, small_prefix(3, false), 0);
  REQUIRE(direct.parameters().num_blocks() == 1);
  CHECK(direct.parameters().block(0).name == "prompt_embeddings");
  CHECK(direct.num_parameters() == 3 * 64);
  CHECK(direct.ejected());

  // The defaults (n = 10, MLP 512) on BERT-base; the saved prefix is n * 2 * L * H floats.
  prefix_tuning<float> base(peft_test::bert_base_shape(), prefix_tuning_config{}, 0);
  CHECK(base.num_parameters() == 10 * 768 + 512 * 768 + 512 + 12 * 2 * 768 * 512 + 12 * 2 * 768);
  CHECK(base.prefix_columns() == 2 * 12 * 768);
}

TEST_CASE("prefix layout: layer l's keys then values, head-split like Q/K/V", "[prefix][layout]") {
  small_model<peft::use_lite> m("use_lite");
  const auto s = m.enc.shape();
  prefix_tuning<double> p(s, small_prefix(2, false), 4);
  const auto P = p.prefix();
  peft::matrix<double> pk, pv;
  peft::detail::empty_tape t;
  peft::hook_context ctx;
  for (peft::index l = 0; l < s.num_layers; ++l) {
    const auto d = s.attention_width[std::size_t(l)];
    p.kv_prefix(l, pk, pv, ctx, t);
    CHECK(pk.cols() == d);
    CHECK(pk == P.middleCols(p.layer_offset(l), d));
    CHECK(pv == P.middleCols(p.layer_offset(l) + d, d));
  }
  CHECK(p.layer_offset(1) == 2 * s.attention_width[0]);
}

TEST_CASE("prefix-tuning training leaves the frozen weights bitwise unchanged", "[prefix][frozen]") {
  small_model<peft::bert> m("bert");
  const peft::encoder_weights<double> before = m.enc.weights();
  prefix_tuning<double> p(m.enc.shape(), small_prefix(3, true), 3);
  const prefix_tuning<double> untouched = p;
  const auto R = loss_weights<double>(m.b, 16, 1);
  const peft::vector<double> start = p.parameters().values();
  const auto loss = peft_test::sgd_steps(m.enc, m.b, p, R, 4, 0.02);
  CHECK(same_weights(before, m.enc.weights()));
  CHECK((p.parameters().values() - start).cwiseAbs().maxCoeff() > 0);
  CHECK(untouched.parameters().values() == start);
  INFO("loss " << loss.first << " -> " << loss.last);
  CHECK(loss.last < loss.first);
}

TEST_CASE("prefix-tuning copies are independent (also across eject)", "[prefix]") {
  small_model<peft::bert> m("bert");
  prefix_tuning<double> a(m.enc.shape(), small_prefix(3, true), 2);
  const peft::vector<double> keep = a.parameters().values();
  auto b = a;
  b.parameters().values().array() += 1.0;
  CHECK(a.parameters().values() == keep);
  b.eject();
  CHECK_FALSE(a.ejected());
  CHECK(a.parameters().num_blocks() == 5);
  CHECK(a.parameters().values() == keep);
}

TEST_CASE("prefix-tuning save/load round trip (before and after eject) and rejected checkpoints",
          "[prefix][io]") {
  small_model<peft::use_lite, float> m("use_lite");
  const auto s = m.enc.shape();
  prefix_tuning<float> a(s, small_prefix(3, true, 8), 9);
  const auto out = m.enc.forward(m.b, a);
  const std::string dir = peft_test::scratch_dir("prefix_io");

  peft::save_policy(dir, a);  // MLP mode: only the prefix is saved
  {
    const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
    REQUIRE(f.names().size() == 1);
    CHECK(f.info("prompt_embeddings").shape ==
          std::vector<std::int64_t>{3, 2 * (s.attention_width[0] + s.attention_width[1])});
    const auto j = peft::read_adapter_config(dir);
    CHECK(j["peft_type"] == "PREFIX_TUNING");
    CHECK(j["num_virtual_tokens"] == 3);
    CHECK(j["inference_mode"] == false);
  }
  auto b = peft::load_policy<prefix_tuning<float>>(dir, s);
  CHECK(b.ejected());
  CHECK(m.enc.forward(m.b, b) == out);

  a.eject();
  peft::save_policy(dir, a);
  CHECK(peft::read_adapter_config(dir)["inference_mode"] == true);
  auto c = peft::load_policy<prefix_tuning<float>>(dir, s);
  CHECK(c.parameters().values() == a.parameters().values());
  CHECK(m.enc.forward(m.b, c) == out);

  small_model<peft::bert, float> other("bert");
  CHECK_THROWS_WITH(peft::load_policy<prefix_tuning<float>>(dir, other.enc.shape()),
                    Catch::Contains("'model_type' expected \"bert\""));
  auto wider = s;
  wider.hidden_size = 32;
  CHECK_THROWS_WITH(peft::load_policy<prefix_tuning<float>>(dir, wider),
                    Catch::Contains("'hidden_size' expected 32 (encoder), got 16"));
  CHECK_THROWS_WITH(peft::load_policy<peft::lora<float>>(dir, s),
                    Catch::Contains("'peft_type' expected \"LORA\", got \"PREFIX_TUNING\""));
  {
    auto j = peft::read_adapter_config(dir);
    j["num_virtual_tokens"] = 5;
    std::ofstream(dir + "/adapter_config.json") << j.dump();
    CHECK_THROWS_WITH(peft::load_policy<prefix_tuning<float>>(dir, s),
                      Catch::Contains("'prompt_embeddings' shape expected [5, 48], got [3, 48]"));
  }
  std::map<std::string, peft::tensor> bad = a.export_tensors();
  bad["prompt_embeddings"].data[2] = std::nanf("");
  CHECK_THROWS_WITH(c.import_tensors(bad), Catch::Contains("value expected finite"));
  bad = a.export_tensors();
  bad["extra"] = peft::tensor{{1}, {0.0f}};
  CHECK_THROWS_WITH(c.import_tensors(bad), Catch::Contains("unexpected tensor 'extra'"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("prefix-tuning bad hyper-parameters throw, naming the field", "[prefix][errors]") {
  const auto s = small_model<peft::bert>("bert").enc.shape();
  CHECK_THROWS_WITH(prefix_tuning<double>(s, small_prefix(-1, true), 0),
                    Catch::Contains("num_virtual_tokens expected >= 0, got -1"));
  CHECK_THROWS_WITH(prefix_tuning<double>(s, small_prefix(2, true, 0), 0),
                    Catch::Contains("encoder_hidden_size expected > 0, got 0"));
  auto broken = s;
  broken.attention_width.pop_back();
  CHECK_THROWS_WITH(prefix_tuning<double>(broken, small_prefix(2, true), 0),
                    Catch::Contains("per-layer widths"));
  prefix_tuning<double> p(s, small_prefix(2, true), 0);
  CHECK_THROWS_WITH(
      p.kv_prefix_backward(0, peft::matrix<double>::Zero(2, 5), peft::matrix<double>::Zero(2, 5), {}),
      Catch::Contains("prefix gradient shape expected [2, 16], got [2, 5]"));
}

TEST_CASE("prefix-tuning on the real USE-lite encoder: one step lowers the loss", "[prefix][use_lite]") {
  peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(peft_test::use_lite_dir()));
  const auto shape = enc.shape();
  prefix_tuning<float> p(shape, small_prefix(5, true, 64), 1);
  CHECK(p.prefix_columns() == 2 * (256 + 512 * (shape.num_layers - 1)));
  CHECK(p.layer_offset(1) == 512);  // layer 0's keys and values are 256 wide
  auto b = peft::make_batch({{5, 120, 431, 77, 9}, {5, 300, 9}}, 0);
  const auto R = loss_weights<float>(b, enc.hidden_size(), 2);
  auto loss = [&] { return peft_test::dot_loss(enc.forward(b, p), R); };
  const double before = loss();
  peft::encoder_tape<float, prefix_tuning<float>> tape;
  peft::rng gen(4);
  enc.forward(b, p, peft::mode::train, &tape, &gen);
  p.parameters().zero_grad();
  enc.backward(R, p, tape);
  const double gnorm = p.parameters().grads().norm();
  REQUIRE(gnorm > 0);
  p.parameters().values() -= static_cast<float>(1e-2 / gnorm) * p.parameters().grads();
  const double after = loss();
  INFO("loss " << before << " -> " << after << ", |grad| " << gnorm);
  CHECK(after < before);
  // Ejecting on the real encoder changes nothing either.
  const auto h = enc.forward(b, p);
  p.eject();
  CHECK(enc.forward(b, p) == h);
}
