// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_ADAPTER_CHECKPOINT_HPP
#define PEFT_IO_ADAPTER_CHECKPOINT_HPP

/// @file adapter_checkpoint.hpp
/// Saving and loading a policy in the Hugging Face PEFT layout: a folder holding
/// `adapter_config.json` (the policy's `config_json()` in the form hf_peft.hpp describes:
/// Hugging Face PEFT's own fields for the methods it knows, peft's version, encoder shape and
/// weights digest under `"peft_cpp"`) and `adapter_model.safetensors` (F32 tensors named by
/// their checkpoint keys, metadata `{"format": "pt"}`). Folders written by Hugging Face PEFT
/// load too (hf_peft.hpp says which fields and keys are read).
///
/// The tensors are the policy's `export_tensors()` when it has one, else every parameter
/// block (see policies/policy_tensors.hpp). A `compose<...>` is saved like any policy: its
/// config lists the members' configs and its tensor keys carry a `members.<i>.` prefix
/// (see policies/compose.hpp).
///
/// Atomicity: both files are serialised in memory and written to temporary files first;
/// only then is the weights file renamed into place (the previous one kept as a hard-linked
/// backup), then the config; if the config cannot be put in place, the previous weights
/// are restored. A save that fails therefore leaves a previous checkpoint in the folder
/// unchanged (and no temporary files behind).
///
/// A save killed between the two renames (SIGKILL, power loss) cannot restore anything, so the
/// config records a digest of its weights file (`peft_cpp.weights_fnv1a64`). A loader that finds
/// new weights next to the old config recognises the mismatch and loads the hard-linked backup
/// that matches the config instead: the previous checkpoint, intact. The next successful save
/// removes backups and temporary files such a kill left behind. One writer per folder.
///
/// Double-precision policies are saved as F32 (the format the reference tools read); a
/// loaded double policy then holds the float-rounded values.

#include <cstdint>
#include <type_traits>
#include <vector>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <utility>

#include "../core/encoder_shape.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "../policies/policy_tensors.hpp"
#include "../version.hpp"
#include "../core/file_util.hpp"
#include "hf_peft.hpp"
#include "safetensors.hpp"

namespace peft {

/// File name of the configuration inside a checkpoint folder.
inline constexpr const char* adapter_config_file = "adapter_config.json";
/// File name of the tensors inside a checkpoint folder.
inline constexpr const char* adapter_weights_file = "adapter_model.safetensors";

/// The configuration `save_policy` writes for @p p: `p.config_json()` in the saved form of
/// hf_peft.hpp (`detail::to_saved_config`), labelled with @p info.
template <class P>
nlohmann::json checkpoint_config(const P& p, const hf_save_info& info = {}) {
  const nlohmann::json cfg = p.config_json();
  if (!cfg.is_object())
    throw invalid_argument(std::string("checkpoint_config: config_json() of ") + P::peft_type +
                           " expected a JSON object, got " + cfg.type_name());
  return detail::to_saved_config(cfg, info);
}

namespace detail {
/// Reads and parses the JSON object in file @p path; @p where names the caller in messages.
/// @throws peft::io_error naming the file if it is missing, not JSON or not an object
inline nlohmann::json read_json_object(const std::string& path, const std::string& where) {
  const std::string text = read_file(path, where.c_str());
  nlohmann::json j;
  try {
    j = parse_json_limited(text, where + ": '" + path + "'");
  } catch (const nlohmann::json::exception& e) {
    throw io_error(where + ": '" + path + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw io_error(where + ": '" + path + "' expected a JSON object, got " + j.type_name());
  return j;
}
}  // namespace detail

/// Reads and parses `<dir>/adapter_config.json`.
/// @throws peft::io_error naming the file if it is missing or not a JSON object
inline nlohmann::json read_adapter_config(const std::string& dir) {
  return detail::read_json_object((std::filesystem::path(dir) / adapter_config_file).string(), "read_adapter_config");
}

namespace detail {

/// FNV-1a (64-bit) of @p size bytes, as 16 lower-case hex digits. Not cryptographic: it tells
/// which of a checkpoint's weights files belongs to its config after an interrupted save.
inline std::string fnv1a64_hex(const unsigned char* data, std::uint64_t size) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint64_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  static const char* digits = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 0xfu];
  return out;
}

/// Digest of a file's bytes (mapped read-only).
inline std::string file_fnv1a64(const std::string& path) {
  const mapped_file m(path, "load_policy");
  return fnv1a64_hex(m.data(), m.size());
}

/// The weights file of checkpoint @p dir that belongs to @p cfg: the backup of the previous
/// weights whose digest the config records, when a save was interrupted between its two
/// renames, and `adapter_model.safetensors` otherwise. (Weights edited by another tool match
/// no digest; they are loaded as they are and checked tensor by tensor against the config.)
inline std::string matching_weights_file(const std::string& dir, const nlohmann::json& cfg) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / adapter_weights_file).string();
  const std::string want =
      recorded_digest(cfg, "load_policy: '" + (fs::path(dir) / adapter_config_file).string() + "'");
  if (want.empty()) return path;  // written by another tool: nothing to compare
  std::error_code ec;
  if (fs::exists(path, ec) && file_fnv1a64(path) == want) return path;
  const std::string prefix = std::string(adapter_weights_file) + ".bak.";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0 && e.is_regular_file(ec) && file_fnv1a64(e.path().string()) == want)
      return e.path().string();
  }
  return path;
}

/// Reads every tensor of one safetensors file as float.
inline std::map<std::string, tensor> read_all_tensors(const std::string& path) {
  const auto f = safetensors_file::open(path);
  std::map<std::string, tensor> out;
  for (const auto& name : f.names()) out.emplace(name, f.load(name));
  return out;
}

}  // namespace detail

/// Reads every tensor of `<dir>/adapter_model.safetensors` as float (whatever config is there;
/// `load_policy` also checks that the weights belong to the config).
/// @throws peft::io_error naming the file and tensor
inline std::map<std::string, tensor> read_adapter_tensors(const std::string& dir) {
  return detail::read_all_tensors((std::filesystem::path(dir) / adapter_weights_file).string());
}

namespace detail {

/// Removes a file if it exists, ignoring errors (cleanup paths only).
inline void remove_quietly(const std::string& path) noexcept {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

/// Writes the two files of a checkpoint as described in the file comment.
inline void write_checkpoint_files(const std::string& dir, const std::string& config_bytes,
                                   const std::string& weights_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw io_error("save_policy: '" + dir + "' exists and is not a folder");
  fs::create_directories(dir, ec);
  if (ec) throw io_error("save_policy: cannot create folder '" + dir + "': " + ec.message());
  const std::string cfg_path = (fs::path(dir) / adapter_config_file).string();
  const std::string wts_path = (fs::path(dir) / adapter_weights_file).string();

  // Stage both files first: any failure here leaves the folder as it was.
  atomic_file_writer weights(wts_path);
  weights.write(weights_bytes);
  atomic_file_writer config(cfg_path);
  config.write(config_bytes);

  // Keep the previous weights until the config is in place too.
  const std::string backup = wts_path + ".bak." + std::to_string(process_id());
  remove_quietly(backup);
  bool have_backup = false;
  if (fs::exists(wts_path, ec)) {
    fs::create_hard_link(wts_path, backup, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(wts_path, backup, fs::copy_options::overwrite_existing, ec);
    }
    if (ec) throw io_error("save_policy: cannot back up '" + wts_path + "' before replacing it: " + ec.message());
    have_backup = true;
  }
  try {
    weights.commit();
  } catch (...) {
    if (have_backup) remove_quietly(backup);
    throw;
  }
  try {
    config.commit();
  } catch (...) {
    if (have_backup) {
      fs::rename(backup, wts_path, ec);
    } else {
      remove_quietly(wts_path);
    }
    throw;
  }
  if (have_backup) remove_quietly(backup);
  // The folder is consistent again: drop what earlier, killed saves left behind (their
  // backups, and temporary files of processes that no longer exist).
  const std::string wts_name = adapter_weights_file, cfg_name = adapter_config_file;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    for (const std::string& base : {wts_name, cfg_name}) {
      if (name.compare(0, base.size() + 5, base + ".bak.") == 0) stale.push_back(e.path());
      if (name.compare(0, base.size() + 5, base + ".tmp.") == 0 && !process_alive(name.substr(base.size() + 5)))
        stale.push_back(e.path());
    }
  }
  for (const auto& p : stale) remove_quietly(p.string());
}

}  // namespace detail

namespace detail {
template <typename P, typename = void>
struct has_export_dtypes : std::false_type {};
template <typename P>
struct has_export_dtypes<P, std::void_t<decltype(std::declval<const P&>().export_dtypes())>> : std::true_type {};
}  // namespace detail

/// The on-disk dtype a policy asks for tensor @p name ("F32" unless `export_dtypes()` says otherwise).
template <class P>
std::string saved_dtype(const P& p, const std::string& name) {
  if constexpr (detail::has_export_dtypes<P>::value) {
    const auto d = p.export_dtypes();
    const auto it = d.find(name);
    if (it != d.end()) return it->second;
  } else {
    (void)p;
    (void)name;
  }
  return "F32";
}

/// Saves @p p into folder @p dir (created if needed) as `adapter_config.json` +
/// `adapter_model.safetensors`, the config labelled with @p info (hf_peft.hpp).
/// @tparam P a policy with `config_json()`, `peft_type` and `parameters()` or `export_tensors()`
/// @throws peft::numeric_error naming the tensor if a value is NaN or infinite (nothing is written);
///   peft::io_error naming the file if writing fails (a previous checkpoint is then unchanged)
template <class P>
void save_policy(const std::string& dir, const P& p, const hf_save_info& info = {}) {
  const nlohmann::json cfg = checkpoint_config(p, info);
  const auto tensors = policy_tensors(p);
  safetensors_writer w;
  for (const auto& kv : tensors) {
    for (std::size_t i = 0; i < kv.second.data.size(); ++i)
      if (!std::isfinite(kv.second.data[i]))
        throw numeric_error("save_policy: tensor '" + kv.first + "' value expected finite, got " +
                            std::to_string(kv.second.data[i]) + " at element " + std::to_string(i) +
                            " (nothing was written to '" + dir + "')");
    if (saved_dtype(p, kv.first) == "U8") {
      // Byte tensors (e.g. a bit-packed mask) are stored one byte per value.
      std::vector<std::uint8_t> bytes(kv.second.data.size());
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        const float v = kv.second.data[i];
        if (v < 0 || v > 255 || v != static_cast<float>(static_cast<int>(v)))
          throw invalid_argument("save_policy: tensor '" + kv.first + "' is U8 but holds " + std::to_string(v));
        bytes[i] = static_cast<std::uint8_t>(v);
      }
      w.add(kv.first, kv.second.shape, bytes);
    } else {
      w.add(kv.first, kv.second);
    }
  }
  w.set_metadata("format", "pt");
  const std::string weights = w.serialize();
  nlohmann::json stamped = cfg;
  stamped[peft_cpp_key]["weights_fnv1a64"] =
      detail::fnv1a64_hex(reinterpret_cast<const unsigned char*>(weights.data()), weights.size());
  detail::write_checkpoint_files(dir, stamped.dump(2) + "\n", weights);
}

/// Loads a policy saved by `save_policy`, or by Hugging Face PEFT (hf_peft.hpp), for an encoder
/// of shape @p shape. Tensors of the folder's `modules_to_save` (a classifier) are not part of
/// the policy: `read_saved_modules` reads them.
/// @throws peft::io_error naming the file for a missing or malformed file;
///   peft::invalid_argument naming the field when the checkpoint is for another method or
///   another encoder shape (from `P::from_config`), or naming the tensor when the tensor set
///   differs from the one the config implies (missing, unexpected or mis-shaped)
template <class P>
P load_policy(const std::string& dir, const encoder_shape& shape) {
  const nlohmann::json cfg = read_adapter_config(dir);
  const std::string cfg_path = (std::filesystem::path(dir) / adapter_config_file).string();
  if (!cfg.contains("peft_type") || !cfg["peft_type"].is_string())
    throw invalid_argument("load_policy: '" + cfg_path + "' field 'peft_type' expected \"" + P::peft_type +
                           "\", got " + (cfg.contains("peft_type") ? cfg["peft_type"].dump() : "nothing"));
  if (cfg["peft_type"].get<std::string>() != P::peft_type)
    throw invalid_argument("load_policy: '" + cfg_path + "' field 'peft_type' expected \"" + P::peft_type +
                           "\", got \"" + cfg["peft_type"].get<std::string>() + "\"");
  const std::string wts_path = detail::matching_weights_file(dir, cfg);
  auto tensors = detail::read_all_tensors(wts_path);
  std::map<std::string, tensor> modules;
  const nlohmann::json native = detail::to_native(cfg, tensors, shape, modules, "load_policy: '" + cfg_path + "'");
  P p = P::from_config(native, shape);
  set_policy_tensors(p, std::move(tensors), "load_policy: '" + wts_path + "'");
  return p;
}

/// The tensors of the `modules_to_save` modules of the adapter folder @p dir (Hugging Face
/// PEFT saves a sequence classifier so), keyed `classifier.weight`, `classifier.bias`; empty
/// when it has none.
/// @throws peft::io_error for a missing or malformed folder
inline std::map<std::string, tensor> read_saved_modules(const std::string& dir) {
  const nlohmann::json cfg = read_adapter_config(dir);
  auto tensors = detail::read_all_tensors(detail::matching_weights_file(dir, cfg));
  std::map<std::string, tensor> modules;
  detail::split_saved_modules(cfg, tensors, modules);
  return modules;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_IO_ADAPTER_CHECKPOINT
#include "../detail/instances.hpp"

#endif  // PEFT_IO_ADAPTER_CHECKPOINT_HPP
