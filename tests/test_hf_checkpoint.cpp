// SPDX-License-Identifier: Apache-2.0
// Hugging Face config.json + model.safetensors loading and saving, on the PyTorch-generated
// reference checkpoints (tests/reference/torch_bert.py) and on copies broken on purpose.
#include "test_common.hpp"

#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/io/safetensors.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {


std::string torch_dir(const std::string& model) { return peft_test::reference_dir() + "/torch/" + model; }

using float_map = std::map<std::string, peft::tensor>;
using edit_fn = std::function<void(float_map&, json&)>;

/// Copies an F32 reference checkpoint to a scratch folder, letting @p edit change the
/// tensors and the config on the way. Integer tensors are kept as they are.
std::string edited_copy(const std::string& name, const std::string& model, const edit_fn& edit) {
  const std::string src = torch_dir(model);
  const std::string dst = peft_test::scratch_dir("hf_" + name);
  const auto f = peft::safetensors_file::open(src + "/model.safetensors");
  float_map floats;
  std::map<std::string, peft::int_tensor> ints;
  for (const auto& n : f.names()) {
    if (peft::is_floating(f.info(n).dtype))
      floats[n] = f.load(n);
    else
      ints[n] = f.load_integers(n);
  }
  json cfg = json::parse(peft_test::read_text(src + "/config.json"));
  edit(floats, cfg);
  peft::safetensors_writer w;
  for (const auto& kv : floats) w.add(kv.first, kv.second);
  for (const auto& kv : ints) w.add(kv.first, kv.second.shape, kv.second.data);
  w.save(dst + "/model.safetensors");
  std::ofstream(dst + "/config.json") << cfg.dump(2);
  return dst;
}

/// Renames every key for which @p rename returns a different string.
void rename_keys(float_map& t, const std::function<std::string(const std::string&)>& rename) {
  float_map out;
  for (auto& kv : t) out[rename(kv.first)] = std::move(kv.second);
  t = std::move(out);
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

std::string write_config(const std::string& name, const json& cfg) {
  const std::string dir = peft_test::scratch_dir("hfcfg_" + name);
  std::ofstream(dir + "/config.json") << cfg.dump();
  return dir + "/config.json";
}

json bert_config() { return json::parse(peft_test::read_text(torch_dir("bert") + "/config.json")); }

template <typename A, typename B>
void check_same(const A& a, const B& b, const char* what) {
  INFO(what);
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  CHECK((a.template cast<double>().array() == b.template cast<double>().array()).all());
}

template <typename S1, typename S2>
void check_same_weights(const peft::encoder_weights<S1>& a, const peft::encoder_weights<S2>& b) {
  check_same(a.word_embeddings, b.word_embeddings, "word_embeddings");
  check_same(a.position_embeddings, b.position_embeddings, "position_embeddings");
  check_same(a.token_type_embeddings, b.token_type_embeddings, "token_type_embeddings");
  check_same(a.embedding_norm.gamma, b.embedding_norm.gamma, "embedding_norm.gamma");
  check_same(a.embedding_norm.beta, b.embedding_norm.beta, "embedding_norm.beta");
  REQUIRE(a.layers.size() == b.layers.size());
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    INFO("layer " << i);
    const auto &x = a.layers[i], &y = b.layers[i];
    check_same(x.query.weight, y.query.weight, "query.weight");
    check_same(x.query.bias, y.query.bias, "query.bias");
    check_same(x.key.weight, y.key.weight, "key.weight");
    check_same(x.key.bias, y.key.bias, "key.bias");
    check_same(x.value.weight, y.value.weight, "value.weight");
    check_same(x.value.bias, y.value.bias, "value.bias");
    check_same(x.attn_out.weight, y.attn_out.weight, "attn_out.weight");
    check_same(x.attn_out.bias, y.attn_out.bias, "attn_out.bias");
    check_same(x.attn_norm.gamma, y.attn_norm.gamma, "attn_norm.gamma");
    check_same(x.attn_norm.beta, y.attn_norm.beta, "attn_norm.beta");
    check_same(x.ffn_in.weight, y.ffn_in.weight, "ffn_in.weight");
    check_same(x.ffn_in.bias, y.ffn_in.bias, "ffn_in.bias");
    check_same(x.ffn_out.weight, y.ffn_out.weight, "ffn_out.weight");
    check_same(x.ffn_out.bias, y.ffn_out.bias, "ffn_out.bias");
    check_same(x.ffn_norm.gamma, y.ffn_norm.gamma, "ffn_norm.gamma");
    check_same(x.ffn_norm.beta, y.ffn_norm.beta, "ffn_norm.beta");
  }
  check_same(a.pooler.weight, b.pooler.weight, "pooler.weight");
  check_same(a.pooler.bias, b.pooler.bias, "pooler.bias");
  check_same(a.mlm_transform.weight, b.mlm_transform.weight, "mlm_transform.weight");
  check_same(a.mlm_transform.bias, b.mlm_transform.bias, "mlm_transform.bias");
  check_same(a.mlm_norm.gamma, b.mlm_norm.gamma, "mlm_norm.gamma");
  check_same(a.mlm_norm.beta, b.mlm_norm.beta, "mlm_norm.beta");
  check_same(a.mlm_bias, b.mlm_bias, "mlm_bias");
}

}  // namespace

TEST_CASE("read_hf_config reads the reference BERT and RoBERTa configs", "[hf][config]") {
  const peft::encoder_config b = peft::read_hf_config(torch_dir("bert") + "/config.json");
  CHECK(b.model_type == "bert");
  CHECK(b.vocab_size == 100);
  CHECK(b.hidden_size == 64);
  CHECK(b.embedding_size == 64);
  CHECK(b.num_layers == 2);
  CHECK(b.num_heads == 4);
  CHECK(b.intermediate_size == 256);
  CHECK(b.max_positions == 40);
  CHECK(b.type_vocab_size == 2);
  CHECK(b.pad_token_id == 0);
  CHECK(b.layer_norm_eps == 1e-12);
  CHECK(b.hidden_dropout == 0.1);
  CHECK(b.attention_dropout == 0.1);
  CHECK(b.hidden_act == peft::activation::gelu_erf);
  CHECK(b.max_sequence_length() == 40);

  const peft::encoder_config r = peft::read_hf_config(torch_dir("roberta") + "/config.json");
  CHECK(r.model_type == "roberta");
  CHECK(r.pad_token_id == 1);
  CHECK(r.type_vocab_size == 1);
  CHECK(r.max_sequence_length() == 38);

  json minimal = {{"model_type", "roberta"}, {"vocab_size", 10},         {"hidden_size", 8},
                  {"num_hidden_layers", 1},  {"num_attention_heads", 2}, {"intermediate_size", 16},
                  {"max_position_embeddings", 20}, {"hidden_act", "gelu_new"}};
  const auto m = peft::read_hf_config(write_config("minimal", minimal));
  CHECK(m.pad_token_id == 1);  // RoBERTa default
  CHECK(m.type_vocab_size == 2);
  CHECK(m.layer_norm_eps == 1e-12);
  CHECK(m.hidden_act == peft::activation::gelu_tanh);
}

TEST_CASE("read_hf_config rejects bad configs naming the key", "[hf][config][errors]") {
  json c = bert_config();
  auto error_for = [&](const std::string& name, const json& cfg) {
    const std::string path = write_config(name, cfg);
    return peft_test::message_of<peft::io_error>([&] { peft::read_hf_config(path); });
  };
  json x = c;
  x["hidden_size"] = 66;
  CHECK_THAT(error_for("div", x), Contains("hidden_size expected a multiple of num_attention_heads 4, got 66"));
  x = c;
  x["model_type"] = "gpt2";
  CHECK_THAT(error_for("type", x), Contains("model_type expected one of bert, roberta, xlm-roberta, distilbert, electra, albert, mpnet, got 'gpt2'"));
  x = c;
  x.erase("model_type");
  CHECK_THAT(error_for("notype", x), Contains("missing required key 'model_type'"));
  x = c;
  x.erase("num_hidden_layers");
  CHECK_THAT(error_for("nolayers", x), Contains("missing required key 'num_hidden_layers'"));
  x = c;
  x["intermediate_size"] = "256";
  CHECK_THAT(error_for("str", x), Contains("'intermediate_size' expected an integer below 2^63, got \"256\""));
  x = c;
  x["vocab_size"] = 0;
  CHECK_THAT(error_for("zero", x), Contains("'vocab_size' expected >= 1, got 0"));
  x = c;
  x["num_attention_heads"] = -4;
  CHECK_THAT(error_for("neg", x), Contains("'num_attention_heads' expected >= 1, got -4"));
  x = c;
  x["hidden_act"] = "swish";
  CHECK_THAT(error_for("act", x), Contains("hidden_act") && Contains("'swish'"));
  x = c;
  x["position_embedding_type"] = "relative_key";
  CHECK_THAT(error_for("rel", x), Contains("position_embedding_type expected \"absolute\""));
  x = c;
  x["layer_norm_eps"] = 0;
  CHECK_THAT(error_for("eps", x), Contains("layer_norm_eps"));
  x = c;
  x["pad_token_id"] = 100;
  CHECK_THAT(error_for("pad", x), Contains("pad_token_id expected in [0, 100), got 100"));
  CHECK_THAT(error_for("array", json::array({1, 2})), Contains("expected a JSON object, got array"));
  const std::string dir = peft_test::scratch_dir("hfcfg_text");
  std::ofstream(dir + "/config.json") << "{\"model_type\": ";
  CHECK_THROWS_MSG(peft::read_hf_config(dir + "/config.json"), peft::io_error,
                   Contains(dir + "/config.json") && Contains("not valid JSON"));
  CHECK_THROWS_MSG(peft::read_hf_config(dir + "/none.json"), peft::io_error, Contains(dir + "/none.json"));
}

TEMPLATE_TEST_CASE("load_hf_encoder loads the torch BERT checkpoint", "[hf][load]", float, double) {
  const std::string dir = torch_dir("bert");
  const auto w = peft::load_hf_encoder<TestType>(dir);
  REQUIRE(w);
  const auto& c = w->config;
  CHECK(c.model_type == "bert");
  CHECK(w->word_embeddings.rows() == 100);
  CHECK(w->word_embeddings.cols() == 64);
  CHECK(w->position_embeddings.rows() == 40);
  CHECK(w->token_type_embeddings.rows() == 2);
  CHECK(w->embedding_norm.gamma.size() == 64);
  REQUIRE(w->layers.size() == 2);
  for (const auto& L : w->layers) {
    CHECK(L.query.weight.rows() == 64);
    CHECK(L.query.weight.cols() == 64);
    CHECK(L.value.bias.size() == 64);
    CHECK(L.ffn_in.weight.rows() == 256);
    CHECK(L.ffn_in.weight.cols() == 64);
    CHECK(L.ffn_out.weight.rows() == 64);
    CHECK(L.ffn_out.weight.cols() == 256);
    CHECK(L.attn_norm.beta.size() == 64);
    CHECK(L.residual_proj.empty());
  }
  CHECK(w->has_pooler());
  CHECK(w->has_mlm_head());
  CHECK(w->mlm_bias.size() == 100);
  CHECK(w->final_norm.empty());

  // Spot checks against the raw file: row-major [out x in], right tensor in the right slot.
  const auto f = peft::safetensors_file::open(dir + "/model.safetensors");
  const auto v = f.load_values<TestType>("bert.encoder.layer.1.attention.self.value.weight");
  CHECK(w->layers[1].value.weight(3, 5) == v[3 * 64 + 5]);
  CHECK(w->layers[1].value.weight(63, 0) == v[63 * 64]);
  const auto ffn_out = f.load_values<TestType>("bert.encoder.layer.0.output.dense.weight");
  CHECK(w->layers[0].ffn_out.weight(7, 200) == ffn_out[7 * 256 + 200]);
  const auto ffn_in_b = f.load_values<TestType>("bert.encoder.layer.0.intermediate.dense.bias");
  CHECK(w->layers[0].ffn_in.bias(255) == ffn_in_b[255]);
  CHECK(w->layers[0].attn_norm.gamma(4) ==
        f.load_values<TestType>("bert.encoder.layer.0.attention.output.LayerNorm.weight")[4]);
  CHECK(w->layers[1].ffn_norm.beta(9) == f.load_values<TestType>("bert.encoder.layer.1.output.LayerNorm.bias")[9]);
  CHECK(w->mlm_bias(99) == f.load_values<TestType>("cls.predictions.bias")[99]);
  CHECK(w->mlm_norm.gamma(1) == f.load_values<TestType>("cls.predictions.transform.LayerNorm.weight")[1]);
  CHECK(w->pooler.weight(2, 61) == f.load_values<TestType>("bert.pooler.dense.weight")[2 * 64 + 61]);
  CHECK(w->token_type_embeddings(1, 0) == f.load_values<TestType>("bert.embeddings.token_type_embeddings.weight")[64]);
  // Randomised LayerNorm parameters, not ones and zeros.
  CHECK(w->embedding_norm.gamma.minCoeff() != w->embedding_norm.gamma.maxCoeff());

  const auto we = peft::read_npy_matrix<float>(dir + "/word_embeddings.npy");
  check_same(w->word_embeddings, we, "word_embeddings vs word_embeddings.npy");

  // Every tensor but the I64 position_ids buffer and the tied decoder is counted once.
  std::int64_t file_params = 0;
  for (const auto& n : f.names())
    if (n != "bert.embeddings.position_ids" && n != "cls.predictions.decoder.weight") file_params += f.info(n).numel();
  CHECK(w->num_parameters() == file_params);
}

TEST_CASE("load_hf_encoder loads the torch RoBERTa checkpoint", "[hf][load]") {
  const auto w = peft::load_hf_encoder<float>(torch_dir("roberta"));
  CHECK(w->config.model_type == "roberta");
  CHECK(w->config.pad_token_id == 1);
  CHECK(w->token_type_embeddings.rows() == 1);
  CHECK(w->has_mlm_head());
  CHECK(w->has_pooler());
  const auto f = peft::safetensors_file::open(torch_dir("roberta") + "/model.safetensors");
  CHECK(w->mlm_transform.weight(10, 20) == f.load("lm_head.dense.weight").data[10 * 64 + 20]);
  CHECK(w->mlm_norm.beta(3) == f.load("lm_head.layer_norm.bias").data[3]);
  CHECK(w->mlm_bias(0) == f.load("lm_head.bias").data[0]);
  CHECK(w->position_embeddings(39, 63) == f.load("roberta.embeddings.position_embeddings.weight").data[39 * 64 + 63]);
}

TEMPLATE_TEST_CASE("F16 and BF16 checkpoints convert exactly, subnormals included", "[hf][load][dtype]", float,
                   double) {
  for (const std::string model : {"model_f16", "model_bf16"}) {
    INFO(model);
    const std::string dir = torch_dir(model);
    const auto f = peft::safetensors_file::open(dir + "/model.safetensors");
    CHECK(f.info("bert.encoder.layer.0.attention.self.query.weight").dtype ==
          (model == "model_f16" ? peft::safetensors_dtype::f16 : peft::safetensors_dtype::bf16));
    const auto w = peft::load_hf_encoder<TestType>(dir);
    const auto we = peft::read_npy_matrix<float>(dir + "/word_embeddings.npy");
    check_same(w->word_embeddings, we, "word_embeddings vs word_embeddings.npy");
    // The last row holds values that are subnormal in the storage format.
    const auto last = w->word_embeddings.row(99);
    if (model == "model_f16") {
      CHECK(last(0) == static_cast<TestType>(std::ldexp(1.0, -24)));
      CHECK(last(1) == static_cast<TestType>(-std::ldexp(1.0, -24)));
      CHECK(last(3) == static_cast<TestType>(1023 * std::ldexp(1.0, -24)));
    } else {
      CHECK(last(0) == static_cast<TestType>(std::ldexp(1.0, -133)));
      CHECK(last(1) == static_cast<TestType>(-std::ldexp(1.0, -130)));
    }
    // Rounded weights differ from the F32 ones, but only by the format's precision.
    const auto w32 = peft::load_hf_encoder<TestType>(torch_dir("bert"));
    const double rel = model == "model_f16" ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    const auto& a = w->layers[1].ffn_in.weight;
    const auto& b = w32->layers[1].ffn_in.weight;
    CHECK((a.array() != b.array()).any());
    CHECK(((a - b).array().abs() <= b.array().abs() * static_cast<TestType>(rel) + static_cast<TestType>(1e-7)).all());
  }
}

TEST_CASE("checkpoints without the model prefix, with gamma/beta, or without heads load", "[hf][load]") {
  const auto ref = peft::load_hf_encoder<float>(torch_dir("bert"));

  SECTION("BertModel keys (no 'bert.' prefix)") {
    const auto dir = edited_copy("noprefix", "bert", [](float_map& t, json&) {
      rename_keys(t, [](const std::string& k) { return starts_with(k, "bert.") ? k.substr(5) : k; });
    });
    const auto w = peft::load_hf_encoder<float>(dir);
    check_same_weights(*w, *ref);
  }
  SECTION("old gamma/beta LayerNorm names") {
    const auto dir = edited_copy("gamma", "bert", [](float_map& t, json&) {
      rename_keys(t, [](const std::string& k) {
        const auto p = k.find("LayerNorm.");
        if (p == std::string::npos) return k;
        const std::string tail = k.substr(p + 10);
        return k.substr(0, p + 10) + (tail == "weight" ? "gamma" : tail == "bias" ? "beta" : tail);
      });
    });
    const auto w = peft::load_hf_encoder<float>(dir);
    check_same_weights(*w, *ref);
  }
  SECTION("decoder bias under its other name") {
    const auto dir = edited_copy("decbias", "bert", [](float_map& t, json&) {
      rename_keys(t, [](const std::string& k) {
        return k == "cls.predictions.bias" ? std::string("cls.predictions.decoder.bias") : k;
      });
    });
    check_same_weights(*peft::load_hf_encoder<float>(dir), *ref);
  }
  SECTION("no pooler and no MLM head") {
    const auto dir = edited_copy("noheads", "bert", [](float_map& t, json&) {
      for (auto it = t.begin(); it != t.end();)
        it = starts_with(it->first, "cls.") || starts_with(it->first, "bert.pooler.") ? t.erase(it) : std::next(it);
    });
    const auto w = peft::load_hf_encoder<float>(dir);
    CHECK_FALSE(w->has_mlm_head());
    CHECK_FALSE(w->has_pooler());
    CHECK(w->mlm_bias.size() == 0);
    check_same(w->layers[1].ffn_out.weight, ref->layers[1].ffn_out.weight, "ffn_out");
  }
}

TEST_CASE("load_hf_encoder errors name the key, the expected and the found shape", "[hf][load][errors]") {
  auto load_error = [](const std::string& dir) {
    return peft_test::message_of<peft::io_error>([&] { peft::load_hf_encoder<float>(dir); });
  };

  SECTION("missing tensor") {
    const auto dir = edited_copy("missing", "bert", [](float_map& t, json&) {
      t.erase("bert.encoder.layer.1.attention.self.key.bias");
    });
    CHECK_THAT(load_error(dir), Contains("missing tensor 'bert.encoder.layer.1.attention.self.key.bias'") &&
                                    Contains("expected shape [64]") && Contains(dir));
  }
  SECTION("wrong shape") {
    const auto dir = edited_copy("shape", "bert", [](float_map& t, json&) {
      auto& x = t["bert.encoder.layer.0.intermediate.dense.weight"];
      x.shape = {255, 64};
      x.data.resize(255 * 64);
    });
    CHECK_THAT(load_error(dir), Contains("'bert.encoder.layer.0.intermediate.dense.weight'") &&
                                    Contains("shape expected [256, 64], got [255, 64]"));
  }
  SECTION("transposed weight") {
    const auto dir = edited_copy("transposed", "bert", [](float_map& t, json&) {
      t["bert.encoder.layer.1.output.dense.weight"].shape = {256, 64};
    });
    CHECK_THAT(load_error(dir), Contains("'bert.encoder.layer.1.output.dense.weight'") &&
                                    Contains("shape expected [64, 256], got [256, 64]"));
  }
  SECTION("config disagrees with the checkpoint") {
    const auto fewer = edited_copy("fewer", "bert", [](float_map&, json& c) { c["num_hidden_layers"] = 1; });
    CHECK_THAT(load_error(fewer), Contains("'bert.encoder.layer.1.") && Contains("layer 1") &&
                                      Contains("num_hidden_layers is 1"));
    const auto more = edited_copy("more", "bert", [](float_map&, json& c) { c["num_hidden_layers"] = 3; });
    CHECK_THAT(load_error(more), Contains("missing tensor 'bert.encoder.layer.2.attention.self.query.weight'"));
    const auto vocab = edited_copy("vocab", "bert", [](float_map&, json& c) { c["vocab_size"] = 101; });
    CHECK_THAT(load_error(vocab), Contains("'bert.embeddings.word_embeddings.weight'") &&
                                      Contains("expected [101, 64], got [100, 64]"));
    const auto heads = edited_copy("heads", "bert", [](float_map&, json& c) { c["num_attention_heads"] = 5; });
    CHECK_THAT(load_error(heads), Contains("config.json") && Contains("multiple of num_attention_heads 5"));
    const auto type = edited_copy("type", "bert", [](float_map&, json& c) { c["model_type"] = "roberta"; });
    CHECK_THAT(load_error(type), Contains("missing tensor 'roberta.embeddings.word_embeddings.weight'") &&
                                     Contains("'bert.' keys"));
  }
  SECTION("incomplete heads") {
    const auto mlm = edited_copy("mlm", "bert", [](float_map& t, json&) {
      t.erase("cls.predictions.transform.LayerNorm.bias");
    });
    CHECK_THAT(load_error(mlm), Contains("missing tensor 'cls.predictions.transform.LayerNorm.bias'") &&
                                    Contains("head is incomplete"));
    const auto pooler = edited_copy("pooler", "bert", [](float_map& t, json&) { t.erase("bert.pooler.dense.weight"); });
    CHECK_THAT(load_error(pooler), Contains("missing tensor 'bert.pooler.dense.weight'") &&
                                       Contains("'bert.pooler.dense.bias' is present"));
  }
  SECTION("untied decoder, integer weights, non-finite weights") {
    const auto untied = edited_copy("untied", "bert", [](float_map& t, json&) {
      t["cls.predictions.decoder.weight"].data[5] += 1.0f;
    });
    CHECK_THAT(load_error(untied), Contains("'cls.predictions.decoder.weight'") && Contains("tied"));

    const std::string src = torch_dir("bert");
    const std::string dir = peft_test::scratch_dir("hf_int");
    const auto f = peft::safetensors_file::open(src + "/model.safetensors");
    peft::safetensors_writer w;
    for (const auto& n : f.names()) {
      if (n == "bert.embeddings.position_ids") continue;
      if (n == "bert.encoder.layer.0.attention.self.query.bias")
        w.add(n, {64}, std::vector<std::int64_t>(64, 1));
      else
        w.add(n, f.load(n));
    }
    w.save(dir + "/model.safetensors");
    fs::copy_file(src + "/config.json", dir + "/config.json");
    CHECK_THAT(load_error(dir), Contains("'bert.encoder.layer.0.attention.self.query.bias'") && Contains("got I64"));

    const auto nan = edited_copy("nan", "bert", [](float_map& t, json&) {
      t["bert.encoder.layer.1.attention.output.dense.bias"].data[3] = std::nanf("");
    });
    CHECK_THROWS_MSG(peft::load_hf_encoder<float>(nan), peft::numeric_error,
                     Contains("'bert.encoder.layer.1.attention.output.dense.bias'") && Contains("element 3"));
  }
  SECTION("missing files") {
    const std::string dir = peft_test::scratch_dir("hf_nofiles");
    CHECK_THAT(load_error(dir), Contains(dir + "/config.json"));
    fs::copy_file(torch_dir("bert") + "/config.json", dir + "/config.json");
    CHECK_THAT(load_error(dir), Contains(dir + "/model.safetensors"));
    std::ofstream(dir + "/pytorch_model.bin") << "x";
    CHECK_THAT(load_error(dir), Contains("pytorch_model.bin"));
  }
}

TEMPLATE_TEST_CASE("save_hf_encoder round trips exactly", "[hf][save]", float, double) {
  for (const std::string model : {"bert", "roberta"}) {
    INFO(model);
    const auto w = peft::load_hf_encoder<TestType>(torch_dir(model));
    const std::string dir = peft_test::scratch_dir("hf_save_" + model) + "/out";
    peft::save_hf_encoder(dir, *w);
    const auto f = peft::safetensors_file::open(dir + "/model.safetensors");
    CHECK(f.info(model + ".encoder.layer.0.attention.self.query.weight").dtype ==
          (std::is_same_v<TestType, float> ? peft::safetensors_dtype::f32 : peft::safetensors_dtype::f64));
    CHECK(f.contains(model == "bert" ? "cls.predictions.transform.LayerNorm.weight" : "lm_head.layer_norm.weight"));
    const auto back = peft::load_hf_encoder<TestType>(dir);
    check_same_weights(*back, *w);
    const auto& a = back->config;
    const auto& b = w->config;
    CHECK(a.model_type == b.model_type);
    CHECK(a.vocab_size == b.vocab_size);
    CHECK(a.num_layers == b.num_layers);
    CHECK(a.num_heads == b.num_heads);
    CHECK(a.intermediate_size == b.intermediate_size);
    CHECK(a.max_positions == b.max_positions);
    CHECK(a.type_vocab_size == b.type_vocab_size);
    CHECK(a.pad_token_id == b.pad_token_id);
    CHECK(a.layer_norm_eps == b.layer_norm_eps);
    CHECK(a.hidden_act == b.hidden_act);
    for (const auto& e : fs::directory_iterator(dir))
      CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  }
}

TEST_CASE("save_hf_encoder rejects inconsistent weights", "[hf][save][errors]") {
  const auto ref = peft::load_hf_encoder<float>(torch_dir("bert"));
  const std::string dir = peft_test::scratch_dir("hf_save_bad");
  peft::encoder_weights<float> w = *ref;

  SECTION("wrong shape names the key") {
    w.layers[1].ffn_in.weight.resize(128, 64);
    CHECK_THROWS_MSG(peft::save_hf_encoder(dir, w), peft::invalid_argument,
                     Contains("'bert.encoder.layer.1.intermediate.dense.weight'") &&
                         Contains("expected [256, 64], got [128, 64]"));
  }
  SECTION("partial head") {
    w.mlm_norm.beta.resize(0);
    CHECK_THROWS_MSG(peft::save_hf_encoder(dir, w), peft::invalid_argument,
                     Contains("'cls.predictions.transform.LayerNorm.bias'"));
  }
  SECTION("no heads is fine") {
    w.mlm_transform = {};
    w.mlm_norm = {};
    w.mlm_bias.resize(0);
    w.pooler = {};
    peft::save_hf_encoder(dir, w);
    const auto back = peft::load_hf_encoder<float>(dir);
    CHECK_FALSE(back->has_mlm_head());
    CHECK_FALSE(back->has_pooler());
  }
  SECTION("bad config and parts BERT cannot hold") {
    w.config.num_heads = 5;
    CHECK_THROWS_MSG(peft::save_hf_encoder(dir, w), peft::invalid_argument, Contains("num_attention_heads 5"));
    w.config.num_heads = 4;
    w.config.model_type = "use_lite";
    CHECK_THROWS_AS(peft::save_hf_encoder(dir, w), peft::invalid_argument);
    w.config.model_type = "bert";
    w.layers.pop_back();
    CHECK_THROWS_MSG(peft::save_hf_encoder(dir, w), peft::invalid_argument, Contains("layers expected 2"));
  }
  CHECK_FALSE(fs::exists(dir + "/model.safetensors.tmp." + std::to_string(::getpid())));
}
