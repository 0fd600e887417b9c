// SPDX-License-Identifier: Apache-2.0
// LoRA: gradients by finite differences inside the encoder, identity at init, frozen weights,
// parameter blocks, copies, checkpoints, merge/unmerge, and a step on the real USE-lite.
// (IA)3, the other policy on the frozen linears: its gradients on both sides of a linear, its
// merge, and its folders both ways with Hugging Face PEFT. Prompt tuning, Hugging Face PEFT's
// input-side method: its virtual tokens, initialisations and folders. BitFit: its gradients
// (LayerNorm biases included) and its biases against a backbone whose biases were changed. The folders written by
// Hugging Face PEFT are checked against PyTorch (tests/reference/torch_hf_peft.py).
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/bitfit.hpp>
#include <peft/policies/ia3.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/prompt_tuning.hpp>
#include <peft/task/heads.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gradcheck.hpp"
#include "reference_compare.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft::linear_id;
using peft::lora;
using peft::lora_config;
using peft_test::loss_weights;
using peft_test::same_weights;
using peft_test::small_model;

namespace {

lora_config all_linears(peft::index r, double alpha, double dropout) {
  lora_config c;
  c.r = r;
  c.lora_alpha = alpha;
  c.lora_dropout = dropout;
  c.target_modules = {linear_id::query,    linear_id::key,    linear_id::value,
                      linear_id::attn_out, linear_id::ffn_in, linear_id::ffn_out};
  return c;
}

template <typename Arch>
void check_lora_gradients(const std::string& type) {
  small_model<Arch> m(type);
  lora<double> p(m.enc.shape(), all_linears(3, 6.0, 0.25), 5);
  peft_test::randomise(p.parameters().values(), 0.3, 17);  // B != 0 so every path is exercised
  auto r =
      peft_test::check_policy_in_encoder(m.enc, m.b, p, p.parameters().values(), p.parameters().grads(), 300);
  INFO(type << ": params max abs err " << r.params.max_abs_err << " (rel " << r.params.max_rel_err
            << "), input " << r.input.max_abs_err << " (rel " << r.input.max_rel_err << ")");
  CHECK(r.params.max_abs_err < 1e-7);
  CHECK(r.input.max_abs_err < 1e-7);
  CHECK(r.max_param_grad > 1e-3);
  CHECK(r.max_input_grad > 1e-3);
}

}  // namespace

TEST_CASE("LoRA gradients match finite differences inside the encoder (dropout on)", "[lora][grad]") {
  SECTION("bert") { check_lora_gradients<peft::bert>("bert"); }
  SECTION("use_lite") { check_lora_gradients<peft::use_lite>("use_lite"); }
}

TEST_CASE("LoRA with B = 0 leaves the encoder output unchanged", "[lora][init]") {
  small_model<peft::bert> m("bert");
  lora<double> p(m.enc.shape(), all_linears(4, 8.0, 0.0), 1);
  // A is Kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)); B is zero.
  const auto A = p.parameters().value(0);
  CHECK(A.cwiseAbs().maxCoeff() <= 1.0 / std::sqrt(16.0));
  CHECK(A.cwiseAbs().maxCoeff() > 0.5 / std::sqrt(16.0));
  CHECK(p.parameters().value(1).cwiseAbs().maxCoeff() == 0.0);
  const auto plain = m.enc.forward(m.b);
  CHECK((m.enc.forward(m.b, p) - plain).cwiseAbs().maxCoeff() == 0.0);
  small_model<peft::use_lite> u("use_lite");
  lora<double> q(u.enc.shape(), all_linears(4, 8.0, 0.0), 1);
  CHECK((u.enc.forward(u.b, q) - u.enc.forward(u.b)).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("LoRA parameters() holds exactly the lora_A / lora_B blocks", "[lora][params]") {
  small_model<peft::bert> m("bert");
  lora<double> p(m.enc.shape(), lora_config{}, 0);  // peft defaults: r 8, query + value, every layer
  const auto& blocks = p.parameters().blocks();
  REQUIRE(blocks.size() == 8);
  const char* want[] = {"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight",
                        "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight",
                        "base_model.model.bert.encoder.layer.0.attention.self.value.lora_A.weight",
                        "base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight",
                        "base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.weight",
                        "base_model.model.bert.encoder.layer.1.attention.self.query.lora_B.weight",
                        "base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight",
                        "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"};
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    CHECK(blocks[i].name == want[i]);
    CHECK(blocks[i].group == peft::param_group::weight);
    CHECK(blocks[i].size() == 8 * 16);
  }
  CHECK(blocks[0].rows == 8);
  CHECK(blocks[0].cols == 16);
  CHECK(blocks[1].rows == 16);
  CHECK(blocks[1].cols == 8);
  CHECK(p.num_parameters() == 8 * 128);
  CHECK(p.scaling() == 1.0);
  CHECK(p.lowest_layer(2) == 0);

  // Chosen layers and linears; USE-lite's layer 0 is narrower than its output.
  small_model<peft::use_lite> u("use_lite");
  const auto s = u.enc.shape();
  lora_config c;
  c.r = 2;
  c.target_modules = {linear_id::ffn_out, linear_id::key};
  c.layers_to_transform = std::vector<peft::index>{0};
  lora<double> q(s, c, 0);
  REQUIRE(q.parameters().num_blocks() == 4);
  CHECK(q.parameters().block(0).name ==
        "base_model.model.use_lite.encoder.layer.0.attention.self.key.lora_A.weight");
  CHECK(q.parameters().block(0).cols == s.input_width[0]);
  CHECK(q.parameters().block(1).rows == s.attention_width[0]);
  CHECK(q.parameters().block(2).name ==
        "base_model.model.use_lite.encoder.layer.0.output.dense.lora_A.weight");
  CHECK(q.parameters().block(2).cols == s.intermediate_size);
  CHECK(q.parameters().block(3).rows == s.output_width[0]);
  CHECK(q.has_path(0, linear_id::key));
  CHECK_FALSE(q.has_path(1, linear_id::key));
  CHECK_FALSE(q.has_path(0, linear_id::query));

  // BERT-base with peft's defaults: 294,912 trainable parameters (0.27% of the backbone).
  lora<float> base(peft_test::bert_base_shape(), lora_config{}, 0);
  CHECK(base.num_parameters() == 294912);
}

TEST_CASE("LoRA training leaves the frozen weights bitwise unchanged; only LoRA moves", "[lora][frozen]") {
  small_model<peft::bert> m("bert");
  const peft::encoder_weights<double> before = m.enc.weights();
  lora<double> p(m.enc.shape(), all_linears(2, 4.0, 0.1), 3);
  const lora<double> untouched = p;
  const auto R = loss_weights<double>(m.b, 16, 1);
  const peft::vector<double> start = p.parameters().values();
  const auto loss = peft_test::sgd_steps(m.enc, m.b, p, R, 4, 0.05);
  CHECK(same_weights(before, m.enc.weights()));
  CHECK((p.parameters().values() - start).cwiseAbs().maxCoeff() > 0);
  CHECK(untouched.parameters().values() == start);
  INFO("loss " << loss.first << " -> " << loss.last);
  CHECK(loss.last < loss.first);
}

TEST_CASE("LoRA copies are independent", "[lora]") {
  small_model<peft::bert> m("bert");
  lora<double> a(m.enc.shape(), lora_config{}, 2);
  const peft::vector<double> keep = a.parameters().values();
  auto b = a;
  b.parameters().values().array() += 1.0;
  b.parameters().grads().setOnes();
  CHECK(a.parameters().values() == keep);
  CHECK(a.parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(b.parameters().values() != keep);
}

TEST_CASE("LoRA merge gives the policy's outputs; unmerge restores the copy exactly", "[lora][merge]") {
  small_model<peft::bert, float> m("bert");
  const peft::encoder_weights<float> original = m.enc.weights();
  auto c = all_linears(4, 16.0, 0.1);
  c.layers_to_transform = std::vector<peft::index>{1};
  lora<float> p(m.enc.shape(), c, 7);
  peft::rng g(5);
  for (peft::index i = 0; i < p.num_parameters(); ++i)
    p.parameters().values()[i] = static_cast<float>(g.normal() * 0.2);

  auto merged = p.merge(m.enc.weights());
  CHECK(same_weights(original, m.enc.weights()));  // the shared frozen weights are untouched
  CHECK(merged->layers[1].query.weight != original.layers[1].query.weight);
  CHECK(merged->layers[0].query.weight == original.layers[0].query.weight);
  peft::encoder<peft::bert, float> merged_enc(merged);
  const auto with_policy = m.enc.forward(m.b, p);
  const auto with_merge = merged_enc.forward(m.b);
  const double diff = (with_policy - with_merge).cwiseAbs().maxCoeff();
  INFO("max |policy - merged| = " << diff);
  CHECK(diff < 1e-5);

  p.unmerge(*merged, m.enc.weights());
  CHECK(same_weights(original, *merged));
  CHECK(same_weights(original, m.enc.weights()));
  CHECK(merged_enc.forward(m.b) == m.enc.forward(m.b));

  small_model<peft::use_lite, float> u("use_lite");
  CHECK_THROWS_WITH(p.merge(u.enc.weights()),
                    Catch::Contains("lora::merge: weights model_type expected 'bert'"));
  auto narrow = peft_test::small_config("bert");
  narrow.intermediate_size = 20;
  CHECK_THROWS_WITH(p.merge(*peft::random_encoder_weights<float>(narrow, 1)),
                    Catch::Contains("layer 1 ffn_in weight shape expected [24, 16], got [20, 16]"));
}

TEST_CASE("LoRA save/load round trip and rejected checkpoints", "[lora][io]") {
  small_model<peft::bert, float> m("bert");
  auto c = all_linears(3, 6.0, 0.1);
  c.layers_to_transform = std::vector<peft::index>{1};
  lora<float> a(m.enc.shape(), c, 9);
  peft::rng g(1);
  for (peft::index i = 0; i < a.num_parameters(); ++i)
    a.parameters().values()[i] = static_cast<float>(g.normal() * 0.2);
  const std::string dir = peft_test::scratch_dir("lora_io");
  peft::save_policy(dir, a);
  auto b = peft::load_policy<lora<float>>(dir, m.enc.shape());
  CHECK(b.parameters().values() == a.parameters().values());
  CHECK(b.config().layers_to_transform == c.layers_to_transform);
  CHECK(b.config().target_modules.size() == 6);
  CHECK(b.scaling() == a.scaling());
  CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));

  const auto j = peft::read_adapter_config(dir);
  CHECK(j["peft_type"] == "LORA");
  CHECK(j["r"] == 3);
  CHECK(j["lora_alpha"] == 6.0);
  const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(f.info("base_model.model.bert.encoder.layer.1.intermediate.dense.lora_A.weight").shape ==
        std::vector<std::int64_t>{3, 16});
  CHECK(f.info("base_model.model.bert.encoder.layer.1.intermediate.dense.lora_B.weight").shape ==
        std::vector<std::int64_t>{24, 3});

  small_model<peft::use_lite, float> other("use_lite");
  CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, other.enc.shape()),
                    Catch::Contains("'model_type' expected \"use_lite\""));
  auto deeper = m.enc.shape();
  deeper.num_layers = 3;
  CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, deeper), Catch::Contains("'num_layers' expected 3"));
  CHECK_THROWS_WITH(peft::load_policy<peft::mask_tuning<float>>(dir, m.enc.shape()),
                    Catch::Contains("'peft_type' expected \"MASK_TUNING\", got \"LORA\""));
  {
    auto j2 = j;
    j2["r"] = 4;
    std::ofstream(dir + "/adapter_config.json") << j2.dump();
    CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, m.enc.shape()),
                      Catch::Contains("lora_A.weight' shape expected [4, 16], got [3, 16]"));
  }
  {
    auto j2 = j;
    j2["target_modules"] = {"query", "pooler"};
    std::ofstream(dir + "/adapter_config.json") << j2.dump();
    CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, m.enc.shape()), Catch::Contains("'pooler'"));
  }
  {
    auto j2 = j;
    j2["target_modules"] = {"query"};
    std::ofstream(dir + "/adapter_config.json") << j2.dump();
    CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, m.enc.shape()),
                      Catch::Contains("unexpected tensor"));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("LoRA bad hyper-parameters throw, naming the field", "[lora][errors]") {
  const auto s = small_model<peft::bert>("bert").enc.shape();
  lora_config c;
  c.r = 0;
  CHECK_THROWS_WITH(lora<double>(s, c, 0), Catch::Contains("r expected > 0, got 0"));
  c = lora_config{};
  c.lora_dropout = 1.0;
  CHECK_THROWS_WITH(lora<double>(s, c, 0), Catch::Contains("lora_dropout expected in [0, 1)"));
  c = lora_config{};
  c.lora_alpha = std::nan("");
  CHECK_THROWS_WITH(lora<double>(s, c, 0), Catch::Contains("lora_alpha expected finite"));
  c = lora_config{};
  c.target_modules.clear();
  CHECK_THROWS_WITH(lora<double>(s, c, 0), Catch::Contains("target_modules expected at least 1"));
  c = lora_config{};
  c.layers_to_transform = std::vector<peft::index>{0, 2};
  CHECK_THROWS_WITH(lora<double>(s, c, 0),
                    Catch::Contains("layers_to_transform entry expected in [0, 2), got 2"));
  CHECK_THROWS_WITH(peft::parse_linear_id("dense", "test"), Catch::Contains("got 'dense'"));
}

TEST_CASE("LoRA on the real USE-lite encoder: one step lowers the loss", "[lora][use_lite]") {
  peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(peft_test::use_lite_dir()));
  const auto shape = enc.shape();
  lora<float> p(shape, all_linears(4, 8.0, 0.0), 1);
  // Layer 0 reads 256 and its Q/K/V are 256 wide; its attention output writes 512.
  CHECK(p.parameters().block(0).cols == shape.input_width[0]);
  CHECK(p.parameters().block(1).rows == shape.attention_width[0]);
  CHECK(p.parameters().block(7).rows == shape.output_width[0]);
  auto b = peft::make_batch({{5, 120, 431, 77, 9}, {5, 300, 9}}, 0);
  const auto R = loss_weights<float>(b, enc.hidden_size(), 2);
  auto loss = [&] { return peft_test::dot_loss(enc.forward(b, p), R); };
  const double before = loss();
  peft::encoder_tape<float, lora<float>> tape;
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
}

TEST_CASE("LoRA's output is the frozen encoder's with (alpha / r) B A added to each target weight by hand",
          "[lora][reference]") {
  // The published update, computed here from the saved blocks and the config alone, with
  // alpha != r: a wrong scale (r / alpha, 1, alpha) or a transposed product changes the output.
  // rsLoRA (use_rslora) scales by alpha / sqrt(r) instead; the config carries it through a
  // save, and a config without the field (older Hugging Face files) means plain LoRA.
  small_model<peft::bert> m("bert");
  for (const bool rs : {false, true}) {
    INFO("use_rslora " << rs);
    lora_config c;
    c.r = 2;
    c.lora_alpha = 6.0;
    c.lora_dropout = 0.0;
    c.use_rslora = rs;
    c.target_modules = {linear_id::query, linear_id::value};
    lora<double> p(m.enc.shape(), c, 3);
    peft_test::randomise(p.parameters().values(), 0.3, 5);
    const auto with_lora = m.enc.forward(m.b, p);

    peft::encoder_weights<double> w = m.enc.weights();
    const double scale = c.lora_alpha / (rs ? std::sqrt(double(c.r)) : double(c.r));
    CHECK(p.scaling() == scale);
    using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    auto block = [&](const std::string& name) {
      for (const auto& b : p.parameters().blocks())
        if (b.name == name)
          return row_major(
              Eigen::Map<const row_major>(p.parameters().values().data() + b.offset, b.rows, b.cols));
      FAIL("no block " << name);
      return row_major();
    };
    for (int l = 0; l < 2; ++l)
      for (const char* t : {"query", "value"}) {
        const std::string at =
            "base_model.model.bert.encoder.layer." + std::to_string(l) + ".attention.self." + t;
        auto& lw =
            std::string(t) == "query" ? w.layers[std::size_t(l)].query : w.layers[std::size_t(l)].value;
        lw.weight += scale * block(at + ".lora_B.weight") * block(at + ".lora_A.weight");
      }
    peft::encoder<peft::bert, double> by_hand(std::make_shared<const peft::encoder_weights<double>>(w));
    const double diff = (by_hand.forward(m.b) - with_lora).cwiseAbs().maxCoeff();
    INFO("max abs difference " << diff);
    CHECK(diff < 1e-12);
    CHECK((with_lora - m.enc.forward(m.b)).cwiseAbs().maxCoeff() > 1e-3);  // the update is not negligible

    auto j = p.config_json();
    CHECK(j.at("use_rslora") == rs);
    CHECK(lora<double>::from_config(j, m.enc.shape()).scaling() == scale);
    j.erase("use_rslora");
    CHECK(lora<double>::from_config(j, m.enc.shape()).scaling() == c.lora_alpha / double(c.r));
  }
}

// ---- Hugging Face PEFT folders ----------------------------------------------------------

namespace {

struct hf_fixture : peft_test::reference_bert {
  hf_fixture() : reference_bert(peft_test::reference_dir() + "/hf_peft") {}
};

/// Largest difference between PyTorch's logits (fixture folder @p name's logits.npy) and those of
/// the folder's modules_to_save classifier over BERT's pooler on the encoder with policy @p p,
/// on the fixture's batch or @p input.
template <typename P>
double max_logits_diff(const hf_fixture& f, const P& p, const std::string& name, const peft::batch* input = nullptr) {
  const peft::batch& in = input ? *input : f.b;
  const auto modules = peft::read_saved_modules(f.dir + "/" + name);
  REQUIRE(modules.size() == 2);
  peft::classification_head<float> head(f.enc.hidden_size(), 3, peft::pool_kind::pooler, 0.1, 0);
  peft::load_store_tensors(head.parameters(), modules, "test");
  const auto logits = head.forward(*f.weights, f.enc.forward(in, p), in, peft::mode::eval, nullptr, nullptr);
  return peft_test::max_matrix_diff(logits, f.dir + "/" + name + "/logits.npy");
}

/// Fixture folder @p name copied to scratch with its config edited by @p edit.
template <typename F>
std::string edited_copy(const hf_fixture& f, const std::string& name, F edit) {
  return peft_test::edited_copy(f.dir + "/" + name, "lora_hf_" + name, edit);
}

}  // namespace

TEST_CASE("LoRA folders written by Hugging Face PEFT load and compute what PyTorch computes", "[lora][hf]") {
  hf_fixture f;
  // Against PyTorch's float64 forward of the paper's math on the stored float32 values; the
  // float encoder agrees to about 2e-6 here.
  for (const char* name : {"lora_seqcls", "lora_model", "lora_bare"}) {
    const std::string dir = f.dir + "/" + name;
    const auto p = peft::load_policy<lora<float>>(dir, f.enc.shape());
    const double d = peft_test::max_hidden_diff(f.enc.forward(f.b, p), dir + "/hidden.npy", f.b);
    INFO(name << ": hidden states max abs diff " << d);
    CHECK(d <= 1e-5);
    std::printf("hf_peft %-12s hidden max abs diff %.2g\n", name, d);
  }

  // A sequence classifier's folder: rsLoRA, a rank and an alpha pattern, the classifier.
  const auto cls = peft::load_policy<lora<float>>(f.dir + "/lora_seqcls", f.enc.shape());
  CHECK(cls.config().use_rslora);
  CHECK(cls.config().target_modules ==
        std::vector<linear_id>{linear_id::query, linear_id::value, linear_id::ffn_in});
  CHECK(cls.config().layers_to_transform == std::vector<peft::index>{0, 1});
  CHECK(cls.rank(0, linear_id::query) == 4);
  CHECK(cls.rank(1, linear_id::query) == 2);  // rank_pattern "layer\\.1\\.attention\\.self\\.query"
  CHECK(cls.scaling(1, linear_id::query) == Approx(8 / std::sqrt(2.0)));
  CHECK(cls.scaling(0, linear_id::ffn_in) ==
        Approx(3 / std::sqrt(4.0)));  // alpha_pattern "intermediate.dense"
  CHECK(cls.scaling(0, linear_id::key) == 0);
  const double d = max_logits_diff(f, cls, "lora_seqcls");
  INFO("classifier logits max abs diff " << d);
  CHECK(d <= 1e-5);
  std::printf("hf_peft %-12s logits max abs diff %.2g\n", "lora_seqcls", d);

  // BertModel keys and a regular expression; transformers' own keys, one layer, "output.dense".
  const auto model = peft::load_policy<lora<float>>(f.dir + "/lora_model", f.enc.shape());
  CHECK(model.config().target_modules == std::vector<linear_id>{linear_id::key, linear_id::attn_out});
  CHECK(model.config().layers_to_transform == std::vector<peft::index>{0, 1});
  CHECK(peft::read_saved_modules(f.dir + "/lora_model").empty());
  const auto bare = peft::load_policy<lora<float>>(f.dir + "/lora_bare", f.enc.shape());
  CHECK(bare.config().target_modules == std::vector<linear_id>{linear_id::attn_out, linear_id::ffn_out});
  CHECK(bare.config().layers_to_transform == std::vector<peft::index>{1});
}

TEST_CASE("LoRA folders peft writes are Hugging Face PEFT's layout and read back bitwise", "[lora][hf][io]") {
  small_model<peft::bert, float> m("bert");
  peft::rng g(5);
  for (const bool attn_out : {false, true}) {
    lora_config c;
    c.r = 3;
    c.lora_alpha = 5;
    c.target_modules = {linear_id::query, linear_id::ffn_out};
    if (attn_out) c.target_modules.push_back(linear_id::attn_out);
    c.layers_to_transform = attn_out ? std::vector<peft::index>{0, 1} : std::vector<peft::index>{1};
    c.rank_pattern = {{"encoder.layer.1.output.dense", 2}};
    c.alpha_pattern = {{"query", 7.0}};
    lora<float> a(m.enc.shape(), c, 3);
    for (peft::index i = 0; i < a.num_parameters(); ++i)
      a.parameters().values()[i] = static_cast<float>(g.normal() * 0.2);
    const std::string dir = peft_test::scratch_dir("lora_hf_out");
    peft::save_policy(dir, a, {"/models/tiny-bert", "SEQ_CLS"});
    const auto j = peft::read_adapter_config(dir);
    INFO(j.dump(2));
    // Hugging Face PEFT's fields and values; peft's own under "peft_cpp" only.
    CHECK(j["peft_type"] == "LORA");
    CHECK(j["task_type"] == "SEQ_CLS");
    CHECK(j["base_model_name_or_path"] == "/models/tiny-bert");
    CHECK(j["bias"] == "none");
    CHECK(j["use_dora"] == false);
    CHECK(j["fan_in_fan_out"] == false);
    CHECK(j["use_rslora"] == false);
    CHECK(j["rank_pattern"] == nlohmann::json({{"encoder.layer.1.output.dense", 2}}));
    CHECK(j["alpha_pattern"] == nlohmann::json({{"query", 7.0}}));
    for (const char* k :
         {"model_type", "num_layers", "hidden_size", "embedding_size", "peft_version", "base_model"})
      CHECK_FALSE(j.contains(k));
    CHECK(j["peft_cpp"]["version"] == peft::version_string);
    CHECK(j["peft_cpp"]["model_type"] == "bert");
    CHECK(j["peft_cpp"]["weights_fnv1a64"].is_string());
    if (attn_out) {
      // Every layer; "output.dense" also ends attention.output.dense, which is chosen too.
      CHECK(j["target_modules"] == nlohmann::json({"query", "attention.output.dense", "output.dense"}));
      CHECK(j["layers_to_transform"].is_null());
    } else {
      // output.dense without attention.output.dense: only a regular expression says so.
      CHECK(j["target_modules"] == ".*\\.layer\\.(?:1)\\.(?:attention\\.self\\.query|output\\.dense)");
      CHECK(j["layers_to_transform"].is_null());
    }
    const auto b = peft::load_policy<lora<float>>(dir, m.enc.shape());
    CHECK(b.parameters().values() == a.parameters().values());
    CHECK(b.config().target_modules == a.config().target_modules);
    CHECK(b.config().layers_to_transform == a.config().layers_to_transform);
    CHECK(b.rank(1, linear_id::ffn_out) == 2);
    CHECK(b.scaling(1, linear_id::query) == a.scaling(1, linear_id::query));
    CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("Hugging Face LoRA configs: patterns, exclusions and layers resolved as Hugging Face PEFT does",
          "[lora][hf]") {
  const auto shape = small_model<peft::bert, float>("bert").enc.shape();  // 2 layers
  auto native = [&](nlohmann::json j) {
    std::map<std::string, peft::tensor> none, modules;
    return peft::detail::to_native(j, none, shape, modules, "test");
  };
  using J = nlohmann::json;
  const J base = {{"peft_type", "LORA"}, {"r", 4}, {"lora_alpha", 8}, {"target_modules", {"query", "dense"}}};
  // "dense" ends attention.output.dense, intermediate.dense and output.dense.
  auto n = native(base);
  CHECK(n["target_modules"] == J({"query", "attn_out", "ffn_in", "ffn_out"}));
  CHECK(n["layers_to_transform"] == J({0, 1}));
  CHECK(n["model_type"] == "bert");  // a foreign folder takes the encoder it is loaded onto
  // Of two matching keys the first in sorted order wins ("layer\\.1\\..*" < "query").
  auto j = base;
  j["rank_pattern"] = {{"query", 2}, {"layer\\.1\\..*", 3}};
  n = native(j);
  CHECK(n["rank_pattern"]["encoder.layer.0.attention.self.query"] == 2);
  CHECK(n["rank_pattern"]["encoder.layer.1.attention.self.query"] == 3);
  CHECK(n["rank_pattern"]["encoder.layer.1.intermediate.dense"] == 3);
  CHECK_FALSE(n["rank_pattern"].contains("encoder.layer.0.intermediate.dense"));
  // exclude_modules (a list by suffix, a string as a whole-path expression), layers_to_transform.
  j = base;
  j["exclude_modules"] = {"intermediate.dense", "output.dense"};
  j["layers_to_transform"] = J::array({1});
  n = native(j);
  CHECK(n["target_modules"] == J({"query"}));
  CHECK(n["layers_to_transform"] == J({1}));
  j = base;
  j["exclude_modules"] = ".*\\.layer\\.\\d+\\.(intermediate|output)\\.dense";  // not attention.output.dense
  CHECK(native(j)["target_modules"] == J({"query", "attn_out"}));
  j["exclude_modules"] = J::array({"query", "dense"});
  CHECK_THROWS_WITH(native(j), Catch::Contains("matches none of the encoder's linears"));
}

TEST_CASE("Hugging Face LoRA fields peft cannot honour are refused, each by name", "[lora][hf][errors]") {
  hf_fixture f;
  const auto shape = f.enc.shape();
  auto refused = [&](const std::string& name, auto edit, const std::string& expect) {
    const std::string dir = edited_copy(f, name, edit);
    CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, shape), Catch::Contains(expect));
    std::filesystem::remove_all(dir);
  };
  using J = nlohmann::json;
  refused(
      "lora_seqcls", [](J& j) { j["init_lora_weights"] = "pissa_niter_4"; },
      "'init_lora_weights' is \"pissa_niter_4\", which changes the frozen weights");
  refused(
      "lora_seqcls", [](J& j) { j["use_dora"] = true; }, "'use_dora' expected false (DoRA");
  refused(
      "lora_seqcls", [](J& j) { j["bias"] = "lora_only"; }, "'bias' expected \"none\"");
  refused(
      "lora_seqcls",
      [](J& j) {
        j["layer_replication"] = J::array({J::array({0, 1})});
      },
      "'layer_replication' is not supported");
  refused(
      "lora_seqcls", [](J& j) { j["layers_pattern"] = "h"; }, "'layers_pattern' expected null or \"layer\"");
  refused(
      "lora_seqcls", [](J& j) { j["modules_to_save"] = J::array({"pooler"}); }, "'modules_to_save'");
  refused(
      "lora_seqcls",
      [](J& j) {
        j["target_modules"] = J::array({"query", "pooler"});
      },
      "entry 'pooler' names none of the encoder's linears");
  refused(
      "lora_model", [](J& j) { j["target_modules"] = ".*layer\\.(?P<i>0)\\.attention\\.self\\.key"; },
      "cannot compile");
  refused(
      "lora_model",
      [](J& j) {
        j["target_modules"] = ".*layer\\.0\\.attention\\.self\\.key|.*layer\\.1\\.attention\\.output\\.dense";
      },
      "chooses different linears in different layers");
  // A hostile pattern: exponential for a backtracking matcher over a 40-character path.
  refused(
      "lora_model", [](J& j) { j["target_modules"] = "(.|.)*x"; }, "matches none of the encoder's linears");
  refused(
      "lora_model", [](J& j) { j["target_modules"] = std::string(2000, '('); }, "expected at most 1024");
  refused(
      "lora_model", [](J& j) { j["layers_to_transform"] = 0; },
      "'layers_to_transform' expected null with a regular");
  // A LoRA on a module outside the encoder's linears (here the pooler, as target_modules
  // ["dense"] would give): refused by the tensor's name.
  {
    const std::string dir =
        edited_copy(f, "lora_bare", [](J& j) { j["target_modules"] = J::array({"dense"}); });
    auto t = peft::detail::read_all_tensors(dir + "/adapter_model.safetensors");
    t["bert.pooler.dense.lora_A.weight"] = t.begin()->second;
    peft::save_safetensors(dir + "/adapter_model.safetensors", t, {{"format", "pt"}});
    CHECK_THROWS_WITH(
        peft::load_policy<lora<float>>(dir, shape),
        Catch::Contains("'bert.pooler.dense.lora_A.weight' is a LoRA on module 'bert.pooler.dense'"));
    std::filesystem::remove_all(dir);
  }
}

// ---- (IA)3 ---------------------------------------------------------------------------------

namespace {

/// (IA)3 on every linear; key and ffn_out scale their input (key's input gradient is summed with
/// query's and value's), the rest their output.
peft::ia3_config ia3_everywhere() {
  peft::ia3_config c;
  c.target_modules = {linear_id::query,    linear_id::key,    linear_id::value,
                      linear_id::attn_out, linear_id::ffn_in, linear_id::ffn_out};
  c.feedforward_modules = {linear_id::key, linear_id::ffn_out};
  return c;
}

template <typename Arch>
void check_ia3_gradients(const std::string& type) {
  small_model<Arch> m(type);
  peft::ia3<double> p(m.enc.shape(), ia3_everywhere(), 0);
  peft_test::randomise(p.parameters().values(), 0.3, 21);  // away from ones: every path counts
  auto r =
      peft_test::check_policy_in_encoder(m.enc, m.b, p, p.parameters().values(), p.parameters().grads(), 300);
  INFO(type << ": params max abs err " << r.params.max_abs_err << ", input " << r.input.max_abs_err);
  CHECK(r.params.max_abs_err < 1e-7);
  CHECK(r.input.max_abs_err < 1e-7);
  CHECK(r.max_param_grad > 1e-3);
  CHECK(r.max_input_grad > 1e-3);
}

}  // namespace

TEST_CASE("(IA)3 gradients match finite differences, input and output scales", "[ia3][grad]") {
  SECTION("bert") { check_ia3_gradients<peft::bert>("bert"); }
  SECTION("use_lite") { check_ia3_gradients<peft::use_lite>("use_lite"); }
}

TEST_CASE("(IA)3 starts as the identity, has Hugging Face's blocks, and merges into the weights", "[ia3]") {
  small_model<peft::bert> m("bert");
  peft::ia3<double> p(m.enc.shape(), peft::ia3_config{}, 0);  // keys, values, FFN activation
  const auto& blocks = p.parameters().blocks();
  REQUIRE(blocks.size() == 6);
  CHECK(blocks[0].name == "base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l");
  CHECK((blocks[0].rows == 16 && blocks[0].cols == 1));  // an output scale: [out, 1]
  CHECK(blocks[2].name == "base_model.model.bert.encoder.layer.0.output.dense.ia3_l");
  CHECK((blocks[2].rows == 1 && blocks[2].cols == m.enc.shape().intermediate_size));  // input: [1, in]
  CHECK(p.num_parameters() == 2 * (16 + 16 + m.enc.shape().intermediate_size));
  CHECK(p.parameters().values().minCoeff() == 1.0);
  CHECK(p.parameters().values().maxCoeff() == 1.0);
  CHECK(m.enc.forward(m.b, p) == m.enc.forward(m.b));

  peft::ia3<double> q(m.enc.shape(), ia3_everywhere(), 0);
  peft_test::randomise(q.parameters().values(), 0.3, 4);
  const auto merged = q.merge(m.enc.weights());
  const peft::encoder<peft::bert, double> plain(merged);
  const double d = (plain.forward(m.b) - m.enc.forward(m.b, q)).cwiseAbs().maxCoeff();
  INFO("merged vs policy max abs diff " << d);
  CHECK(d < 1e-12);
  CHECK((plain.forward(m.b) - m.enc.forward(m.b)).cwiseAbs().maxCoeff() > 1e-3);

  peft::ia3_config bad;
  bad.feedforward_modules = {linear_id::query};
  CHECK_THROWS_WITH(peft::ia3<double>(m.enc.shape(), bad, 0),
                    Catch::Contains("feedforward_modules entry 'query' expected among target_modules"));
}

TEST_CASE("(IA)3 folders written by Hugging Face PEFT load and compute what PyTorch computes", "[ia3][hf]") {
  hf_fixture f;
  for (const char* name : {"ia3_seqcls", "ia3_layers"}) {
    const std::string dir = f.dir + "/" + name;
    const auto p = peft::load_policy<peft::ia3<float>>(dir, f.enc.shape());
    const double d = peft_test::max_hidden_diff(f.enc.forward(f.b, p), dir + "/hidden.npy", f.b);
    INFO(name << ": hidden states max abs diff " << d);
    CHECK(d <= 1e-5);
    std::printf("hf_peft %-12s hidden max abs diff %.2g\n", name, d);
  }
  // Hugging Face's BERT default: "output.dense" ends attention.output.dense too, and as a
  // feed-forward entry (a plain end, no dot boundary) makes both output projections scale
  // their input.
  const auto cls = peft::load_policy<peft::ia3<float>>(f.dir + "/ia3_seqcls", f.enc.shape());
  CHECK(cls.config().target_modules ==
        std::vector<linear_id>{linear_id::key, linear_id::value, linear_id::attn_out, linear_id::ffn_out});
  CHECK(cls.config().feedforward_modules == std::vector<linear_id>{linear_id::attn_out, linear_id::ffn_out});
  const double d = max_logits_diff(f, cls, "ia3_seqcls");
  INFO("classifier logits max abs diff " << d);
  CHECK(d <= 1e-5);
  std::printf("hf_peft %-12s logits max abs diff %.2g\n", "ia3_seqcls", d);
  const auto layers = peft::load_policy<peft::ia3<float>>(f.dir + "/ia3_layers", f.enc.shape());
  CHECK(layers.config().target_modules ==
        std::vector<linear_id>{linear_id::key, linear_id::ffn_in, linear_id::ffn_out});
  CHECK(layers.config().feedforward_modules == std::vector<linear_id>{linear_id::ffn_out});
  CHECK(layers.config().layers_to_transform == std::vector<peft::index>{0, 1});

  // Hugging Face tests a feed-forward list entry as a plain end of the path, with no dot
  // boundary: "ery" makes query feed-forward (a dot-boundary rule would not).
  {
    std::map<std::string, peft::tensor> none, modules;
    const auto n = peft::detail::to_native({{"peft_type", "IA3"},
                                            {"target_modules", {"query", "value"}},
                                            {"feedforward_modules", {"ery"}}},
                                           none, f.enc.shape(), modules, "test");
    CHECK(n["feedforward_modules"] == nlohmann::json({"query"}));
  }

  // A feed-forward expression that splits one linear across layers, and a field peft does not
  // know, are refused by name.
  using J = nlohmann::json;
  std::string dir = edited_copy(f, "ia3_layers", [](J& j) { j["feedforward_modules"] = ".*layer\\.0\\.output\\.dense"; });
  CHECK_THROWS_WITH(peft::load_policy<peft::ia3<float>>(dir, f.enc.shape()),
                    Catch::Contains("makes ffn_out a feed-forward module in some layers only"));
  std::filesystem::remove_all(dir);
  dir = edited_copy(f, "ia3_seqcls", [](J& j) { j["use_dora"] = true; });
  CHECK_THROWS_WITH(peft::load_policy<peft::ia3<float>>(dir, f.enc.shape()),
                    Catch::Contains("field 'use_dora' is not supported by peft's (IA)3"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("(IA)3 folders peft writes are Hugging Face PEFT's layout and read back bitwise", "[ia3][hf][io]") {
  small_model<peft::bert, float> m("bert");
  peft::rng g(8);
  for (const bool attn_out : {false, true}) {
    peft::ia3_config c;  // the paper's: key, value, ffn_out (feed-forward)
    if (attn_out) {
      c.target_modules.push_back(linear_id::attn_out);  // on its output
      c.layers_to_transform = {1};
    }
    peft::ia3<float> a(m.enc.shape(), c, 0);
    for (peft::index i = 0; i < a.num_parameters(); ++i)
      a.parameters().values()[i] = static_cast<float>(1 + g.normal() * 0.2);
    const std::string dir = peft_test::scratch_dir("ia3_hf_out");
    peft::save_policy(dir, a, {"/models/tiny-bert", ""});
    const auto j = peft::read_adapter_config(dir);
    INFO(j.dump(2));
    CHECK(j["peft_type"] == "IA3");
    CHECK(j["task_type"].is_null());
    CHECK(j["init_ia3_weights"] == true);
    for (const char* k : {"model_type", "num_layers", "layers_to_transform", "peft_version"})
      CHECK_FALSE(j.contains(k));
    CHECK(j["peft_cpp"]["model_type"] == "bert");
    if (attn_out) {
      // Layer 1 only: a regular expression; a listed "output.dense" would make the targeted
      // attention.output.dense feed-forward too.
      CHECK(j["target_modules"] ==
            ".*\\.layer\\.(?:1)\\.(?:attention\\.self\\.key|attention\\.self\\.value|attention\\.output\\.dense|"
            "output\\.dense)");
      CHECK(j["feedforward_modules"] == ".*\\.layer\\.\\d+\\.(?:output\\.dense)");
    } else {
      CHECK(j["target_modules"] == ".*\\.layer\\.\\d+\\.(?:attention\\.self\\.key|attention\\.self\\.value|output\\.dense)");
      CHECK(j["feedforward_modules"] == nlohmann::json({"output.dense"}));
    }
    const auto b = peft::load_policy<peft::ia3<float>>(dir, m.enc.shape());
    CHECK(b.parameters().values() == a.parameters().values());
    CHECK(b.config().target_modules == a.config().target_modules);
    CHECK(b.config().feedforward_modules == a.config().feedforward_modules);
    CHECK(b.config().layers_to_transform == a.config().layers_to_transform);
    CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));
    std::filesystem::remove_all(dir);
  }
}

// ---- prompt tuning -------------------------------------------------------------------------

TEST_CASE("prompt tuning folders written by Hugging Face PEFT compute what PyTorch computes", "[prompt_tuning][hf]") {
  hf_fixture f;
  const std::string dir = f.dir + "/prompt_seqcls";
  const auto p = peft::load_policy<peft::prompt_tuning<float>>(dir, f.enc.shape());
  REQUIRE(p.num_virtual_tokens() == 4);
  // The prompt goes in front: positions 0..3 are virtual (token type 0), the text follows at 4..,
  // and BERT's pooler reads the first virtual token, as in Hugging Face PEFT.
  const peft::batch in = peft::with_virtual_tokens(f.b, 4);
  const double d = peft_test::max_hidden_diff(f.enc.forward(in, p), dir + "/hidden.npy", in);
  INFO("hidden states (virtual tokens and text) max abs diff " << d);
  CHECK(d <= 1e-5);
  const double dl = max_logits_diff(f, p, "prompt_seqcls", &in);
  INFO("classifier logits max abs diff " << dl);
  CHECK(dl <= 1e-5);
  std::printf("hf_peft %-12s hidden max abs diff %.2g, logits %.2g\n", "prompt_seqcls", d, dl);

  // Without its virtual tokens the policy refuses the batch; without the policy the encoder
  // refuses a virtual token.
  CHECK_THROWS_WITH(f.enc.forward(f.b, p), Catch::Contains("expected 4 virtual tokens (id -1, mask 1)"));
  CHECK_THROWS_WITH(f.enc.forward(in), Catch::Contains("token id expected in [0,") && Catch::Contains("got -1"));
  // A folder for another encoder width is refused by name.
  const std::string bad = edited_copy(f, "prompt_seqcls", [](nlohmann::json& j) { j["num_transformer_submodules"] = 2; });
  CHECK_THROWS_WITH(peft::load_policy<peft::prompt_tuning<float>>(bad, f.enc.shape()),
                    Catch::Contains("'num_transformer_submodules' expected 1"));
  std::filesystem::remove_all(bad);
}

TEST_CASE("prompt tuning: gradients from the ids, initialisations, and peft's folders in Hugging Face's layout",
          "[prompt_tuning]") {
  for (const char* type : {"bert", "roberta"}) {
    INFO(type);
    auto check = [&](const auto& m) {
      peft::prompt_tuning_config c;
      c.num_virtual_tokens = 3;
      peft::prompt_tuning<double> p(m.enc.shape(), c, 4);
      const auto in = peft::with_virtual_tokens(m.b, 3);
      auto r = peft_test::check_policy_from_ids(m.enc, in, p, p.parameters().values(), p.parameters().grads(), 150);
      INFO("params max abs err " << r.params.max_abs_err);
      CHECK(r.params.max_abs_err < 1e-7);
      CHECK(r.max_param_grad > 1e-3);
    };
    if (std::string(type) == "bert") check(small_model<peft::bert>("bert"));
    else check(small_model<peft::roberta>("roberta"));
  }

  small_model<peft::bert, float> m("bert");
  peft::prompt_tuning_config c;
  c.num_virtual_tokens = 5;
  c.prompt_tuning_init = "TEXT";
  c.prompt_tuning_init_text = "x";
  peft::prompt_tuning<float> p(m.enc.shape(), c, 2);
  // Hugging Face PEFT's TEXT rule: the text's ids (special tokens included) repeated, then cut.
  CHECK(p.init_ids({2, 9, 3}, 30, 0) == std::vector<std::int32_t>{2, 9, 3, 2, 9});
  c.prompt_tuning_init = "SAMPLE_VOCAB";
  const auto ids = peft::prompt_tuning<float>(m.enc.shape(), c, 2).init_ids({}, 30, 7);
  CHECK(ids.size() == 5);
  for (auto id : ids) CHECK((id >= 0 && id < 30));
  c.prompt_tuning_init = "TEXT";
  c.prompt_tuning_init_text.clear();
  CHECK_THROWS_WITH(peft::prompt_tuning<float>(m.enc.shape(), c, 2), Catch::Contains("prompt_tuning_init_text"));

  // peft → Hugging Face layout → peft, bitwise; the fields are PromptTuningConfig's.
  const std::string dir = peft_test::scratch_dir("prompt_hf_out");
  peft::save_policy(dir, p, {"/models/tiny-bert", "SEQ_CLS"});
  const auto j = peft::read_adapter_config(dir);
  INFO(j.dump(2));
  CHECK(j["peft_type"] == "PROMPT_TUNING");
  CHECK(j["num_virtual_tokens"] == 5);
  CHECK(j["token_dim"] == m.enc.shape().embedding_size);
  CHECK(j["num_layers"] == 2);
  CHECK(j["prompt_tuning_init"] == "TEXT");
  for (const char* k : {"model_type", "hidden_size", "embedding_size", "peft_version"}) CHECK_FALSE(j.contains(k));
  const auto q = peft::load_policy<peft::prompt_tuning<float>>(dir, m.enc.shape());
  CHECK(q.parameters().values() == p.parameters().values());
  const auto in = peft::with_virtual_tokens(m.b, 5);
  CHECK(m.enc.forward(in, q) == m.enc.forward(in, p));
  std::filesystem::remove_all(dir);
}

// ---- BitFit --------------------------------------------------------------------------------

TEST_CASE("BitFit: gradients of every bias from the ids, and the same outputs as changed biases", "[bitfit]") {
  auto grads = [](const auto& m) {
    using S = typename std::decay_t<decltype(m.enc)>::scalar_type;
    peft::bitfit<S> p(m.enc.shape(), peft::bitfit_config{}, 0);
    peft_test::randomise(p.parameters().values(), 0.3, 12);
    auto r = peft_test::check_policy_from_ids(m.enc, m.b, p, p.parameters().values(), p.parameters().grads(), 300);
    INFO(m.type << ": params max abs err " << r.params.max_abs_err);
    CHECK(r.params.max_abs_err < 1e-7);
    CHECK(r.max_param_grad > 1e-3);
    // Every block has a gradient: each LayerNorm the encoder has, each linear.
    for (peft::index k = 0; k < p.parameters().num_blocks(); ++k) {
      INFO("block " << p.parameters().block(k).name);
      CHECK(p.parameters().grad(k).cwiseAbs().maxCoeff() > 0);
    }
  };
  grads(small_model<peft::bert>("bert"));
  grads(small_model<peft::use_lite>("use_lite"));  // pre-norm, no embedding LayerNorm

  // The policy equals a backbone whose biases are the trained ones (biases()), which the
  // encoder runs with no policy: checked on BERT (post-norm) and USE-lite (pre-norm).
  auto same = [](const auto& m) {
    using S = typename std::decay_t<decltype(m.enc)>::scalar_type;
    peft::bitfit<S> p(m.enc.shape(), peft::bitfit_config{}, 0);
    CHECK(m.enc.forward(m.b, p) == m.enc.forward(m.b));  // zero changes: the identity
    peft_test::randomise(p.parameters().values(), 0.3, 5);
    auto changed = std::make_shared<peft::encoder_weights<S>>(m.enc.weights());
    const auto b = p.biases(m.enc.weights());
    const std::string mt = m.type;
    auto take = [&](const std::string& name, peft::vector<S>& v) {
      const auto it = b.find(name);
      if (v.size() == 0) return;
      REQUIRE(it != b.end());
      v = it->second;
    };
    take(mt + ".embeddings.LayerNorm.bias", changed->embedding_norm.beta);
    const char* subs[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                          "attention.output.dense", "intermediate.dense", "output.dense"};
    for (peft::index l = 0; l < m.enc.num_layers(); ++l) {
      auto& L = changed->layers[static_cast<std::size_t>(l)];
      const std::string pre = mt + ".encoder.layer." + std::to_string(l) + ".";
      peft::linear_weights<S>* lw[] = {&L.query, &L.key, &L.value, &L.attn_out, &L.ffn_in, &L.ffn_out};
      for (int w = 0; w < 6; ++w) take(pre + subs[w] + ".bias", lw[w]->bias);
      take(pre + "attention.output.LayerNorm.bias", L.attn_norm.beta);
      take(pre + "output.LayerNorm.bias", L.ffn_norm.beta);
    }
    const peft::encoder<typename std::decay_t<decltype(m.enc)>::arch_type, S> plain(changed);
    const double d = (plain.forward(m.b) - m.enc.forward(m.b, p)).cwiseAbs().maxCoeff();
    INFO(m.type << ": changed biases vs policy max abs diff " << d);
    CHECK(d < 1e-12);
  };
  same(small_model<peft::bert>("bert"));
  same(small_model<peft::use_lite>("use_lite"));

  // BERT-base: 12 x (4 x 768 + 3072 + 768 + 2 x 768) + 768 trainable values, 0.09 % of it.
  peft::encoder_shape base;
  base.model_type = "bert";
  base.num_layers = 12;
  base.num_heads = 12;
  base.hidden_size = base.embedding_size = 768;
  base.intermediate_size = 3072;
  base.input_width = base.attention_width = base.output_width = std::vector<peft::index>(12, 768);
  CHECK(peft::bitfit<float>(base, peft::bitfit_config{}, 0).num_parameters() == 12 * (4 * 768 + 3072 + 768 + 2 * 768) + 768);
}

// ---- prefix tuning in Hugging Face's layout --------------------------------------------------

TEST_CASE("prefix tuning folders written by Hugging Face PEFT compute what PyTorch computes, positions shifted",
          "[prefix][hf]") {
  hf_fixture f;
  const std::string dir = f.dir + "/prefix_seqcls";
  const auto p = peft::load_policy<peft::prefix_tuning<float>>(dir, f.enc.shape());
  CHECK(p.ejected());
  CHECK(p.config().position_offset);  // the text at positions 3.., after the prefix
  CHECK(p.position_offset() == 3);
  const double d = peft_test::max_hidden_diff(f.enc.forward(f.b, p), dir + "/hidden.npy", f.b);
  const double dl = max_logits_diff(f, p, "prefix_seqcls");
  INFO("hidden max abs diff " << d << ", logits " << dl);
  CHECK(d <= 1e-5);
  CHECK(dl <= 1e-5);
  std::printf("hf_peft %-12s hidden max abs diff %.2g, logits %.2g\n", "prefix_seqcls", d, dl);
  // Without the shift the outputs differ: the test sees the positions.
  auto c = p.config();
  c.position_offset = false;
  peft::prefix_tuning<float> unshifted(f.enc.shape(), c, 0);
  unshifted.eject();
  unshifted.parameters().values() = p.parameters().values();
  CHECK(peft_test::max_hidden_diff(f.enc.forward(f.b, unshifted), dir + "/hidden.npy", f.b) > 1e-3);
}

TEST_CASE("prefix tuning: peft writes Hugging Face's layout only for the shifted positions, and reads both",
          "[prefix][hf][io]") {
  small_model<peft::bert, float> m("bert");
  for (const bool shifted : {false, true}) {
    peft::prefix_tuning_config c;
    c.num_virtual_tokens = 2;
    c.prefix_projection = false;
    c.position_offset = shifted;
    peft::prefix_tuning<float> a(m.enc.shape(), c, 3);
    const std::string dir = peft_test::scratch_dir("prefix_hf_out");
    peft::save_policy(dir, a, {"/models/tiny-bert", "SEQ_CLS"});
    const auto j = peft::read_adapter_config(dir);
    INFO(j.dump(2));
    CHECK(j["peft_type"] == "PREFIX_TUNING");
    // Hugging Face's layout: no encoder shape or peft field at the top (peft_cpp holds them).
    CHECK(j.contains("model_type") == !shifted);
    CHECK(j.contains("prefix_layout") == !shifted);
    CHECK(j["num_layers"] == 2);
    const auto b = peft::load_policy<peft::prefix_tuning<float>>(dir, m.enc.shape());
    CHECK(b.config().position_offset == shifted);
    CHECK(m.enc.forward(m.b, b) == m.enc.forward(m.b, a));
    std::filesystem::remove_all(dir);
  }
  peft::prefix_tuning_config c;
  c.num_virtual_tokens = 14;  // with the shift, 14 + the text do not fit the 16 positions
  c.prefix_projection = false;
  c.position_offset = true;
  peft::prefix_tuning<float> big(m.enc.shape(), c, 1);
  CHECK_THROWS_WITH(m.enc.forward(m.b, big), Catch::Contains("plus the policy's position offset expected <="));
}

namespace {

/// The sorted tensor names of safetensors file @p path.
std::vector<std::string> tensor_names(const std::string& path) {
  auto names = peft::safetensors_file::open(path).names();
  std::sort(names.begin(), names.end());
  return names;
}

/// A Hugging Face PEFT folder of family @p family (tests/reference/torch_families.py, kind
/// "lora" or "ia3") loads onto that family's encoder, computes what PyTorch computes, puts its
/// parameters on the modules Hugging Face PEFT's rule chose, and is written back by peft with
/// the same tensor names and a target_modules list @p targets (@p feedforward for (IA)3).
template <typename Policy, typename Arch>
void check_family_adapter(const std::string& family, const std::string& kind, const nlohmann::json& targets,
                          const nlohmann::json& feedforward = nullptr) {
  const std::string model = peft_test::reference_dir() + "/families/" + family, dir = model + "/" + kind;
  INFO(family << " " << kind);
  if (!std::filesystem::exists(dir + "/adapter_config.json")) {
    FAIL_CHECK("reference_families output missing for " << dir);
    return;
  }
  const peft::encoder<Arch, double> enc(peft::load_hf_encoder<double>(model));
  const auto b = peft_test::reference_batch(model);
  const auto p = peft::load_policy<Policy>(dir, enc.shape());
  const double d = peft_test::max_diff_3d(enc.forward(b, p), peft_test::read_reference<double>(dir, "hidden"), b);
  INFO("hidden states max abs diff " << d);
  CHECK(d <= 1e-9);
  std::printf("hf_peft %-11s %-4s hidden max abs diff %.2g\n", family.c_str(), kind.c_str(), d);

  // One block per module the rule chose (ALBERT: per module of the shared layer, not per layer).
  std::ifstream in(dir + "/chosen_modules.json");
  const auto chosen = nlohmann::json::parse(in).get<std::vector<std::string>>();
  std::set<std::string> modules;
  for (peft::index k = 0; k < p.parameters().num_blocks(); ++k) {
    const std::string name = p.parameters().block(k).name;
    const std::string m = name.substr(std::string("base_model.model.").size());
    modules.insert(m.substr(0, m.rfind(kind == "lora" ? ".lora_" : ".ia3_l")));
  }
  CHECK(modules == std::set<std::string>(chosen.begin(), chosen.end()));

  const std::string out = peft_test::scratch_dir("family_adapter_" + family + "_" + kind);
  peft::save_policy(out, p, {"", ""});
  CHECK(tensor_names(out + "/adapter_model.safetensors") == tensor_names(dir + "/adapter_model.safetensors"));
  const auto j = peft::read_adapter_config(out);
  INFO(j.dump(2));
  CHECK(j["target_modules"] == targets);
  if (!feedforward.is_null()) CHECK(j["feedforward_modules"] == feedforward);
  const auto back = peft::load_policy<Policy>(out, enc.shape());
  CHECK(back.parameters().values() == p.parameters().values());
  CHECK(enc.forward(b, back) == enc.forward(b, p));
  std::filesystem::remove_all(out);
}

}  // namespace

TEST_CASE("LoRA and (IA)3 folders of every encoder family: Hugging Face PEFT's module paths, both ways",
          "[lora][ia3][hf][families]") {
  using peft::ia3;
  using J = nlohmann::json;
  check_family_adapter<lora<double>, peft::roberta>("xlm-roberta", "lora", J{"query", "value"});
  check_family_adapter<lora<double>, peft::bert>("distilbert", "lora", J{"q_lin", "v_lin", "lin2"});
  check_family_adapter<ia3<double>, peft::bert>("distilbert", "ia3", J{"k_lin", "v_lin", "lin2"}, J{"lin2"});
  // "output.dense" chose attention.output.dense too; peft names both.
  check_family_adapter<lora<double>, peft::bert>("electra", "lora",
                                                 J{"query", "value", "attention.output.dense", "output.dense"});
  // One shared module per ALBERT layer group, adapted in all three layers.
  check_family_adapter<lora<double>, peft::bert>("albert", "lora", J{"query", "value", "ffn"});
  check_family_adapter<ia3<double>, peft::bert>("albert", "ia3", J{"key", "value", "ffn_output"}, J{"ffn_output"});
  check_family_adapter<lora<double>, peft::roberta>("mpnet", "lora", J{"q", "v", "output.dense"});
}

TEST_CASE("ALBERT: an adapter on a shared module is shared by its layers, and cannot pick layers",
          "[lora][ia3][families][errors]") {
  const std::string model = peft_test::reference_dir() + "/families/albert";
  if (!std::filesystem::exists(model + "/config.json")) {
    FAIL_CHECK("reference_families output missing for " << model);
    return;
  }
  const peft::encoder<peft::bert, float> enc(peft::load_hf_encoder<float>(model));
  lora_config c;
  c.target_modules = {linear_id::query, linear_id::attn_out, linear_id::ffn_in};
  const lora<float> a(enc.shape(), c, 1);
  CHECK(a.parameters().num_blocks() == 6);  // A and B of three modules, not of nine
  CHECK(a.parameters().block(0).name ==
        "base_model.model.albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.lora_A.weight");
  // Written with the shortest names that choose these modules; never a bare "dense", which
  // the MLM head's predictions.dense also ends with.
  const std::string saved = peft_test::scratch_dir("albert_lora_out");
  peft::save_policy(saved, a, {"", ""});
  CHECK(peft::read_adapter_config(saved)["target_modules"] == nlohmann::json{"query", "attention.dense", "ffn"});
  std::filesystem::remove_all(saved);
  c.layers_to_transform = {0, 2};
  CHECK_THROWS_WITH(lora<float>(enc.shape(), c, 1),
                    Catch::Contains("layers_to_transform expected every layer on ALBERT") && Catch::Contains("[0, 2]"));
  peft::ia3_config ic;
  ic.target_modules = {linear_id::key};
  ic.feedforward_modules = {};
  ic.layers_to_transform = {1};
  CHECK_THROWS_WITH(peft::ia3<float>(enc.shape(), ic), Catch::Contains("every layer on ALBERT"));
  // A Hugging Face config that picks layers on ALBERT matches nothing there: refused.
  const std::string dir = peft_test::edited_copy(model + "/lora", "albert_lora_layers",
                                                 [](nlohmann::json& j) { j["layers_to_transform"] = {0}; });
  CHECK_THROWS_WITH(peft::load_policy<lora<float>>(dir, enc.shape()),
                    Catch::Contains("layers_to_transform") && Catch::Contains("expected null on ALBERT"));
  // Hugging Face PEFT has no default (IA)3 modules for DistilBERT; neither has peft.
  const std::string distil = peft_test::reference_dir() + "/families/distilbert";
  const peft::encoder<peft::bert, float> denc(peft::load_hf_encoder<float>(distil));
  const std::string nul = peft_test::edited_copy(distil + "/ia3", "distil_ia3_null",
                                                 [](nlohmann::json& j) { j["target_modules"] = nullptr; });
  CHECK_THROWS_WITH(peft::load_policy<peft::ia3<float>>(nul, denc.shape()),
                    Catch::Contains("no default (IA)3 modules for distilbert"));
}
