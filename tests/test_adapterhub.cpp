// SPDX-License-Identifier: Apache-2.0
// AdapterHub folders both ways (io/adapterhub.hpp): the folders tests/reference/torch_adapterhub.py
// writes as AdapterHub's `adapters` 1.2.0 does (Houlsby / Pfeiffer bottlenecks, a flex and a
// static head, AdapterFusion), each against PyTorch's computation of AdapterHub's math; every
// refused field and file by name; and peft's own folders read back bitwise and pass AdapterHub's
// loading rules (tests/examples/adapterhub_rules.py).
#include <peft/io/adapterhub.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/methods.hpp>
#include <peft/model/encoder.hpp>
#include <peft/task/heads.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "reference_compare.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft::adapter_fusion;
using peft::bottleneck_adapter;
using peft::bottleneck_config;
using peft_test::max_hidden_diff;
using peft_test::max_matrix_diff;
using peft_test::small_model;
namespace fs = std::filesystem;

namespace {

struct hub_fixture : peft_test::reference_bert {
  hub_fixture() : reference_bert(peft_test::reference_dir() + "/adapterhub") {}
};

/// Logits of folder @p name's AdapterHub head over the encoder output with policy @p p.
template <typename P>
peft::matrix<float> head_logits(const hub_fixture& f, const P& p, const std::string& name) {
  const auto h = peft::read_adapterhub_head(f.dir + "/" + name);
  REQUIRE(h.has_value());
  const bool hidden = h->tensors.count("classifier.dense.weight") > 0;
  peft::classification_head<float> head(f.enc.hidden_size(), static_cast<peft::index>(h->labels.size()),
                                        peft::parse_pool_kind(h->pooling), 0.1, 0, hidden);
  peft::load_store_tensors(head.parameters(), h->tensors, "test");
  return head.forward(*f.weights, f.enc.forward(f.b, p), f.b, peft::mode::eval, nullptr, nullptr);
}

/// Checks that a difference from PyTorch is within 1e-5 and prints it for the README.
void within_bar(double d, const std::string& what) {
  INFO(what << " max abs diff " << d);
  CHECK(d <= 1e-5);
  std::printf("adapterhub %-28s max abs diff %.2g\n", what.c_str(), d);
}

/// AdapterHub's loading rules (tests/examples/adapterhub_rules.py, written from its source) on a
/// folder peft wrote for the small BERT @p shape: no problem found.
void passes_adapterhub_rules(const std::string& folder, const peft::encoder_shape& shape) {
  const std::string python = "/usr/bin/python3";
  if (!fs::exists(python)) FAIL(python << " not found (Debian: python3): AdapterHub's rules are not applied");
  const std::string cfg = peft_test::scratch_dir("adapterhub_rules_model") + "/config.json";
  std::ofstream(cfg) << nlohmann::json{{"hidden_size", shape.hidden_size},
                                       {"num_hidden_layers", shape.num_layers},
                                       {"model_type", shape.model_type}}
                            .dump();
  const std::string cmd = python + " " + std::string(PEFT_SOURCE_DIR) + "/tests/examples/adapterhub_rules.py '" +
                          folder + "' " + cfg;
  std::fflush(stdout);
  const int rc = std::system(cmd.c_str());
  INFO("command: " << cmd);
  CHECK(rc == 0);
}

/// Fixture folder @p name copied to scratch with its config edited by @p edit.
template <typename F>
std::string edited_copy(const hub_fixture& f, const std::string& name, F edit) {
  return peft_test::edited_copy(f.dir + "/" + name, "adapterhub_" + name, edit);
}

}  // namespace

TEST_CASE("AdapterHub folders written by adapters 1.2.0 load and compute what PyTorch computes", "[adapterhub]") {
  hub_fixture f;
  // Houlsby (double_seq_bn) on a BertAdapterModel: keys with bert., swish, both sub-layers,
  // and the default two-layer tanh flex head on token 0.
  const auto houlsby = peft::load_adapterhub_adapter<float>(f.dir + "/houlsby_flex", f.enc.shape());
  CHECK(houlsby.config().adapter_name == "sentiment");
  CHECK(houlsby.config().location == peft::adapter_location::both);
  CHECK(houlsby.config().activation == peft::adapter_activation::swish);
  CHECK(houlsby.bottleneck_size(0) == 4);  // 64 // 16
  CHECK_FALSE(houlsby.config().original_ln_before);
  within_bar(max_hidden_diff(f.enc.forward(f.b, houlsby), f.dir + "/houlsby_flex/hidden.npy", f.b), "houlsby_flex hidden");
  const auto head = peft::read_adapterhub_head(f.dir + "/houlsby_flex");
  REQUIRE(head.has_value());
  CHECK(head->labels == std::vector<std::string>{"negative", "neutral", "positive"});
  CHECK(head->pooling == "cls");
  within_bar(max_matrix_diff(head_logits(f, houlsby, "houlsby_flex"), f.dir + "/houlsby_flex/logits.npy"), "houlsby_flex logits");

  // Pfeiffer (seq_bn) on BertModel: no prefix, reads LN(h + x), layer 0 left out.
  const auto pfeiffer = peft::load_adapterhub_adapter<float>(f.dir + "/pfeiffer_model", f.enc.shape());
  CHECK(pfeiffer.config().original_ln_before);
  CHECK(pfeiffer.config().location == peft::adapter_location::ffn);
  CHECK(pfeiffer.config().layers == std::vector<peft::index>{1});
  CHECK(pfeiffer.bottleneck_size(1) == 8);
  within_bar(max_hidden_diff(f.enc.forward(f.b, pfeiffer), f.dir + "/pfeiffer_model/hidden.npy", f.b), "pfeiffer_model hidden");
  CHECK_FALSE(peft::read_adapterhub_head(f.dir + "/pfeiffer_model").has_value());
  // Reading h instead of LN(h + x) is visibly something else.
  auto cfg = pfeiffer.config();
  cfg.original_ln_before = false;
  bottleneck_adapter<float> on_h(f.enc.shape(), cfg, 0);
  on_h.parameters().values() = pfeiffer.parameters().values();
  CHECK(max_hidden_diff(f.enc.forward(f.b, on_h), f.dir + "/pfeiffer_model/hidden.npy", f.b) > 1e-3);

  // seq_bn with residual_before_ln false, scaling 2, exact GELU, and a static head (pooler).
  const auto stance = peft::load_adapterhub_adapter<float>(f.dir + "/pfeiffer_static", f.enc.shape());
  CHECK_FALSE(stance.config().residual_before_ln);
  CHECK(stance.config().scaling == 2.0);
  CHECK(stance.config().activation == peft::adapter_activation::gelu);
  within_bar(max_hidden_diff(f.enc.forward(f.b, stance), f.dir + "/pfeiffer_static/hidden.npy", f.b), "pfeiffer_static hidden");
  // In double precision the same folder agrees with PyTorch to the float32 rounding of its
  // stored outputs: the float figures above are the float encoder's rounding, not the math.
  {
    auto wd = peft::load_hf_encoder<double>(f.dir + "/model");
    peft::encoder<peft::bert, double> encd(wd);
    const auto stance_d = peft::load_adapterhub_adapter<double>(f.dir + "/pfeiffer_static", encd.shape());
    const peft::matrix<float> hd = encd.forward(f.b, stance_d).cast<float>();
    const double d = max_hidden_diff(hd, f.dir + "/pfeiffer_static/hidden.npy", f.b);
    INFO("pfeiffer_static hidden, double " << d);
    CHECK(d <= 2e-6);
  }
  const auto static_head = peft::read_adapterhub_head(f.dir + "/pfeiffer_static");
  REQUIRE(static_head.has_value());
  CHECK(static_head->pooling == "pooler");
  within_bar(max_matrix_diff(head_logits(f, stance, "pfeiffer_static"), f.dir + "/pfeiffer_static/logits.npy"), "pfeiffer_static logits");

  // AdapterFusion over two seq_bn adapters, the adapters found next to the fusion folder.
  const auto fusion = peft::load_adapterhub_fusion<float>(f.dir + "/fusion/a,b", f.enc.shape());
  CHECK(fusion.fusion_name() == "a,b");
  CHECK(fusion.fused_layers() == std::vector<peft::index>{0, 1});
  within_bar(max_hidden_diff(f.enc.forward(f.b, fusion), f.dir + "/fusion/hidden.npy", f.b), "fusion hidden");

  // load_any_policy tells the folders apart without being told their type.
  CHECK(std::string(peft::load_any_policy<float>(f.dir + "/houlsby_flex", f.enc.shape()).peft_type()) ==
        "BOTTLENECK_ADAPTER");
  CHECK(std::string(peft::load_any_policy<float>(f.dir + "/fusion/a,b", f.enc.shape()).peft_type()) ==
        "ADAPTER_FUSION");
}

TEST_CASE("AdapterHub fields and files peft cannot honour are refused, each by name", "[adapterhub][errors]") {
  hub_fixture f;
  const auto shape = f.enc.shape();
  CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(f.dir + "/houlsby_bin", shape),
                    Catch::Contains("pytorch_adapter.bin") && Catch::Contains("use_safetensors=True"));
  CHECK_THROWS_AS(peft::load_any_policy<float>(f.dir + "/houlsby_bin", shape), peft::io_error);
  struct refusal {
    const char* field;
    nlohmann::json value;
    const char* message;
  };
  const std::vector<refusal> refusals = {
      {"original_ln_after", false, "'original_ln_after' expected true"},
      {"ln_before", true, "'ln_before' expected false"},
      {"ln_after", true, "'ln_after' expected false"},
      {"is_parallel", true, "'is_parallel' expected false"},
      {"use_gating", true, "'use_gating' expected false"},
      {"phm_layer", true, "'phm_layer' expected false"},
      {"cross_adapter", true, "'cross_adapter' expected false"},
      {"inv_adapter", "nice", "'inv_adapter' expected null"},
      {"residual_before_ln", "post_add", "\"post_add\" is not implemented"},
      {"scaling", "learned", "'scaling' expected a number"},
      {"reduction_factor", {{"default", 16}, {"1", 8}}, "per-layer reduction factors"},
      {"non_linearity", "tanh", "'non_linearity' is \"tanh\""},
      {"architecture", "lora", "'architecture' is \"lora\""},
      {"leave_out", {0, 1}, "leaves out every layer"},
      {"leave_out", {2}, "'leave_out' expected layers in [0, 2)"},
      {"mystery_option", 3, "'mystery_option' (3) is not one peft reads"},
  };
  for (const auto& r : refusals) {
    INFO(r.field << " = " << r.value.dump());
    const auto dir = edited_copy(f, "pfeiffer_model", [&](nlohmann::json& j) { j["config"][r.field] = r.value; });
    CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(dir, shape),
                      Catch::Contains(r.message) && Catch::Contains(r.field));
  }
  // Fields that only steer training are read and not used; a missing required field is named.
  auto dir = edited_copy(f, "pfeiffer_model", [](nlohmann::json& j) {
    j["config"]["dropout"] = 0.3;
    j["config"]["stochastic_depth"] = 0.1;
    j["config"]["init_weights"] = "houlsby";
  });
  CHECK_NOTHROW(peft::load_adapterhub_adapter<float>(dir, shape));
  dir = edited_copy(f, "pfeiffer_model", [](nlohmann::json& j) { j["config"].erase("non_linearity"); });
  CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(dir, shape), Catch::Contains("'non_linearity' missing"));
  // The model it was trained on must be this encoder.
  dir = edited_copy(f, "pfeiffer_model", [](nlohmann::json& j) { j["model_type"] = "roberta"; });
  CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(dir, shape),
                    Catch::Contains("'model_type' is \"roberta\" but the encoder is \"bert\""));
  dir = edited_copy(f, "pfeiffer_model", [](nlohmann::json& j) { j["hidden_size"] = 768; });
  CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(dir, shape), Catch::Contains("'hidden_size' is 768"));
  // A config that promises layer 0 too: its tensors are missing, named.
  dir = edited_copy(f, "pfeiffer_model", [](nlohmann::json& j) { j["config"]["leave_out"] = nlohmann::json::array(); });
  CHECK_THROWS_WITH(peft::load_adapterhub_adapter<float>(dir, shape),
                    Catch::Contains("missing tensor 'encoder.layer.0.output.adapters.topic.adapter_down.0."));
  // Legacy files (no version): "gelu" meant the tanh form.
  dir = edited_copy(f, "pfeiffer_static", [](nlohmann::json& j) { j.erase("version"); });
  CHECK(peft::load_adapterhub_adapter<float>(dir, shape).config().activation ==
        peft::adapter_activation::gelu_tanh);
  // Heads: a depth or activation peft's head does not have.
  const std::string head_dir = peft_test::scratch_dir("adapterhub_head");
  for (const auto& e : fs::directory_iterator(f.dir + "/houlsby_flex"))
    fs::copy_file(e.path(), fs::path(head_dir) / e.path().filename(), fs::copy_options::overwrite_existing);
  auto hj = nlohmann::json::parse(peft_test::read_text(head_dir + "/head_config.json"));
  hj["config"]["layers"] = 3;
  std::ofstream(head_dir + "/head_config.json") << hj.dump(2);
  CHECK_THROWS_WITH(peft::read_adapterhub_head(head_dir), Catch::Contains("'layers' expected 1 or 2"));
  hj["config"]["layers"] = 2;
  hj["config"]["activation_function"] = "relu";
  std::ofstream(head_dir + "/head_config.json") << hj.dump(2);
  CHECK_THROWS_WITH(peft::read_adapterhub_head(head_dir), Catch::Contains("'activation_function' expected \"tanh\""));
  hj["config"]["activation_function"] = "tanh";
  hj["config"]["head_type"] = "tagging";
  std::ofstream(head_dir + "/head_config.json") << hj.dump(2);
  CHECK_THROWS_WITH(peft::read_adapterhub_head(head_dir), Catch::Contains("'head_type' expected \"classification\""));
  // Fusion: a temperature schedule peft does not run, and a missing fused adapter folder.
  const std::string fdir = peft_test::scratch_dir("adapterhub_fusion");
  fs::copy(f.dir + "/fusion", fdir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto fj = nlohmann::json::parse(peft_test::read_text(fdir + "/a,b/adapter_fusion_config.json"));
  fj["config"]["temperature"] = true;
  std::ofstream(fdir + "/a,b/adapter_fusion_config.json") << fj.dump(2);
  CHECK_THROWS_WITH(peft::load_adapterhub_fusion<float>(fdir + "/a,b", shape), Catch::Contains("'temperature'"));
  fj["config"]["temperature"] = false;
  std::ofstream(fdir + "/a,b/adapter_fusion_config.json") << fj.dump(2);
  fs::remove_all(fdir + "/b");
  CHECK_THROWS_WITH(peft::load_adapterhub_fusion<float>(fdir + "/a,b", shape), Catch::Contains("b/adapter_config.json"));
}

TEST_CASE("AdapterHub folders peft writes read back bitwise, with their heads and fusions", "[adapterhub][io]") {
  small_model<peft::bert, float> m("bert");
  const auto shape = m.enc.shape();
  peft::rng g(3);
  auto trained = [&](bottleneck_config c, std::uint64_t seed) {
    bottleneck_adapter<float> a(shape, c, seed);
    for (peft::index k = 0; k < a.num_parameters(); ++k) a.parameters().values()[k] = static_cast<float>(g.normal() * 0.3);
    return a;
  };
  auto houlsby = bottleneck_config::houlsby(4);  // 16 wide: reduction factor 4
  houlsby.activation = peft::adapter_activation::swish;
  houlsby.adapter_name = "sst";
  auto seq_bn = bottleneck_config::pfeiffer(0);  // reduction factor 16: 1 unit
  seq_bn.original_ln_before = true;
  seq_bn.residual_before_ln = false;
  seq_bn.scaling = 0.5;
  seq_bn.layers = {1};
  seq_bn.adapter_name = "topic";
  for (const auto& c : {houlsby, seq_bn}) {
    const auto a = trained(c, 7);
    const std::string dir = peft_test::scratch_dir("adapterhub_write_" + c.adapter_name);
    peft::save_adapterhub_adapter(dir, a, {"tiny-bert"});
    const auto j = nlohmann::json::parse(peft_test::read_text(dir + "/adapter_config.json"));
    CHECK(j.at("version") == "adapters.1.2.0");
    CHECK(j.at("model_class") == "BertModel");
    CHECK(j.at("model_name") == "tiny-bert");
    CHECK(j.at("name") == c.adapter_name);
    CHECK_FALSE(j.at("config").contains("architecture"));
    CHECK(j.at("config").at("scaling").is_number_float());  // AdapterHub requires a float
    CHECK(j.at("config").at("original_ln_before") == c.original_ln_before);
    CHECK(fs::exists(dir + "/adapter.safetensors"));
    passes_adapterhub_rules(dir, shape);
    const auto back = peft::load_adapterhub_adapter<float>(dir, shape);
    CHECK(back.parameters().values() == a.parameters().values());
    CHECK(back.config().original_ln_before == c.original_ln_before);
    CHECK(back.config().residual_before_ln == c.residual_before_ln);
    CHECK(back.config().scaling == c.scaling);
    CHECK((m.enc.forward(m.b, back) - m.enc.forward(m.b, a)).cwiseAbs().maxCoeff() == 0);
  }
  // With heads: a linear head over the pooler is written as a static transformers head, one
  // on token 0 and a two-layer one as flex heads; each reads back as it was.
  for (const auto& [pooling, hidden] : {std::pair{"pooler", false}, std::pair{"cls", false}, std::pair{"cls", true}}) {
    peft::classification_head<float> head(16, 2, peft::parse_pool_kind(pooling), 0.1, 5, hidden);
    peft::adapterhub_head h{{"no", "yes"}, pooling, peft::store_tensors(head.parameters())};
    const auto a = trained(houlsby, 9);
    const std::string dir = peft_test::scratch_dir(std::string("adapterhub_write_head_") + pooling +
                                                   (hidden ? "2" : "1"));
    peft::save_adapterhub_adapter(dir, a, {}, &h);
    const auto hc = nlohmann::json::parse(peft_test::read_text(dir + "/head_config.json"));
    const bool is_static = std::string(pooling) == "pooler";
    CHECK(hc.at("config").is_null() == is_static);
    if (!is_static) CHECK(hc.at("config").at("layers") == (hidden ? 2 : 1));
    passes_adapterhub_rules(dir, shape);
    const auto back = peft::read_adapterhub_head(dir);
    REQUIRE(back.has_value());
    CHECK(back->labels == h.labels);
    CHECK(back->pooling == pooling);
    REQUIRE(back->tensors.size() == h.tensors.size());
    for (const auto& kv : h.tensors) CHECK(back->tensors.at(kv.first).data == kv.second.data);
    CHECK(peft::load_adapterhub_adapter<float>(dir, shape).parameters().values() == a.parameters().values());
  }
  // A fusion: the adapters next to it, as AdapterHub's save_all_adapters lays them out.
  std::vector<std::shared_ptr<const bottleneck_adapter<float>>> ads;
  for (const char* name : {"x", "y"}) {
    auto c = bottleneck_config::pfeiffer(4);
    c.original_ln_before = true;
    c.adapter_name = name;
    ads.push_back(std::make_shared<bottleneck_adapter<float>>(trained(c, 11)));
  }
  adapter_fusion<float> fusion(shape, ads, {}, 4);
  for (peft::index k = 0; k < fusion.num_parameters(); ++k)
    fusion.parameters().values()[k] += static_cast<float>(g.normal() * 0.1);
  const std::string parent = peft_test::scratch_dir("adapterhub_write_fusion");
  peft::save_adapterhub_fusion(parent, fusion);
  CHECK(fs::exists(parent + "/x/adapter.safetensors"));
  CHECK(fs::exists(parent + "/x,y/model_adapter_fusion.safetensors"));
  for (const char* folder : {"/x", "/y", "/x,y"}) passes_adapterhub_rules(parent + folder, shape);
  const auto back = peft::load_adapterhub_fusion<float>(parent + "/x,y", shape);
  CHECK(back.parameters().values() == fusion.parameters().values());
  CHECK((m.enc.forward(m.b, back) - m.enc.forward(m.b, fusion)).cwiseAbs().maxCoeff() == 0);

  // What AdapterHub cannot compute is refused before anything is written; a previous save stays.
  const std::string dir = peft_test::scratch_dir("adapterhub_write_refused");
  peft::save_adapterhub_adapter(dir, trained(houlsby, 1));
  const auto before = peft::load_adapterhub_adapter<float>(dir, shape).parameters().values();
  CHECK_THROWS_WITH(peft::save_adapterhub_adapter(dir, trained(bottleneck_config::list(4), 2)),
                    Catch::Contains("placement is pre_dropout"));
  auto no_bias = houlsby;
  no_bias.bias = false;
  CHECK_THROWS_WITH(peft::save_adapterhub_adapter(dir, trained(no_bias, 2)), Catch::Contains("has none"));
  CHECK_THROWS_WITH(peft::save_adapterhub_adapter(dir, trained(bottleneck_config::houlsby(3), 2)),
                    Catch::Contains("does not divide the width 16"));
  CHECK(peft::load_adapterhub_adapter<float>(dir, shape).parameters().values() == before);
  small_model<peft::use_lite, float> u("use_lite");
  CHECK_THROWS_WITH(peft::save_adapterhub_adapter(dir, bottleneck_adapter<float>(u.enc.shape(), houlsby, 1)),
                    Catch::Contains("no model class for a use_lite encoder"));
}

namespace {

/// An AdapterHub folder peft writes for the family folder @p family (tests/reference/
/// torch_families.py) has that family's model class, type and key prefix, passes AdapterHub's
/// rules and reads back bitwise.
template <typename Arch>
void check_family_folder(const std::string& family, const std::string& stem, const std::string& prefix) {
  const std::string model = peft_test::reference_dir() + "/families/" + family;
  INFO(family);
  if (!fs::exists(model + "/config.json")) {
    FAIL_CHECK("reference_families output missing for " << model);
    return;
  }
  const peft::encoder<Arch, float> enc(peft::load_hf_encoder<float>(model));
  const auto shape = enc.shape();
  const auto b = peft_test::reference_batch(model);
  bottleneck_adapter<float> a(shape, bottleneck_config::houlsby(4), 3);
  peft::rng g(11);
  for (peft::index k = 0; k < a.num_parameters(); ++k) a.parameters().values()[k] = static_cast<float>(g.normal() * 0.3);
  peft::classification_head<float> head(shape.hidden_size, 2, peft::pool_kind::cls, 0.1, 5, true);
  const peft::adapterhub_head h{{"no", "yes"}, "cls", peft::store_tensors(head.parameters())};
  for (const bool with_head : {false, true}) {
    const std::string dir = peft_test::scratch_dir("adapterhub_family_" + family + (with_head ? "_head" : ""));
    peft::save_adapterhub_adapter(dir, a, {family}, with_head ? &h : nullptr);
    const auto j = nlohmann::json::parse(peft_test::read_text(dir + "/adapter_config.json"));
    CHECK(j.at("model_class") == stem + (with_head ? "AdapterModel" : "Model"));
    CHECK(j.at("model_type") == family);
    const auto names = peft::safetensors_file::open(dir + "/adapter.safetensors").names();
    REQUIRE_FALSE(names.empty());
    for (const auto& n : names) CHECK(n.rfind((with_head ? prefix : "") + "encoder.layer.", 0) == 0);
    passes_adapterhub_rules(dir, shape);
    const auto back = peft::load_adapterhub_adapter<float>(dir, shape);
    CHECK(back.parameters().values() == a.parameters().values());
    CHECK((enc.forward(b, back) - enc.forward(b, a)).cwiseAbs().maxCoeff() == 0);
  }
}

}  // namespace

TEST_CASE("AdapterHub folders for XLM-R and ELECTRA; DistilBERT's and ALBERT's refused by name",
          "[adapterhub][families]") {
  check_family_folder<peft::roberta>("xlm-roberta", "XLMRoberta", "roberta.");
  check_family_folder<peft::bert>("electra", "Electra", "electra.");
  for (const char* family : {"distilbert", "albert"}) {
    INFO(family);
    const peft::encoder<peft::bert, float> enc(
        peft::load_hf_encoder<float>(peft_test::reference_dir() + "/families/" + family));
    const bottleneck_adapter<float> a(enc.shape(), bottleneck_config::houlsby(4), 3);
    const std::string dir = peft_test::scratch_dir(std::string("adapterhub_family_refused_") + family);
    CHECK_THROWS_WITH(peft::save_adapterhub_adapter(dir, a),
                      Catch::Contains("AdapterHub keeps a " + std::string(family)) &&
                          Catch::Contains("neither reads nor writes"));
  }
}
