// SPDX-License-Identifier: Apache-2.0
// Fuzz target: tfjs_model::load. The input is model.json, then for each shard path the
// manifest names (in manifest order) the shard's bytes, all separated by "\n---\n":
//
//   {"modelTopology": ..., "weightsManifest": [{"paths": ["a.bin", "b.bin"], ...}]}
//   ---
//   <bytes of a.bin>
//   ---
//   <bytes of b.bin>
//
// Shards without a part are not written (the loader must report them missing). Paths that
// would leave the model folder are not written either (the loader must reject them). Every
// weight and node is then read back through the public accessors.
#include <peft/io/tfjs.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {

/// Shard paths listed by a model.json (best effort: anything malformed is left to the loader).
std::vector<std::string> shard_paths(std::string_view model_json) {
  std::vector<std::string> out;
  const auto doc = peft_fuzz::parse_json_quietly(model_json);
  if (!doc.is_object()) return out;
  const auto manifest = doc.find("weightsManifest");
  if (manifest == doc.end() || !manifest->is_array()) return out;
  for (const auto& group : *manifest) {
    if (!group.is_object()) continue;
    const auto paths = group.find("paths");
    if (paths == group.end() || !paths->is_array()) continue;
    for (const auto& p : *paths)
      if (p.is_string()) out.push_back(p.get<std::string>());
  }
  return out;
}

/// True if @p rel stays inside the model folder (the harness only writes such files).
bool harmless(const std::string& rel) {
  if (rel.empty() || rel.size() > 200 || rel.find('\0') != std::string::npos) return false;
  const std::filesystem::path p(rel);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
  std::size_t depth = 0;
  for (const auto& part : p) {
    if (part == ".." || part == ".") return false;
    ++depth;
  }
  return depth <= 3 && rel.back() != '/';
}

template <typename T>
void check_weight(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<T>& data) {
  std::uint64_t numel = 1;
  for (const auto d : shape) {
    peft_fuzz::check(d >= 0, "weight '" + name + "' has a negative dimension");
    numel *= static_cast<std::uint64_t>(d);
  }
  peft_fuzz::check(numel == data.size(), "weight '" + name + "' holds " + std::to_string(data.size()) +
                                             " values for " + std::to_string(numel) + " elements");
}

}  // namespace

PEFT_FUZZ_TARGET(tfjs_model) {
  namespace fs = std::filesystem;
  const auto parts = peft_fuzz::split_parts(data, size, 64);
  const fs::path dir = peft_fuzz::fresh_scratch_dir("tfjs_model");
  peft_fuzz::write_bytes(dir / "model.json", parts[0]);
  const auto paths = shard_paths(parts[0]);
  for (std::size_t i = 0; i < paths.size() && i + 1 < parts.size(); ++i) {
    if (!harmless(paths[i])) continue;
    const fs::path target = dir / paths[i];
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec || fs::is_directory(target, ec)) continue;
    peft_fuzz::write_bytes(target, parts[i + 1]);
  }

  // The folder form and the model.json form must agree.
  for (const fs::path& where : {dir, dir / "model.json"}) {
    peft_fuzz::expect_only_peft_errors([&] {
      const auto m = peft::tfjs_model::load(where.string());
      for (const auto& kv : m.weights()) {
        check_weight(kv.first, kv.second.shape, kv.second.data);
        peft_fuzz::check(m.contains(kv.first), "contains() false for weight '" + kv.first + "'");
        peft_fuzz::check(&m.weight(kv.first) == &kv.second, "weight() does not find '" + kv.first + "'");
        peft_fuzz::expect_peft_error([&] { (void)m.int_weight(kv.first); }, "int_weight on float32 '" + kv.first + "'");
      }
      for (const auto& kv : m.int_weights()) {
        check_weight(kv.first, kv.second.shape, kv.second.data);
        peft_fuzz::check(&m.int_weight(kv.first) == &kv.second, "int_weight() does not find '" + kv.first + "'");
        peft_fuzz::expect_peft_error([&] { (void)m.weight(kv.first); }, "weight on int32 '" + kv.first + "'");
      }
      for (const auto& s : m.manifest()) {
        peft_fuzz::check(s.dtype == "float32" || s.dtype == "int32", "manifest entry with dtype " + s.dtype);
        peft_fuzz::check(m.weights().count(s.name) + m.int_weights().count(s.name) == 1,
                         "manifest entry '" + s.name + "' has no loaded weight");
      }
      for (const auto& n : m.nodes()) {
        const std::string name = n.at("name").get<std::string>();
        peft_fuzz::check(m.find_node(name) != nullptr, "find_node misses node '" + name + "'");
        (void)m.node(name);
        (void)m.node_inputs(name);
      }
      const std::string absent = "\x01 not a node";
      if (!m.find_node(absent)) peft_fuzz::expect_peft_error([&] { (void)m.node(absent); }, "node() on a missing name");
    });
  }
}
