// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_TFJS_HPP
#define PEFT_IO_TFJS_HPP

/// @file tfjs.hpp
/// Reader for TensorFlow.js graph models: `model.json` (the GraphDef as JSON under
/// `modelTopology.node`, plus a `weightsManifest`) and the binary shards it names. Each
/// manifest group lists its shard files and its weights; the shards, concatenated in order,
/// hold the weights' raw little-endian bytes back to back in manifest order.
///
/// Only unquantised `float32` and `int32` weights are supported; anything else (a
/// `quantization` entry, `float16`, `bool`, `string`, ...) is rejected with the weight's
/// name. Every size is validated before a byte is interpreted.
///
/// @code
/// auto m = peft::tfjs_model::load(dir);                 // dir/model.json or the json itself
/// const peft::tensor& emb = m.weight("module/Embeddings_en");
/// const nlohmann::json* node = m.find_node("module_apply_default/.../Relu");
/// @endcode

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/types.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"

namespace peft {

/// Dense n-d int32 tensor (TF.js graph constants such as shapes and axes), row-major.
struct tfjs_int_tensor {
  std::vector<std::int64_t> shape;
  std::vector<std::int32_t> data;
};

/// One entry of a `weightsManifest`, with where its bytes live.
struct tfjs_weight_spec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::string dtype;         ///< "float32" or "int32"
  std::size_t group = 0;     ///< index of the manifest group
  std::uint64_t offset = 0;  ///< byte offset inside the group's concatenated shards
  std::uint64_t bytes = 0;   ///< numel x 4
};

/// A loaded TF.js graph model: weights by name and the graph's node list.
class tfjs_model {
public:
  /// Reads a graph model.
  /// @param path `model.json`, or a folder that contains `model.json`
  /// @throws peft::io_error naming the file (and the weight) when `model.json` is unreadable
  ///         or malformed, a shard is missing or has the wrong size, or a weight has an
  ///         unsupported dtype or a quantisation entry
  static tfjs_model load(const std::string& path) {
    namespace fs = std::filesystem;
    static const char* where = "tfjs_model::load";
    tfjs_model m;
    std::error_code ec;
    m.m_json_path = fs::is_directory(fs::path(path), ec) ? (fs::path(path) / "model.json").string() : path;
    const fs::path dir = fs::path(m.m_json_path).parent_path();

    nlohmann::json doc;
    try {
      doc = detail::parse_json_limited(detail::read_file(m.m_json_path, where),
                                          std::string(where) + ": '" + m.m_json_path + "'");
    } catch (const nlohmann::json::exception& e) {
      throw io_error(std::string(where) + ": '" + m.m_json_path + "' is not valid JSON: " + e.what());
    }
    const std::string& file = m.m_json_path;
    if (!doc.is_object()) throw m.bad("top level", "a JSON object", type_of(doc));

    // Graph topology.
    const auto topo = doc.find("modelTopology");
    if (topo == doc.end() || !topo->is_object()) throw m.bad("'modelTopology'", "an object", "none");
    const auto nodes = topo->find("node");
    if (nodes == topo->end() || !nodes->is_array()) throw m.bad("'modelTopology.node'", "an array", "none");
    m.m_nodes = *nodes;
    for (std::size_t i = 0; i < m.m_nodes.size(); ++i) {
      const auto& n = m.m_nodes[i];
      if (!n.is_object() || !n.contains("name") || !n["name"].is_string() || !n.contains("op") ||
          !n["op"].is_string())
        throw m.bad("'modelTopology.node[" + std::to_string(i) + "]'",
                    "an object with string 'name' and 'op'", n.dump().substr(0, 80));
      m.m_node_index.emplace(n["name"].get<std::string>(), i);
    }

    // Weights manifest.
    const auto manifest = doc.find("weightsManifest");
    if (manifest == doc.end() || !manifest->is_array()) throw m.bad("'weightsManifest'", "an array", "none");
    for (std::size_t g = 0; g < manifest->size(); ++g) {
      const auto& group = (*manifest)[g];
      const std::string gname = "'weightsManifest[" + std::to_string(g) + "]'";
      if (!group.is_object()) throw m.bad(gname, "an object", type_of(group));
      const auto paths = group.find("paths");
      const auto weights = group.find("weights");
      if (paths == group.end() || !paths->is_array()) throw m.bad(gname + ".paths", "an array", "none");
      if (weights == group.end() || !weights->is_array()) throw m.bad(gname + ".weights", "an array", "none");

      // Specs first: every size is known before any shard is read.
      std::vector<tfjs_weight_spec> specs;
      std::uint64_t total = 0;
      for (std::size_t w = 0; w < weights->size(); ++w) {
        tfjs_weight_spec s = parse_spec((*weights)[w], file, gname + ".weights[" + std::to_string(w) + "]");
        s.group = g;
        s.offset = total;
        total += s.bytes;
        if (m.m_spec_index.count(s.name))
          throw io_error(std::string(where) + ": '" + file + "': weight '" + s.name + "' listed twice");
        m.m_spec_index.emplace(s.name, m.m_specs.size() + specs.size());
        specs.push_back(std::move(s));
      }

      // Shards: present, safe names, total size equal to the manifest's.
      std::vector<std::string> shard_paths;
      std::vector<std::uint64_t> shard_sizes;
      std::uint64_t available = 0;
      for (std::size_t p = 0; p < paths->size(); ++p) {
        const auto& pj = (*paths)[p];
        if (!pj.is_string())
          throw m.bad(gname + ".paths[" + std::to_string(p) + "]", "a string", type_of(pj));
        const fs::path rel(pj.get<std::string>());
        bool unsafe = rel.empty() || rel.is_absolute();
        for (const auto& part : rel) unsafe = unsafe || part == "..";
        if (unsafe)
          throw m.bad(gname + ".paths[" + std::to_string(p) + "]",
                      "a relative file name inside the model folder", "'" + rel.string() + "'");
        const std::string full = (dir / rel).string();
        if (!fs::is_regular_file(fs::path(full), ec)) {
          // Name the first weight whose bytes this shard should hold.
          std::string first = "(none)";
          for (const auto& s : specs)
            if (s.offset + s.bytes > available) {
              first = "'" + s.name + "'";
              break;
            }
          throw io_error(std::string(where) + ": shard '" + full + "' listed in '" + file +
                         "' is missing; it holds weight " + first);
        }
        const std::uint64_t size = detail::file_size(full, where);
        shard_paths.push_back(full);
        shard_sizes.push_back(size);
        available += size;
      }
      if (available != total) {
        std::string msg = std::string(where) + ": shards of " + gname + " in '" + file + "' hold " +
                          std::to_string(available) + " bytes, the manifest describes " +
                          std::to_string(total);
        for (const auto& s : specs)
          if (s.offset + s.bytes > available) {
            msg += "; weight '" + s.name + "' (bytes " + std::to_string(s.offset) + ".." +
                   std::to_string(s.offset + s.bytes) + ") is truncated";
            break;
          }
        if (available > total) msg += "; the shards have trailing bytes";
        throw io_error(msg);
      }

      // Read the shards back to back and cut the weights out.
      std::string buffer;
      buffer.reserve(static_cast<std::size_t>(total));
      for (std::size_t p = 0; p < shard_paths.size(); ++p) {
        std::string bytes = detail::read_file(shard_paths[p], where);
        if (bytes.size() != shard_sizes[p])
          throw io_error(std::string(where) + ": shard '" + shard_paths[p] +
                         "' changed size while being read");
        buffer += bytes;
      }
      for (auto& s : specs) {
        const char* src = buffer.data() + s.offset;
        const std::size_t n = static_cast<std::size_t>(s.bytes / 4);
        if (s.dtype == "float32") {
          tensor t;
          t.shape = s.shape;
          t.data.resize(n);
          copy_le32(src, t.data.data(), n);
          m.m_weights.emplace(s.name, std::move(t));
        } else {
          tfjs_int_tensor t;
          t.shape = s.shape;
          t.data.resize(n);
          copy_le32(src, t.data.data(), n);
          m.m_int_weights.emplace(s.name, std::move(t));
        }
        m.m_specs.push_back(std::move(s));
      }
    }
    return m;
  }

  /// Path of the `model.json` that was read.
  const std::string& path() const noexcept { return m_json_path; }

  /// Every float32 weight, by manifest name.
  const std::map<std::string, tensor>& weights() const noexcept { return m_weights; }
  /// Every int32 weight (folded shape/axis constants), by manifest name.
  const std::map<std::string, tfjs_int_tensor>& int_weights() const noexcept { return m_int_weights; }
  /// The manifest entries in file order, with their byte offsets.
  const std::vector<tfjs_weight_spec>& manifest() const noexcept { return m_specs; }

  /// Whether a float32 weight of this name exists.
  bool contains(const std::string& name) const { return m_weights.count(name) != 0; }

  /// The float32 weight @p name.
  /// @throws peft::invalid_argument naming the weight and the file if it is absent (or int32)
  const tensor& weight(const std::string& name) const {
    const auto it = m_weights.find(name);
    if (it == m_weights.end())
      throw invalid_argument("tfjs_model::weight: float32 weight '" + name + "' expected in '" + m_json_path +
                             "', got " + (m_int_weights.count(name) ? "an int32 weight" : "none"));
    return it->second;
  }

  /// The int32 weight @p name.
  /// @throws peft::invalid_argument naming the weight and the file if it is absent (or float32)
  const tfjs_int_tensor& int_weight(const std::string& name) const {
    const auto it = m_int_weights.find(name);
    if (it == m_int_weights.end())
      throw invalid_argument("tfjs_model::int_weight: int32 weight '" + name + "' expected in '" +
                             m_json_path + "', got " + (m_weights.count(name) ? "a float32 weight" : "none"));
    return it->second;
  }

  /// `modelTopology.node`: the graph's nodes as JSON objects (`name`, `op`, `input`, `attr`).
  const nlohmann::json& nodes() const noexcept { return m_nodes; }

  /// The node called @p name, or nullptr.
  const nlohmann::json* find_node(const std::string& name) const {
    const auto it = m_node_index.find(name);
    return it == m_node_index.end() ? nullptr : &m_nodes[it->second];
  }

  /// The node called @p name.
  /// @throws peft::invalid_argument naming the node and the file if it is absent
  const nlohmann::json& node(const std::string& name) const {
    const nlohmann::json* n = find_node(name);
    if (!n)
      throw invalid_argument("tfjs_model::node: node '" + name + "' expected in '" + m_json_path +
                             "', got none");
    return *n;
  }

  /// Names of the inputs of node @p name, in order (`x:1` names output 1 of node `x`).
  /// @throws peft::invalid_argument if the node is absent
  std::vector<std::string> node_inputs(const std::string& name) const {
    const nlohmann::json& n = node(name);
    std::vector<std::string> in;
    const auto it = n.find("input");
    if (it != n.end() && it->is_array())
      for (const auto& s : *it)
        if (s.is_string()) in.push_back(s.get<std::string>());
    return in;
  }

private:
  tfjs_model() = default;

  io_error bad(const std::string& what, const std::string& expected, const std::string& got) const {
    return io_error("tfjs_model::load: '" + m_json_path + "': " + what + " expected " + expected + ", got " +
                    got);
  }

  static std::string type_of(const nlohmann::json& j) { return j.type_name(); }

  static tfjs_weight_spec parse_spec(const nlohmann::json& w, const std::string& file,
                                     const std::string& where) {
    auto fail = [&](const std::string& what, const std::string& expected, const std::string& got) {
      return io_error("tfjs_model::load: '" + file + "': " + what + " expected " + expected + ", got " + got);
    };
    if (!w.is_object() || !w.contains("name") || !w["name"].is_string())
      throw fail(where, "an object with a string 'name'", w.dump().substr(0, 80));
    tfjs_weight_spec s;
    s.name = w["name"].get<std::string>();
    const std::string label = "weight '" + s.name + "'";
    if (w.contains("quantization"))
      throw fail(
          label, "unquantised float32 or int32 data",
          "quantization " + w["quantization"].dump().substr(0, 80) + " (dequantisation is not supported)");
    if (!w.contains("dtype") || !w["dtype"].is_string()) throw fail(label + " dtype", "a string", "none");
    s.dtype = w["dtype"].get<std::string>();
    if (s.dtype != "float32" && s.dtype != "int32")
      throw fail(label + " dtype", "float32 or int32", "'" + s.dtype + "'");
    if (!w.contains("shape") || !w["shape"].is_array()) throw fail(label + " shape", "an array", "none");
    std::uint64_t numel = 1;
    for (const auto& d : w["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0)
        throw fail(label + " shape", "non-negative integers", w["shape"].dump());
      const auto v = d.get<std::int64_t>();
      if (v != 0 && numel > (std::uint64_t{1} << 40) / static_cast<std::uint64_t>(v))
        throw fail(label + " shape", "fewer than 2^40 elements", w["shape"].dump());
      numel *= static_cast<std::uint64_t>(v);
      s.shape.push_back(v);
    }
    s.bytes = numel * 4;
    return s;
  }

  static bool host_is_little_endian() noexcept {
    const std::uint32_t one = 1;
    unsigned char b = 0;
    std::memcpy(&b, &one, 1);
    return b == 1;
  }

  /// Copies @p n little-endian 4-byte words into @p dst (float or int32), swapping on big-endian hosts.
  template <typename T>
  static void copy_le32(const char* src, T* dst, std::size_t n) {
    static_assert(sizeof(T) == 4, "4-byte element expected");
    if (n == 0) return;
    std::memcpy(dst, src, n * 4);
    if (!host_is_little_endian()) {
      auto* b = reinterpret_cast<unsigned char*>(dst);
      for (std::size_t i = 0; i < n; ++i) {
        std::swap(b[4 * i], b[4 * i + 3]);
        std::swap(b[4 * i + 1], b[4 * i + 2]);
      }
    }
  }

  std::string m_json_path;
  nlohmann::json m_nodes = nlohmann::json::array();
  std::unordered_map<std::string, std::size_t> m_node_index;
  std::vector<tfjs_weight_spec> m_specs;
  std::unordered_map<std::string, std::size_t> m_spec_index;
  std::map<std::string, tensor> m_weights;
  std::map<std::string, tfjs_int_tensor> m_int_weights;
};

}  // namespace peft

#endif  // PEFT_IO_TFJS_HPP
