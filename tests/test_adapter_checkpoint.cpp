// SPDX-License-Identifier: Apache-2.0
// save_policy / load_policy: file layout, atomicity (a failed save never replaces a good
// checkpoint), corrupt and mismatched checkpoints, export_tensors/import_tensors policies.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/policies/bottleneck_adapter.hpp>

#include <filesystem>
#include <fstream>
#include <limits>

#include "small_model.hpp"

using peft::bottleneck_adapter;
using peft::bottleneck_config;
using namespace peft_test;
namespace fs = std::filesystem;

namespace {

/// A policy whose saved form differs from its blocks: it saves its value doubled, under another key.
struct exported_policy {
  using scalar_type = float;
  static constexpr const char* peft_type = "TEST_EXPORT";
  peft::parameter_store<float> store;
  peft::encoder_shape shape;
  explicit exported_policy(const peft::encoder_shape& s) : shape(s) { store.add("w", 2, 3, peft::param_group::weight); }
  peft::parameter_store<float>& parameters() { return store; }
  const peft::parameter_store<float>& parameters() const { return store; }
  peft::index num_parameters() const { return store.size(); }
  nlohmann::json config_json() const {
    nlohmann::json j{{"peft_type", peft_type}};
    peft::write_shape_fields(j, shape);
    return j;
  }
  static exported_policy from_config(const nlohmann::json& j, const peft::encoder_shape& s) {
    peft::check_config_header(j, peft_type, s, "exported_policy::from_config");
    return exported_policy(s);
  }
  std::map<std::string, peft::tensor> export_tensors() const {
    peft::tensor t;
    t.shape = {6};
    for (peft::index i = 0; i < 6; ++i) t.data.push_back(2 * store.values()[i]);
    return {{"packed", t}};
  }
  void import_tensors(const std::map<std::string, peft::tensor>& m) {
    for (peft::index i = 0; i < 6; ++i) store.values()[i] = m.at("packed").data[size_t(i)] / 2;
  }
};

std::string slurp(const std::string& p) { return read_text(p); }

bottleneck_adapter<float> sample_adapter(const peft::encoder_shape& shape, std::uint64_t seed) {
  bottleneck_adapter<float> a(shape, bottleneck_config::houlsby(3), seed);
  peft::rng g(seed);
  for (peft::index i = 0; i < a.num_parameters(); ++i) a.parameters().values()[i] = static_cast<float>(g.normal());
  return a;
}

}  // namespace

TEST_CASE("a checkpoint folder holds the PEFT-style config and F32 safetensors", "[checkpoint]") {
  const auto shape = small_model<peft::bert, float>("bert").enc.shape();
  const auto a = sample_adapter(shape, 1);
  const std::string dir = scratch_dir("ckpt_layout") + "/nested/folder";
  peft::save_policy(dir, a);
  CHECK(fs::exists(dir + "/adapter_config.json"));
  CHECK(fs::exists(dir + "/adapter_model.safetensors"));
  const auto cfg = peft::read_adapter_config(dir);
  CHECK(cfg["peft_type"] == "BOTTLENECK_ADAPTER");
  // peft's own fields under "peft_cpp": Hugging Face PEFT's "peft_version" is its version, not ours.
  CHECK_FALSE(cfg.contains("peft_version"));
  CHECK(cfg["peft_cpp"]["version"] == peft::version_string);
  CHECK(cfg["peft_cpp"]["weights_fnv1a64"].is_string());
  CHECK(cfg["model_type"] == "bert");
  CHECK(cfg["hidden_size"] == 16);
  const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(f.size() == static_cast<std::size_t>(a.parameters().num_blocks()));
  CHECK(f.metadata() == nlohmann::json({{"format", "pt"}}));
  for (const auto& b : a.parameters().blocks()) CHECK(f.info(b.name).dtype == peft::safetensors_dtype::f32);
  // Only the two files remain (no temporaries or backups), also after overwriting.
  peft::save_policy(dir, sample_adapter(shape, 2));
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  CHECK(n == 2);
}

TEST_CASE("a failed save never replaces a good checkpoint", "[checkpoint][atomic]") {
  const auto shape = small_model<peft::bert, float>("bert").enc.shape();
  const auto good = sample_adapter(shape, 1);
  const std::string dir = scratch_dir("ckpt_atomic");
  peft::save_policy(dir, good);
  const std::string cfg_before = slurp(dir + "/adapter_config.json");
  const std::string wts_before = slurp(dir + "/adapter_model.safetensors");
  auto unchanged = [&] {
    CHECK(slurp(dir + "/adapter_config.json") == cfg_before);
    CHECK(slurp(dir + "/adapter_model.safetensors") == wts_before);
    for (const auto& e : fs::directory_iterator(dir)) {
      const auto name = e.path().filename().string();
      CHECK((name == "adapter_config.json" || name == "adapter_model.safetensors" || name.find(".blocker") != std::string::npos));
    }
  };
  auto other = sample_adapter(shape, 2);
  SECTION("a non-finite value") {
    other.parameters().values()[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(peft::save_policy(dir, other), peft::numeric_error);
    CHECK_THROWS_WITH(peft::save_policy(dir, other), Catch::Contains("value expected finite") &&
                                                        Catch::Contains("adapter_down.0.weight"));
    unchanged();
  }
  SECTION("the config's temporary file cannot be created (after the weights were staged)") {
    const std::string tmp = dir + "/adapter_config.json.tmp." + std::to_string(::getpid());
    fs::create_directory(tmp);
    CHECK_THROWS_AS(peft::save_policy(dir, other), peft::io_error);
    fs::remove(tmp);
    unchanged();
  }
  SECTION("the weights' temporary file cannot be created") {
    const std::string tmp = dir + "/adapter_model.safetensors.tmp." + std::to_string(::getpid());
    fs::create_directory(tmp);
    CHECK_THROWS_WITH(peft::save_policy(dir, other), Catch::Contains("adapter_model.safetensors"));
    fs::remove(tmp);
    unchanged();
  }
  SECTION("the config cannot be put in place: the previous weights are restored") {
    // A folder where the config should go makes the final rename fail after the weights moved.
    const std::string d2 = scratch_dir("ckpt_atomic2");
    peft::save_policy(d2, good);
    const std::string w2 = slurp(d2 + "/adapter_model.safetensors");
    fs::remove(d2 + "/adapter_config.json");
    fs::create_directories(d2 + "/adapter_config.json/blocker");
    CHECK_THROWS_AS(peft::save_policy(d2, other), peft::io_error);
    CHECK(slurp(d2 + "/adapter_model.safetensors") == w2);
    CHECK(!fs::exists(d2 + "/adapter_model.safetensors.bak." + std::to_string(::getpid())));
    fs::remove_all(d2);
    unchanged();
  }
  SECTION("the target is a file") {
    std::ofstream(dir + "/plain") << "x";
    CHECK_THROWS_WITH(peft::save_policy(dir + "/plain", other), Catch::Contains("not a folder"));
    fs::remove(dir + "/plain");
  }
  const auto back = peft::load_policy<bottleneck_adapter<float>>(dir, shape);
  CHECK(back.parameters().values() == good.parameters().values());
}

TEST_CASE("corrupt and mismatched checkpoints are rejected, naming the problem", "[checkpoint][errors]") {
  const auto shape = small_model<peft::bert, float>("bert").enc.shape();
  const auto a = sample_adapter(shape, 1);
  const std::string dir = scratch_dir("ckpt_corrupt");
  using A = bottleneck_adapter<float>;
  SECTION("missing folder / files") {
    CHECK_THROWS_WITH(peft::load_policy<A>(dir + "/none", shape), Catch::Contains("adapter_config.json"));
    peft::save_policy(dir, a);
    fs::remove(dir + "/adapter_model.safetensors");
    CHECK_THROWS_AS(peft::load_policy<A>(dir, shape), peft::io_error);
  }
  SECTION("config not JSON") {
    peft::save_policy(dir, a);
    std::ofstream(dir + "/adapter_config.json") << "{ not json";
    CHECK_THROWS_WITH(peft::load_policy<A>(dir, shape), Catch::Contains("is not valid JSON"));
  }
  SECTION("truncated weights") {
    peft::save_policy(dir, a);
    const std::string bytes = slurp(dir + "/adapter_model.safetensors");
    std::ofstream(dir + "/adapter_model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 10);
    CHECK_THROWS_AS(peft::load_policy<A>(dir, shape), peft::io_error);
  }
  SECTION("missing and unexpected tensors") {
    peft::save_policy(dir, a);
    auto tensors = peft::read_adapter_tensors(dir);
    const std::string gone = "encoder.layer.1.output.adapters.default.adapter_up.bias";
    auto missing = tensors;
    missing.erase(gone);
    peft::save_safetensors(dir + "/adapter_model.safetensors", missing);
    CHECK_THROWS_WITH(peft::load_policy<A>(dir, shape), Catch::Contains("missing tensor '" + gone + "'"));
    auto extra = tensors;
    extra["encoder.layer.1.output.adapters.other.adapter_up.bias"] = tensors.at(gone);
    peft::save_safetensors(dir + "/adapter_model.safetensors", extra);
    CHECK_THROWS_WITH(peft::load_policy<A>(dir, shape),
                      Catch::Contains("unexpected tensor 'encoder.layer.1.output.adapters.other.adapter_up.bias'"));
  }
  SECTION("no peft_type") {
    peft::save_policy(dir, a);
    std::ofstream(dir + "/adapter_config.json") << "{}";
    CHECK_THROWS_WITH(peft::load_policy<A>(dir, shape), Catch::Contains("'peft_type' expected"));
  }
}

TEST_CASE("policies with export_tensors are saved in their exported form", "[checkpoint]") {
  const auto shape = small_model<peft::bert, float>("bert").enc.shape();
  exported_policy p(shape);
  for (peft::index i = 0; i < 6; ++i) p.store.values()[i] = static_cast<float>(i) + 0.5f;
  const std::string dir = scratch_dir("ckpt_export");
  peft::save_policy(dir, p);
  const auto f = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(f.names() == std::vector<std::string>{"packed"});
  CHECK(f.load("packed").data[1] == 3.0f);
  auto back = peft::load_policy<exported_policy>(dir, shape);
  CHECK(back.store.values() == p.store.values());
  CHECK(peft::backbone_share(p, shape) == Approx(6.0 / double(shape.backbone_parameters)));
}
