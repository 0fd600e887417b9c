// SPDX-License-Identifier: Apache-2.0
// TF.js graph-model reader (peft/io/tfjs.hpp) and the USE-lite loader (peft/io/use_lite.hpp),
// on the real pretrained model, plus malformed copies of it built in a scratch folder.
#include "test_common.hpp"

#include <peft/io/tfjs.hpp>
#include <peft/io/use_lite.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::string kona = "module_apply_default/Encoder_en/KonaTransformer/";
const std::string layer0 = kona + "Encode/TransformerStack/Layer_0/TransformerLayer/";
const char* const shard_names[] = {"group1-shard1of7", "group1-shard2of7", "group1-shard3of7",
                                   "group1-shard4of7", "group1-shard5of7", "group1-shard6of7",
                                   "group1-shard7of7"};

std::string shards_concatenated() {
  std::string all;
  for (const char* s : shard_names) all += peft_test::read_text(peft_test::use_lite_dir() + "/" + s);
  return all;
}

nlohmann::json real_model_json() {
  return nlohmann::json::parse(peft_test::read_text(peft_test::use_lite_dir() + "/model.json"));
}

/// A scratch copy of the model: the given model.json, shards as symlinks (or copies when
/// `copy_shards`, so a test may damage them).
std::string scratch_model(const std::string& name, const nlohmann::json& model, bool copy_shards = false) {
  const std::string dir = peft_test::scratch_dir("tfjs_" + name);
  std::ofstream(dir + "/model.json") << model.dump();
  for (const char* s : shard_names) {
    const fs::path src = fs::path(peft_test::use_lite_dir()) / s;
    if (copy_shards)
      fs::copy_file(src, fs::path(dir) / s);
    else
      fs::create_symlink(src, fs::path(dir) / s);
  }
  return dir;
}

/// Deletes this process's tfjs scratch folders (they hold copies of 4 MB shards) when it
/// goes out of scope, i.e. at the end of every pass through a test case.
struct scratch_cleanup {
  ~scratch_cleanup() {
    std::error_code ec;
    const std::string suffix = "_" + std::to_string(::getpid());
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("peft_test_tfjs_", 0) == 0 && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        fs::remove_all(e.path(), ec);
    }
  }
};

/// Runs @p f, expecting a peft exception of type E whose message contains every @p parts.
template <typename E>
void require_throws_with(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    return;
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
  FAIL("no exception thrown");
}

nlohmann::json& manifest_weight(nlohmann::json& model, const std::string& name) {
  for (auto& w : model["weightsManifest"][0]["weights"])
    if (w["name"] == name) return w;
  throw std::runtime_error("no weight " + name);
}

nlohmann::json& graph_node(nlohmann::json& model, const std::string& name) {
  for (auto& n : model["modelTopology"]["node"])
    if (n["name"] == name) return n;
  throw std::runtime_error("no node " + name);
}

}  // namespace

TEST_CASE("tfjs_model reads the real USE-lite graph model", "[tfjs]") {
  const auto m = peft::tfjs_model::load(peft_test::use_lite_dir());
  CHECK(m.path() == peft_test::use_lite_dir() + "/model.json");
  CHECK(m.manifest().size() == 61);
  CHECK(m.weights().size() + m.int_weights().size() == 61);
  CHECK(m.int_weights().size() == 26);
  CHECK(m.nodes().is_array());
  CHECK(m.nodes().size() == 317);

  const peft::tensor& emb = m.weight("module/Embeddings_en");
  CHECK(emb.shape == std::vector<std::int64_t>{8002, 256});
  CHECK(emb.data.size() == 8002u * 256u);
  const auto& split = m.int_weight(layer0 + "MultiheadAttention/Const");
  CHECK(split.data == std::vector<std::int32_t>{256, 256, 256});

  // Every weight equals its bytes in the concatenated shards, back to back in manifest order.
  const std::string all = shards_concatenated();
  std::uint64_t expected_offset = 0;
  for (const auto& s : m.manifest()) {
    INFO(s.name);
    REQUIRE(s.offset == expected_offset);
    expected_offset += s.bytes;
    if (s.dtype == "float32") {
      const auto& t = m.weight(s.name);
      REQUIRE(static_cast<std::uint64_t>(t.numel()) * 4 == s.bytes);
      CHECK(std::memcmp(t.data.data(), all.data() + s.offset, s.bytes) == 0);
    } else {
      const auto& t = m.int_weight(s.name);
      REQUIRE(t.data.size() * 4 == s.bytes);
      CHECK(std::memcmp(t.data.data(), all.data() + s.offset, s.bytes) == 0);
    }
  }
  CHECK(expected_offset == all.size());

  // Node access.
  const nlohmann::json* relu = m.find_node(layer0 + "FFN/conv1/Relu");
  REQUIRE(relu != nullptr);
  CHECK((*relu)["op"] == "Relu");
  CHECK(m.find_node("no/such/node") == nullptr);
  CHECK(m.node_inputs(kona + "div") == std::vector<std::string>{kona + "Sum", kona + "ExpandDims_1"});
  require_throws_with<peft::invalid_argument>([&] { (void)m.node("no/such/node"); },
                                              {"tfjs_model::node", "no/such/node"});
  require_throws_with<peft::invalid_argument>([&] { (void)m.weight("nope"); },
                                              {"tfjs_model::weight", "'nope'", "model.json"});
  require_throws_with<peft::invalid_argument>([&] { (void)m.weight(layer0 + "MultiheadAttention/Const"); },
                                              {"an int32 weight"});
  require_throws_with<peft::invalid_argument>([&] { (void)m.int_weight("module/Embeddings_en"); },
                                              {"a float32 weight"});

  // model.json given directly gives the same model.
  const auto m2 = peft::tfjs_model::load(peft_test::use_lite_dir() + "/model.json");
  CHECK(m2.weight("module/Embeddings_en").data == emb.data);
}

TEST_CASE("tfjs_model rejects damaged model folders", "[tfjs]") {
  const scratch_cleanup cleanup;
  const nlohmann::json good = real_model_json();

  SECTION("missing model.json") {
    const std::string dir = peft_test::scratch_dir("tfjs_nojson");
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"tfjs_model::load", "cannot open", dir});
  }
  SECTION("corrupt model.json") {
    const std::string dir = scratch_model("corrupt", good);
    const std::string text = good.dump();
    std::ofstream(dir + "/model.json") << text.substr(0, text.size() / 2);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"not valid JSON", dir + "/model.json"});
  }
  SECTION("no weightsManifest") {
    nlohmann::json j = good;
    j.erase("weightsManifest");
    const std::string dir = scratch_model("nomanifest", j);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"'weightsManifest' expected an array"});
  }
  SECTION("no node list") {
    nlohmann::json j = good;
    j["modelTopology"].erase("node");
    const std::string dir = scratch_model("nonodes", j);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"'modelTopology.node' expected an array"});
  }
  SECTION("missing shard") {
    const std::string dir = scratch_model("missing", good);
    fs::remove(fs::path(dir) / "group1-shard3of7");
    // Shards 1-2 hold 8 MiB; the weight straddling that boundary is the first one shard 3 holds.
    require_throws_with<peft::io_error>(
        [&] { peft::tfjs_model::load(dir); },
        {"group1-shard3of7", "is missing",
         "Layer_1/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0"});
  }
  SECTION("truncated shard") {
    const std::string dir = scratch_model("truncated", good, true);
    const fs::path last = fs::path(dir) / "group1-shard7of7";
    fs::resize_file(last, fs::file_size(last) - 4);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"hold 27903652 bytes, the manifest describes 27903656",
                                         "hidden_layers/l2_normalize/Maximum/y", "truncated"});
  }
  SECTION("trailing bytes") {
    const std::string dir = scratch_model("trailing", good, true);
    std::ofstream(dir + "/group1-shard7of7", std::ios::app | std::ios::binary) << "abcd";
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); }, {"trailing bytes"});
  }
  SECTION("unknown dtype") {
    nlohmann::json j = good;
    manifest_weight(j, "module/Embeddings_en")["dtype"] = "float16";
    const std::string dir = scratch_model("dtype", j);
    require_throws_with<peft::io_error>(
        [&] { peft::tfjs_model::load(dir); },
        {"weight 'module/Embeddings_en' dtype expected float32 or int32, got 'float16'"});
  }
  SECTION("quantised weight") {
    nlohmann::json j = good;
    manifest_weight(j, "module/Embeddings_en")["quantization"] = {
        {"dtype", "uint8"}, {"scale", 0.01}, {"min", -1.0}};
    const std::string dir = scratch_model("quant", j);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"module/Embeddings_en", "quantization", "uint8"});
  }
  SECTION("bad shape") {
    nlohmann::json j = good;
    manifest_weight(j, "module/Embeddings_en")["shape"] = {8002, -256};
    const std::string dir = scratch_model("shape", j);
    require_throws_with<peft::io_error>(
        [&] { peft::tfjs_model::load(dir); },
        {"weight 'module/Embeddings_en' shape expected non-negative integers"});
  }
  SECTION("shard path escaping the folder") {
    nlohmann::json j = good;
    j["weightsManifest"][0]["paths"][0] = "../group1-shard1of7";
    const std::string dir = scratch_model("escape", j);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); },
                                        {"a relative file name inside the model folder"});
  }
  SECTION("duplicate weight name") {
    nlohmann::json j = good;
    j["weightsManifest"][0]["weights"][1]["name"] = j["weightsManifest"][0]["weights"][0]["name"];
    const std::string dir = scratch_model("dup", j);
    require_throws_with<peft::io_error>([&] { peft::tfjs_model::load(dir); }, {"listed twice"});
  }
}

TEMPLATE_TEST_CASE("load_use_lite fills encoder_weights from the real model", "[use_lite]", float, double) {
  using S = TestType;
  const auto m = peft::tfjs_model::load(peft_test::use_lite_dir());
  const peft::shared_weights<S> w = peft::load_use_lite<S>(m);
  const auto& c = w->config;
  CHECK(c.model_type == "use_lite");
  CHECK(c.vocab_size == 8002);
  CHECK(c.embedding_size == 256);
  CHECK(c.hidden_size == 512);
  CHECK(c.num_layers == 2);
  CHECK(c.num_heads == 4);
  CHECK(c.intermediate_size == 1536);
  CHECK(c.max_positions == 128);
  CHECK(c.max_sequence_length() == 128);
  CHECK(c.type_vocab_size == 0);
  CHECK(c.hidden_act == peft::activation::relu);
  CHECK(c.layer_norm_eps == static_cast<double>(1e-6f));
  CHECK(c.hidden_dropout == 0.1);
  CHECK(c.attention_dropout == 0.1);

  REQUIRE(w->layers.size() == 2);
  const auto& L0 = w->layers[0];
  const auto& L1 = w->layers[1];
  CHECK(L0.input_width() == 256);
  CHECK(L0.attention_width() == 256);
  CHECK(L0.output_width() == 512);
  CHECK(L0.key.weight.rows() == 256);
  CHECK(L0.value.weight.cols() == 256);
  CHECK(L0.residual_proj.weight.rows() == 512);
  CHECK(L0.residual_proj.weight.cols() == 256);
  CHECK(L0.attn_norm.gamma.size() == 256);
  CHECK(L0.ffn_norm.gamma.size() == 512);
  CHECK(L0.ffn_in.weight.rows() == 1536);
  CHECK(L0.ffn_in.weight.cols() == 512);
  CHECK(L0.ffn_out.weight.rows() == 512);
  CHECK(L0.ffn_out.weight.cols() == 1536);
  CHECK(L1.input_width() == 512);
  CHECK(L1.attention_width() == 512);
  CHECK(L1.output_width() == 512);
  CHECK(L1.residual_proj.empty());
  CHECK(w->final_norm.empty());
  CHECK(w->position_embeddings.size() == 0);
  CHECK(w->token_type_embeddings.size() == 0);
  CHECK(w->embedding_norm.empty());
  CHECK(!w->has_pooler());
  CHECK(!w->has_mlm_head());
  CHECK(w->sentence_dense.weight.rows() == 512);
  CHECK(w->sentence_dense.weight.cols() == 512);
  CHECK(w->num_parameters() == 6975744);

  // Values: peft's [out x in] is the TF kernel [in x out] transposed; Q|K|V are column blocks.
  const std::string e0 = "module_apply_default/Encoder_en/KonaTransformer/Encode/Layer_0/TransformerLayer/";
  const auto& qkv = m.weight(
      "module/Encoder_en/KonaTransformer/Encode/Layer_0/TransformerLayer/MultiheadAttention/"
      "qkv_transform_single/kernel/part_0");
  const auto& qkv_b = m.weight(e0 + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat");
  for (int i : {0, 17, 255})
    for (int o : {0, 99, 255}) {
      CHECK(L0.query.weight(o, i) == static_cast<S>(qkv.data[static_cast<std::size_t>(i * 768 + o)]));
      CHECK(L0.key.weight(o, i) == static_cast<S>(qkv.data[static_cast<std::size_t>(i * 768 + 256 + o)]));
      CHECK(L0.value.weight(o, i) == static_cast<S>(qkv.data[static_cast<std::size_t>(i * 768 + 512 + o)]));
    }
  CHECK(L0.key.bias[3] == static_cast<S>(qkv_b.data[259]));
  CHECK(L0.value.bias[255] == static_cast<S>(qkv_b.data[767]));
  const auto& dense = m.weight(e0 + "dense/kernel/ConcatPartitions/concat");
  CHECK(L0.residual_proj.weight(511, 3) == static_cast<S>(dense.data[3 * 512 + 511]));
  const auto& conv1 =
      m.weight(kona + "Encode/TransformerStack/Layer_1/TransformerLayer/FFN/conv1/Tensordot/Reshape_1");
  CHECK(L1.ffn_in.weight(1000, 7) == static_cast<S>(conv1.data[7 * 1536 + 1000]));
  const auto& emb = m.weight("module/Embeddings_en");
  CHECK(w->word_embeddings(8001, 255) == static_cast<S>(emb.data.back()));
  const auto& tanh_w = m.weight("module/Encoder_en/hidden_layers/tanh_layer_0/weights");
  CHECK(w->sentence_dense.weight(5, 400) == static_cast<S>(tanh_w.data[400 * 512 + 5]));
  CHECK(L1.ffn_norm.beta[511] ==
        static_cast<S>(
            m.weight("module_apply_default/Encoder_en/KonaTransformer/Encode/Layer_1/TransformerLayer/FFN/"
                     "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat")
                .data[511]));

  // Directory overload.
  const auto w2 = peft::load_use_lite<S>(peft_test::use_lite_dir());
  CHECK(w2->layers[1].attn_out.weight == L1.attn_out.weight);
}

TEST_CASE("read_use_lite_constants reports the graph's scalars", "[use_lite]") {
  const auto c = peft::read_use_lite_constants(peft::tfjs_model::load(peft_test::use_lite_dir()));
  CHECK(c.layer_norm_eps == static_cast<double>(1e-6f));
  REQUIRE(c.query_scale.size() == 2);
  CHECK(c.query_scale[0] == 0.125);
  CHECK(c.query_scale[1] == static_cast<double>(static_cast<float>(1.0 / std::sqrt(128.0))));
  CHECK(c.embedding_scale == 2.0);
  CHECK(c.attention_bias == -1e9);
  CHECK(c.l2_epsilon == static_cast<double>(1e-12f));
  CHECK(c.max_tokens == 128);
  REQUIRE(c.inv_timescales.size() == 128);
  CHECK(c.inv_timescales[0] == 1.0);
  for (std::size_t i = 0; i < 128; ++i)
    CHECK(c.inv_timescales[i] ==
          Approx(std::exp(-std::log(1e4) * static_cast<double>(i) / 127.0)).epsilon(1e-6));
}

TEST_CASE("load_use_lite rejects graphs wired differently", "[use_lite]") {
  const scratch_cleanup cleanup;
  const nlohmann::json good = real_model_json();
  SECTION("weight with the wrong shape") {
    nlohmann::json j = good;
    manifest_weight(j, "module/Encoder_en/hidden_layers/tanh_layer_0/bias")["shape"] = {2, 256};
    const std::string dir = scratch_model("ul_shape", j);
    require_throws_with<peft::io_error>(
        [&] { peft::load_use_lite<float>(dir); },
        {"load_use_lite", "tanh_layer_0/bias' shape expected [512], got [2, 256]"});
  }
  SECTION("missing weight") {
    nlohmann::json j = good;
    graph_node(j, kona + "Encode/TransformerStack/Layer_1/TransformerLayer/FFN/conv2/BiasAdd")["input"][1] =
        "nope";
    const std::string dir = scratch_model("ul_missing", j);
    require_throws_with<peft::io_error>(
        [&] { peft::load_use_lite<double>(dir); },
        {"float32 weight 'nope' (input 1 of", "FFN/conv2/BiasAdd", "expected present"});
  }
  SECTION("another activation") {
    nlohmann::json j = good;
    graph_node(j, layer0 + "FFN/conv1/Relu")["op"] = "Relu6";
    const std::string dir = scratch_model("ul_relu6", j);
    require_throws_with<peft::io_error>([&] { peft::load_use_lite<float>(dir); },
                                        {"FFN/conv1/Relu' op expected 'Relu', got 'Relu6'"});
  }
  SECTION("residual projection reading the normalised input") {
    nlohmann::json j = good;
    graph_node(j, layer0 + "AdjustResidualInput/Gather/GatherNd")["input"][0] =
        layer0 + "layer_prepostprocess/layer_norm/add_1";
    const std::string dir = scratch_model("ul_resid", j);
    require_throws_with<peft::io_error>([&] { peft::load_use_lite<float>(dir); },
                                        {"AdjustResidualInput/Gather/GatherNd' input 0 expected"});
  }
  SECTION("a final LayerNorm before pooling") {
    nlohmann::json j = good;
    graph_node(j, kona + "mul")["input"][0] = "final_norm/add_1";
    const std::string dir = scratch_model("ul_final", j);
    require_throws_with<peft::io_error>([&] { peft::load_use_lite<float>(dir); },
                                        {kona + "mul' input 0 expected"});
  }
}

// An independent, naive double-precision forward pass written from docs/use_lite.md, run on
// the loaded weights: it checks the loader (transposes, Q/K/V split, residual projection)
// end to end against the TF.js runtime's golden embeddings.
namespace {

using dmat = peft::matrix<double>;

dmat layer_norm(const dmat& x, const peft::layer_norm_weights<double>& n, double eps) {
  dmat y(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const double mu = x.row(r).mean();
    const double var = (x.row(r).array() - mu).square().mean();
    y.row(r) = ((x.row(r).array() - mu) / std::sqrt(var + eps)).matrix().cwiseProduct(n.gamma.transpose()) +
               n.beta.transpose();
  }
  return y;
}

dmat linear(const dmat& x, const peft::linear_weights<double>& l) {
  dmat y = x * l.weight.transpose();
  y.rowwise() += l.bias.transpose();
  return y;
}

std::vector<double> naive_use_lite(const peft::encoder_weights<double>& w, const peft::use_lite_constants& c,
                                   std::vector<int> ids) {
  if (static_cast<peft::index>(ids.size()) > c.max_tokens) ids.resize(static_cast<std::size_t>(c.max_tokens));
  const auto T = static_cast<Eigen::Index>(ids.size());
  const Eigen::Index E = w.config.embedding_size, half = E / 2;
  dmat x(T, E);
  for (Eigen::Index t = 0; t < T; ++t) {
    x.row(t) = c.embedding_scale * w.word_embeddings.row(ids[static_cast<std::size_t>(t)]);
    for (Eigen::Index i = 0; i < half; ++i) {
      const double a = static_cast<double>(t) * c.inv_timescales[static_cast<std::size_t>(i)];
      x(t, i) += std::sin(a);
      x(t, half + i) += std::cos(a);
    }
  }
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    const dmat h = layer_norm(x, L.attn_norm, c.layer_norm_eps);
    const dmat q = linear(h, L.query) * c.query_scale[l], k = linear(h, L.key), v = linear(h, L.value);
    const Eigen::Index H = w.config.num_heads, dh = q.cols() / H;
    dmat ctx(T, q.cols());
    for (Eigen::Index hd = 0; hd < H; ++hd) {
      dmat s = q.middleCols(hd * dh, dh) * k.middleCols(hd * dh, dh).transpose();
      for (Eigen::Index r = 0; r < T; ++r) {
        s.row(r).array() = (s.row(r).array() - s.row(r).maxCoeff()).exp();
        s.row(r) /= s.row(r).sum();
      }
      ctx.middleCols(hd * dh, dh) = s * v.middleCols(hd * dh, dh);
    }
    const dmat res = L.residual_proj.empty() ? x : linear(x, L.residual_proj);
    x = linear(ctx, L.attn_out) + res;
    dmat f = linear(layer_norm(x, L.ffn_norm, c.layer_norm_eps), L.ffn_in).cwiseMax(0.0);
    x = linear(f, L.ffn_out) + x;
  }
  const dmat pooled = x.colwise().sum() / static_cast<double>(std::max<Eigen::Index>(T, 1));
  dmat t = linear(pooled, w.sentence_dense).array().tanh().matrix();
  t /= std::sqrt(std::max(t.squaredNorm(), c.l2_epsilon));
  return std::vector<double>(t.data(), t.data() + t.size());
}

}  // namespace

TEST_CASE("loaded USE-lite weights reproduce the TF.js golden embeddings", "[use_lite][reference]") {
  const std::string path = peft_test::reference_dir() + "/use_lite/golden.json";
  if (!fs::exists(path))
    FAIL(path << " is missing: run ctest so the reference_use_lite fixture (node) writes it");
  const auto golden = nlohmann::json::parse(peft_test::read_text(path));
  const auto m = peft::tfjs_model::load(peft_test::use_lite_dir());
  const auto w = peft::load_use_lite<double>(m);
  const auto c = peft::read_use_lite_constants(m);
  const auto& sentences = golden["sentences"];
  REQUIRE(sentences.size() >= 30);
  double worst = 0;
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    const auto e = naive_use_lite(*w, c, golden["ids"][i].get<std::vector<int>>());
    const auto ref = golden["embeddings"][i].get<std::vector<double>>();
    REQUIRE(e.size() == ref.size());
    for (std::size_t k = 0; k < e.size(); ++k) worst = std::max(worst, std::abs(e[k] - ref[k]));
  }
  INFO("max abs diff vs TF.js over " << sentences.size() << " sentences: " << worst);
  CHECK(worst <= 1e-5);
  WARN("USE-lite naive double forward vs TF.js: max abs diff " << worst);
}
