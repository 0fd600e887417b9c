// SPDX-License-Identifier: Apache-2.0
// Mask-tuning: the straight-through gradient against finite differences of the relaxed mask
// inside the encoder, input gradients, init sparsity and the all-ones identity, frozen
// weights, blocks, copies, the bit-packed saved form (1 bit per weight) and checkpoints.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/prefix_tuning.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "small_model.hpp"
#include "gradcheck.hpp"
#include "test_common.hpp"

using peft::linear_id;
using peft::mask_tuning;
using peft::mask_tuning_config;
using peft_test::loss_weights;
using peft_test::same_weights;
using peft_test::small_model;

namespace {

mask_tuning_config layers_01() {
  mask_tuning_config c;
  c.layers = std::vector<peft::index>{0, 1};
  return c;
}

/// The mask-tuning policy with its binary mask replaced by a real-valued M in the same
/// layout (W_eff = W .* M): its derivative in M at M = 1[S > tau] is what the
/// straight-through estimator hands to the scores.
struct relaxed_mask {
  using scalar_type = double;
  using mat = peft::matrix<double>;
  const mask_tuning<double>* base = nullptr;
  peft::vector<double> m;

  peft::index block_of(peft::index l, linear_id w) const {
    return base->parameters().find(peft::detail::linear_module_path(base->shape(), l, w) +
                                   ".weight_mask");
  }
  bool transforms_weight(peft::index l, linear_id w) const { return base->transforms_weight(l, w); }
  void on_weight(peft::index l, linear_id w, const mat& W, mat& W_eff, peft::detail::empty_tape&) const {
    const auto& b = base->parameters().block(block_of(l, w));
    W_eff = W.cwiseProduct(Eigen::Map<const mat>(m.data() + b.offset, b.rows, b.cols));
  }
  void on_weight_backward(peft::index, linear_id, const mat&, const mat&, const peft::detail::empty_tape&) {}
};

template <typename Arch>
void check_mask_gradients(const std::string& type) {
  using mat = peft::matrix<double>;
  small_model<Arch> m(type);
  mask_tuning<double> p(m.enc.shape(), layers_01(), 5);
  // Scores around the threshold: about half of the weights masked.
  peft::rng g(17);
  for (peft::index i = 0; i < p.num_parameters(); ++i) p.parameters().values()[i] = 0.01 + 0.05 * g.normal();
  REQUIRE(p.sparsity() > 0.3);
  REQUIRE(p.sparsity() < 0.7);

  const auto R = loss_weights<double>(m.b, m.enc.hidden_size(), 11);
  peft::rng g0(3);
  mat h0 = m.enc.embed(m.b, peft::mode::eval, &g0);
  peft::encoder_tape<double, mask_tuning<double>> tape;
  peft::rng gen(123);
  m.enc.forward_embedded(h0, m.b, p, peft::mode::train, &tape, &gen);
  p.parameters().zero_grad();
  const mat dh0 = m.enc.backward(R, p, tape, 0);
  const peft::vector<double> dS = p.parameters().grads();

  // Straight-through: dS equals dL/dM of the relaxed mask at M = 1[S > tau].
  relaxed_mask relaxed{&p, p.parameters().values()};
  for (peft::index i = 0; i < relaxed.m.size(); ++i) relaxed.m[i] = relaxed.m[i] > 0.01 ? 1.0 : 0.0;
  auto relaxed_loss = [&] {
    peft::rng gr(123);
    return peft_test::dot_loss(m.enc.forward_embedded(h0, m.b, relaxed, peft::mode::train, nullptr, &gr), R);
  };
  const auto rp =
      peft_test::check_gradient(relaxed.m.data(), relaxed.m.size(), dS.data(), relaxed_loss, 1e-6, 300);
  // The input-gradient through the masked weights.
  auto loss = [&] {
    peft::rng gr(123);
    return peft_test::dot_loss(m.enc.forward_embedded(h0, m.b, p, peft::mode::train, nullptr, &gr), R);
  };
  const auto ri = peft_test::check_gradient(h0.data(), h0.size(), dh0.data(), loss, 1e-6, 300, 9);
  INFO(type << ": scores (STE vs relaxed mask FD) max abs err " << rp.max_abs_err << " (rel "
            << rp.max_rel_err << "), input " << ri.max_abs_err << " (rel " << ri.max_rel_err << ")");
  CHECK(rp.max_abs_err < 1e-7);
  CHECK(ri.max_abs_err < 1e-7);
  CHECK(dS.cwiseAbs().maxCoeff() > 1e-3);
  CHECK(dh0.cwiseAbs().maxCoeff() > 1e-3);
  // Masked-out weights get a gradient too (dW_eff .* W is not zero there).
  bool masked_out_has_grad = false;
  for (peft::index i = 0; i < dS.size(); ++i)
    if (relaxed.m[i] == 0.0 && std::abs(dS[i]) > 1e-6) masked_out_has_grad = true;
  CHECK(masked_out_has_grad);
}

/// A hand-made encoder shape (no weights needed), widths chosen freely.
peft::encoder_shape hand_shape(peft::index layers, peft::index width, peft::index inner) {
  peft::encoder_shape s;
  s.model_type = "bert";
  s.num_layers = layers;
  s.num_heads = 2;
  s.embedding_size = width;
  s.hidden_size = width;
  s.intermediate_size = inner;
  s.input_width.assign(std::size_t(layers), width);
  s.attention_width.assign(std::size_t(layers), width);
  s.output_width.assign(std::size_t(layers), width);
  return s;
}

/// Serialises the saved form as a writer honouring `export_dtypes()` does (U8 bytes).
template <typename P>
peft::safetensors_writer u8_writer(const P& p) {
  peft::safetensors_writer w;
  const auto dtypes = p.export_dtypes();
  for (const auto& kv : p.export_tensors()) {
    REQUIRE(dtypes.at(kv.first) == "U8");
    std::vector<std::uint8_t> bytes(kv.second.data.begin(), kv.second.data.end());
    w.add(kv.first, kv.second.shape, bytes);
  }
  return w;
}

}  // namespace

TEST_CASE("mask-tuning straight-through gradient and input gradient inside the encoder", "[mask][grad]") {
  SECTION("bert") { check_mask_gradients<peft::bert>("bert"); }
  SECTION("use_lite") { check_mask_gradients<peft::use_lite>("use_lite"); }
}

TEST_CASE("mask-tuning init follows the reference; an all-ones mask leaves the output unchanged",
          "[mask][init]") {
  small_model<peft::bert> m("bert");
  mask_tuning<double> p(m.enc.shape(), layers_01(), 1);
  // Scores ~ U(-s, (s + tau) / p0 - s) = U(-0.02, 0.58): about 5% of the weights start masked.
  const auto& v = p.parameters().values();
  CHECK(v.minCoeff() >= -0.02);
  CHECK(v.maxCoeff() <= 0.58);
  CHECK(v.maxCoeff() > 0.5);
  INFO("initial sparsity " << p.sparsity() << " over " << p.num_masked_weights() << " weights");
  CHECK(std::abs(p.sparsity() - 0.05) < 0.02);
  const auto plain = m.enc.forward(m.b);
  CHECK((m.enc.forward(m.b, p) - plain).cwiseAbs().maxCoeff() > 0.0);  // the 5% zeros matter
  p.parameters().values().setConstant(1.0);  // every score above tau: the all-ones mask
  CHECK(p.sparsity() == 0.0);
  CHECK((m.enc.forward(m.b, p) - plain).cwiseAbs().maxCoeff() == 0.0);
  p.parameters().values().setConstant(0.01);  // exactly tau is masked (> tau keeps)
  CHECK(p.sparsity() == 1.0);
  CHECK(p.mask(1, linear_id::ffn_out).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("mask-tuning parameters() holds exactly the score blocks", "[mask][params]") {
  small_model<peft::use_lite> m("use_lite");
  const auto s = m.enc.shape();
  mask_tuning_config c;
  c.layers = std::vector<peft::index>{0};
  c.target_modules = {linear_id::value, linear_id::query};
  mask_tuning<double> p(s, c, 0);
  const auto& b = p.parameters().blocks();
  REQUIRE(b.size() == 2);
  CHECK(b[0].name == "use_lite.encoder.layer.0.attention.self.query.weight_mask");
  CHECK(b[1].name == "use_lite.encoder.layer.0.attention.self.value.weight_mask");
  CHECK(b[0].rows == s.attention_width[0]);
  CHECK(b[0].cols == s.input_width[0]);
  CHECK(p.num_parameters() == 2 * s.attention_width[0] * s.input_width[0]);
  CHECK(p.transforms_weight(0, linear_id::query));
  CHECK_FALSE(p.transforms_weight(0, linear_id::key));
  CHECK_FALSE(p.transforms_weight(1, linear_id::query));
  CHECK(p.lowest_layer(2) == 0);

  // Reference defaults on BERT-base: K, Q, V, AO, I, O of layers 2..11.
  mask_tuning<float> base(peft_test::bert_base_shape(), mask_tuning_config{}, 0);
  CHECK(base.parameters().num_blocks() == 60);
  CHECK(base.parameters().block(0).name == "bert.encoder.layer.2.attention.self.query.weight_mask");
  CHECK(base.parameters().block(59).name == "bert.encoder.layer.11.output.dense.weight_mask");
  CHECK(base.num_parameters() == 10 * (4 * 768 * 768 + 2 * 768 * 3072));
  CHECK(base.lowest_layer(12) == 2);
  CHECK(std::abs(base.sparsity() - 0.05) < 0.001);
}

TEST_CASE("mask-tuning training leaves the frozen weights bitwise unchanged; only the scores move",
          "[mask][frozen]") {
  small_model<peft::bert> m("bert");
  const peft::encoder_weights<double> before = m.enc.weights();
  mask_tuning<double> p(m.enc.shape(), layers_01(), 3);
  const mask_tuning<double> untouched = p;
  const auto R = loss_weights<double>(m.b, 16, 1);
  const peft::vector<double> start = p.parameters().values();
  const double sparsity0 = p.sparsity();
  peft_test::sgd_steps(m.enc, m.b, p, R, 4, 0.05);
  CHECK(same_weights(before, m.enc.weights()));
  CHECK((p.parameters().values() - start).cwiseAbs().maxCoeff() > 0);
  CHECK(p.sparsity() != sparsity0);  // some bits flipped
  CHECK(untouched.parameters().values() == start);
}

TEST_CASE("mask-tuning copies are independent", "[mask]") {
  small_model<peft::bert> m("bert");
  mask_tuning<double> a(m.enc.shape(), layers_01(), 2);
  const peft::vector<double> keep = a.parameters().values();
  const double sp = a.sparsity();
  auto b = a;
  b.parameters().values().setConstant(-1.0);
  CHECK(a.parameters().values() == keep);
  CHECK(a.sparsity() == sp);
  CHECK(b.sparsity() == 1.0);
}

TEST_CASE("the saved mask is bit-packed: 1 bit per weight, exact round trip", "[mask][io][bits]") {
  // 3 layers of width 6 (6 x 6 = 36 weights: not a multiple of 8, so padding bits exist).
  const auto s = hand_shape(3, 6, 10);
  mask_tuning<float> p(s, mask_tuning_config{}, 4);  // default: layer 2 only
  REQUIRE(p.parameters().num_blocks() == 6);
  peft::rng g(2);
  for (peft::index i = 0; i < p.num_parameters(); ++i)
    p.parameters().values()[i] = static_cast<float>(0.01 + 0.05 * g.normal());
  const auto t = p.export_tensors();
  REQUIRE(t.size() == 6);
  const auto& q = t.at("bert.encoder.layer.2.attention.self.query.weight_mask");
  CHECK(q.shape == std::vector<std::int64_t>{5});  // ceil(36 / 8)
  // MSB-first packing of the row-major mask.
  const auto M = p.mask(2, linear_id::query);
  for (peft::index k = 0; k < 36; ++k) {
    const auto byte = static_cast<unsigned>(q.data[std::size_t(k / 8)]);
    CHECK(((byte >> (7 - k % 8)) & 1u) == static_cast<unsigned>(M.data()[k]));
  }
  CHECK((static_cast<unsigned>(q.data[4]) & 0x0fu) == 0u);  // padding bits are zero

  mask_tuning<float> r(s, mask_tuning_config{}, 99);
  r.import_tensors(t);
  for (auto w : {linear_id::query, linear_id::key, linear_id::value, linear_id::attn_out, linear_id::ffn_in,
                 linear_id::ffn_out})
    CHECK(r.mask(2, w) == p.mask(2, w));
  CHECK(r.sparsity() == p.sparsity());

  // Corrupt saved forms are rejected, naming the tensor.
  auto bad = t;
  bad.at("bert.encoder.layer.2.attention.self.query.weight_mask").data[4] = 1.0f;  // a padding bit set
  CHECK_THROWS_WITH(r.import_tensors(bad), Catch::Contains("query.weight_mask' padding bits"));
  bad = t;
  bad.at("bert.encoder.layer.2.output.dense.weight_mask").data[0] = 256.0f;
  CHECK_THROWS_WITH(r.import_tensors(bad),
                    Catch::Contains("output.dense.weight_mask' element 0 expected a byte"));
  bad = t;
  bad.at("bert.encoder.layer.2.output.dense.weight_mask").data[0] = 0.5f;
  CHECK_THROWS_AS(r.import_tensors(bad), peft::invalid_argument);
  bad = t;
  bad.erase("bert.encoder.layer.2.intermediate.dense.weight_mask");
  CHECK_THROWS_WITH(r.import_tensors(bad),
                    Catch::Contains("missing tensor 'bert.encoder.layer.2.intermediate.dense"));
  bad = t;
  bad.at("bert.encoder.layer.2.attention.self.key.weight_mask").shape = std::vector<std::int64_t>{4};
  CHECK_THROWS_WITH(r.import_tensors(bad), Catch::Contains("key.weight_mask' shape expected [5], got [4]"));

  // Stored as U8, the file holds 1 bit per weight plus the header.
  const auto shape = hand_shape(3, 256, 1024);
  mask_tuning<float> big(shape, mask_tuning_config{}, 1);
  const auto w = u8_writer(big);
  const std::string bytes = w.serialize();
  const double bits = static_cast<double>(big.num_masked_weights());
  std::uint64_t header = 0;
  for (int i = 0; i < 8; ++i)
    header |= std::uint64_t(static_cast<unsigned char>(bytes[std::size_t(i)])) << (8 * i);
  INFO("file " << bytes.size() << " bytes for " << bits << " weights (header " << header << " bytes)");
  CHECK(static_cast<double>(bytes.size() - 8 - header) == bits / 8);
  CHECK(static_cast<double>(bytes.size()) * 8.0 / bits < 1.01);
  const std::string dir = peft_test::scratch_dir("mask_bits");
  w.save(dir + "/mask.safetensors");
  const auto f = peft::safetensors_file::open(dir + "/mask.safetensors");
  std::map<std::string, peft::tensor> back;
  for (const auto& name : f.names()) {
    CHECK(f.info(name).dtype == peft::safetensors_dtype::u8);
    back.emplace(name, f.load(name));  // U8 read as exact float byte values
    CHECK(f.load_bytes(name).data.size() == std::size_t(f.info(name).numel()));
  }
  mask_tuning<float> big2(shape, mask_tuning_config{}, 5);
  big2.import_tensors(back);
  CHECK(big2.sparsity() == big.sparsity());
  CHECK(big2.mask(2, linear_id::ffn_in) == big.mask(2, linear_id::ffn_in));
  std::filesystem::remove_all(dir);
}

TEST_CASE("mask-tuning save/load round trip and rejected checkpoints", "[mask][io]") {
  small_model<peft::bert> m("bert");  // double: the saved mask reproduces it exactly anyway
  mask_tuning<double> a(m.enc.shape(), layers_01(), 9);
  peft::rng g(1);
  for (peft::index i = 0; i < a.num_parameters(); ++i) a.parameters().values()[i] = 0.01 + 0.05 * g.normal();
  const std::string dir = peft_test::scratch_dir("mask_io");
  peft::save_policy(dir, a);
  auto b = peft::load_policy<mask_tuning<double>>(dir, m.enc.shape());
  CHECK(b.sparsity() == a.sparsity());
  CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));
  CHECK(b.config().layers == a.config().layers);

  const auto j = peft::read_adapter_config(dir);
  CHECK(j["peft_type"] == "MASK_TUNING");
  CHECK(j["threshold"] == 0.01);
  const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  const std::string key = "bert.encoder.layer.1.intermediate.dense.weight_mask";
  CHECK(f.info(key).shape == std::vector<std::int64_t>{24 * 16 / 8});
  const auto file_bytes = std::filesystem::file_size(dir + "/adapter_model.safetensors");
  const double bits = static_cast<double>(a.num_masked_weights());
  if (f.info(key).dtype == peft::safetensors_dtype::u8) {
    CHECK(static_cast<double>(file_bytes - f.data_start()) == bits / 8);
  } else {
    FAIL("save_policy stored the packed mask as "
         << peft::to_string(f.info(key).dtype) << " ("
         << (static_cast<double>(file_bytes - f.data_start()) * 8 / bits)
         << " bits per weight); honour export_dtypes() to get 1 bit");
  }

  small_model<peft::use_lite> other("use_lite");
  CHECK_THROWS_WITH(peft::load_policy<mask_tuning<double>>(dir, other.enc.shape()),
                    Catch::Contains("'model_type' expected \"use_lite\""));
  auto deeper = m.enc.shape();
  deeper.num_layers = 3;
  CHECK_THROWS_WITH(peft::load_policy<mask_tuning<double>>(dir, deeper),
                    Catch::Contains("'num_layers' expected 3"));
  CHECK_THROWS_WITH(peft::load_policy<peft::prefix_tuning<double>>(dir, m.enc.shape()),
                    Catch::Contains("'peft_type' expected \"PREFIX_TUNING\", got \"MASK_TUNING\""));
  {
    auto j2 = j;
    j2["layers"] = {1};
    std::ofstream(dir + "/adapter_config.json") << j2.dump();
    CHECK_THROWS_WITH(peft::load_policy<mask_tuning<double>>(dir, m.enc.shape()),
                      Catch::Contains("unexpected tensor 'bert.encoder.layer.0."));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("mask-tuning bad hyper-parameters throw, naming the field", "[mask][errors]") {
  const auto s = small_model<peft::bert>("bert").enc.shape();
  // The reference's "layers >= 2" would mask nothing in a 2-layer encoder: every layer then.
  CHECK(mask_tuning<double>(s, mask_tuning_config{}, 0).config().layers == std::vector<peft::index>{0, 1});
  auto c = layers_01();
  c.threshold = std::nan("");
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0), Catch::Contains("threshold expected finite"));
  c = layers_01();
  c.init_scale = 0;
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0), Catch::Contains("init_scale expected > 0, got 0"));
  c = layers_01();
  c.init_sparsity = 1.5;
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0),
                    Catch::Contains("init_sparsity expected in (0, 1], got 1.5"));
  c = layers_01();
  c.threshold = -0.5;
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0), Catch::Contains("init_scale + threshold expected > 0"));
  c = layers_01();
  c.layers = std::vector<peft::index>{3};
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0), Catch::Contains("layers entry expected in [0, 2), got 3"));
  c = layers_01();
  c.target_modules = {};
  CHECK_THROWS_WITH(mask_tuning<double>(s, c, 0), Catch::Contains("target_modules expected at least 1"));
  mask_tuning<double> p(s, layers_01(), 0);
  CHECK_THROWS_WITH(p.mask(5, linear_id::query), Catch::Contains("layer 5 query is not masked"));
}

TEST_CASE("mask-tuning on the real USE-lite encoder: forward, backward, sparsity", "[mask][use_lite]") {
  peft::encoder<peft::use_lite, double> enc(peft::load_use_lite<double>(peft_test::use_lite_dir()));
  const auto shape = enc.shape();
  INFO("USE-lite: " << shape.num_layers << " layers");
  mask_tuning_config c;
  c.layers = std::vector<peft::index>{shape.num_layers - 1};  // the top layer (USE-lite has 2)
  mask_tuning<double> p(shape, c, 1);
  CHECK(p.lowest_layer(shape.num_layers) == shape.num_layers - 1);
  CHECK(std::abs(p.sparsity() - 0.05) < 0.002);
  auto b = peft::make_batch({{5, 120, 431, 77, 9}, {5, 300, 9}}, 0);
  const auto R = loss_weights<double>(b, enc.hidden_size(), 2);
  auto loss = [&] { return peft_test::dot_loss(enc.forward(b, p), R); };
  const double before = loss();
  peft::encoder_tape<double, mask_tuning<double>> tape;
  peft::rng gen(4);
  enc.forward(b, p, peft::mode::train, &tape, &gen);
  p.parameters().zero_grad();
  enc.backward(R, p, tape);  // stops at the masked layer
  const auto& G = p.parameters().grads();
  REQUIRE(G.cwiseAbs().maxCoeff() > 0);
  // Flip exactly the bits with the largest first-order gain, -dL/dM * (M' - M) > 0.
  const auto& S = p.parameters().values();
  std::vector<std::pair<double, peft::index>> gain;
  for (peft::index i = 0; i < S.size(); ++i) {
    const double m = S[i] > 0.01 ? 1.0 : 0.0;
    gain.emplace_back(-G[i] * (1.0 - 2.0 * m), i);
  }
  std::partial_sort(gain.begin(), gain.begin() + 20, gain.end(), std::greater<>());
  for (int k = 0; k < 20; ++k) {
    const auto i = gain[std::size_t(k)].second;
    p.parameters().values()[i] = S[i] > 0.01 ? -0.01 : 0.03;
  }
  const double after = loss();
  INFO("loss " << before << " -> " << after << " after flipping the 20 best bits");
  CHECK(after < before);
}
