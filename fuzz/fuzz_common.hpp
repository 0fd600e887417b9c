// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_FUZZ_FUZZ_COMMON_HPP
#define PEFT_FUZZ_FUZZ_COMMON_HPP

/// @file fuzz_common.hpp
/// Shared pieces of peft's fuzz targets. Each `fuzz/fuzz_<name>.cpp` defines one target with
/// `PEFT_FUZZ_TARGET(name) { ... }`; the body sees the input as `data` (const std::uint8_t*)
/// and `size` (std::size_t).
///
/// The macro registers the body under its name in `registry()`. Every target is compiled once
/// and linked into two executables: `peft_fuzz_replay` (replay_main.cpp), which runs the
/// committed seeds and regression inputs under ctest, and, in a clang sanitizer build, the
/// libFuzzer binary `peft_fuzz` (libfuzzer_main.cpp), which fuzzes the target its name or
/// `$PEFT_FUZZ_TARGET` selects (scripts/fuzz links `fuzz_<name>` to it).
///
/// The rule every target enforces: a parser fails only by throwing `peft::error`.
/// `expect_only_peft_errors` swallows exactly those; anything else (std::out_of_range,
/// std::bad_alloc, nlohmann::json exceptions, ...) escapes. Under libFuzzer an escaping
/// exception terminates the process at the throw site, so the crash report's stack names the
/// faulty line; the replay catches it and reports the input, the exception type and what().
/// A broken post-condition (a loader returned data that contradicts its own header) throws
/// `check_failed`, which escapes the same way.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <peft/core/limits.hpp>
#include <peft/error.hpp>

namespace peft_fuzz {

/// A target body: runs one input.
using target_fn = void (*)(const std::uint8_t* data, std::size_t size);

/// Every target compiled into this executable, by name.
inline std::map<std::string, target_fn>& registry() {
  static std::map<std::string, target_fn> targets;
  return targets;
}

/// The fuzzers run under a 2 GB RSS limit, below what peft's default read_limits admit (they
/// allow real multi-GB checkpoints). Tighter limits, set once before any input runs, make an
/// input that declares a large allocation an error the target must handle, as a user with
/// tight limits would see it; anything allocated past them is still a finding.
struct fuzz_limits {
  fuzz_limits() {
    peft::read_limits& l = peft::default_read_limits();
    l.max_json_bytes = std::uint64_t(64) << 20;
    l.max_header_bytes = std::uint64_t(64) << 20;
    l.max_tensor_bytes = std::uint64_t(256) << 20;
    l.max_tensors = 100000;
    l.max_model_parameters = std::uint64_t(64) << 20;
    l.max_policy_parameters = std::uint64_t(16) << 20;
  }
};
inline const fuzz_limits apply_fuzz_limits{};

/// Adds a target to `registry()` during static initialisation.
struct registrar {
  registrar(const char* name, target_fn fn) { registry().emplace(name, fn); }
};

/// A property the harness checks after a successful parse does not hold. Deliberately not a
/// `peft::error`, so it escapes `expect_only_peft_errors` and is reported as a finding.
class check_failed : public std::logic_error {
public:
  using std::logic_error::logic_error;
};

/// A file the target needs (a real vocabulary from the npm assets) is missing. The replay
/// reports the target as skipped; a libFuzzer run stops with the message.
class missing_asset : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Throws `check_failed` with @p what unless @p ok.
inline void check(bool ok, const std::string& what) {
  if (!ok) throw check_failed("peft_fuzz: check failed: " + what);
}

/// True when `$PEFT_FUZZ_VERBOSE` is set: the harness then prints every peft::error it
/// swallows (to see how far a seed gets).
inline bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("PEFT_FUZZ_VERBOSE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

/// Runs @p fn; a `peft::error` means the input was rejected properly and is swallowed.
/// Everything else propagates.
/// @return true if @p fn returned normally, false if it threw a peft::error
template <typename F>
bool expect_only_peft_errors(F&& fn) {
  try {
    fn();
    if (verbose()) std::fprintf(stderr, "peft_fuzz: accepted\n");
    return true;
  } catch (const peft::error& e) {
    if (verbose()) std::fprintf(stderr, "peft_fuzz: rejected: %s\n", e.what());
    return false;
  }
}

/// Runs @p fn, which must throw a `peft::error` (e.g. a loader called for the wrong dtype).
/// @throws check_failed naming @p what if it returns normally
template <typename F>
void expect_peft_error(F&& fn, const std::string& what) {
  try {
    fn();
  } catch (const peft::error&) {
    return;
  }
  throw check_failed("peft_fuzz: check failed: " + what + " returned normally, expected a peft::error");
}

/// Per-process scratch folder `<$TMPDIR or /tmp>/peft_fuzz_<pid>`, created on first use and
/// removed when the process exits normally. Targets write their inputs here under fixed
/// names, so a long run reuses the same few files.
class scratch {
public:
  static const std::filesystem::path& dir() {
    static scratch s;
    return s.m_dir;
  }

  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;

private:
  scratch() {
    const char* tmp = std::getenv("TMPDIR");
    const std::filesystem::path base = (tmp && *tmp) ? std::filesystem::path(tmp) : std::filesystem::path("/tmp");
    m_dir = base / ("peft_fuzz_" + std::to_string(static_cast<long>(::getpid())));
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
    std::filesystem::create_directories(m_dir, ec);
    if (ec) throw std::runtime_error("peft_fuzz: cannot create scratch folder " + m_dir.string() + ": " + ec.message());
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
  std::filesystem::path m_dir;
};

/// Writes @p size bytes to @p path (truncating).
inline void write_bytes(const std::filesystem::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (size > 0) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error("peft_fuzz: cannot write " + path.string());
}

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

/// Writes the input to the scratch file @p name and returns its path.
inline std::string write_scratch(const std::string& name, const void* data, std::size_t size) {
  const std::filesystem::path p = scratch::dir() / name;
  write_bytes(p, data, size);
  return p.string();
}

inline std::string write_scratch(const std::string& name, std::string_view bytes) {
  return write_scratch(name, bytes.data(), bytes.size());
}

/// An empty scratch sub-folder @p name (its previous contents removed) for targets that read
/// a folder (adapters, TF.js models, libraries).
inline std::filesystem::path fresh_scratch_dir(const std::string& name) {
  const std::filesystem::path p = scratch::dir() / name;
  std::error_code ec;
  std::filesystem::remove_all(p, ec);
  std::filesystem::create_directories(p, ec);
  if (ec) throw std::runtime_error("peft_fuzz: cannot create " + p.string() + ": " + ec.message());
  return p;
}

/// Separator between the parts of a multi-part input (e.g. model.json, then shard bytes).
inline constexpr std::string_view part_separator = "\n---\n";

/// Splits the input at the first `max_parts - 1` occurrences of `part_separator`; the last
/// part keeps the rest (separators included). Always at least one part.
inline std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size, std::size_t max_parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const std::size_t at = rest.find(part_separator);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + part_separator.size());
  }
  parts.push_back(rest);
  return parts;
}

/// The input as a string view.
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

/// The input parsed as JSON for the harness's own use (e.g. to find the shard names a
/// model.json lists), or a discarded value when it is not JSON or nests deeper than 64 levels.
/// Never throws; the parser under test gets the raw bytes regardless.
inline nlohmann::json parse_json_quietly(std::string_view text) {
  bool too_deep = false;
  auto guard = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth > 64)
      too_deep = true;
    return !too_deep;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), guard, false);
  return too_deep ? nlohmann::json(nlohmann::json::value_t::discarded) : j;
}

/// Folder of the npm assets (real vocabularies): `$PEFT_FUZZ_ASSETS_DIR` if set, else the
/// build's `PEFT_ASSETS_DIR`.
inline std::string assets_dir() {
  const char* env = std::getenv("PEFT_FUZZ_ASSETS_DIR");
  if (env && *env) return env;
#ifdef PEFT_FUZZ_ASSETS_DIR
  return PEFT_FUZZ_ASSETS_DIR;
#else
  return ".cache/npm/node_modules";
#endif
}

/// `assets_dir()/relative`, which must exist.
/// @throws missing_asset naming the file and how to get it
inline std::string asset_path(const std::string& relative) {
  const std::string p = assets_dir() + "/" + relative;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec))
    throw missing_asset("peft_fuzz: asset " + p + " not found (run scripts/fetch_assets, or set PEFT_FUZZ_ASSETS_DIR)");
  return p;
}

}  // namespace peft_fuzz

#define PEFT_FUZZ_CONCAT_(a, b) a##b
#define PEFT_FUZZ_CONCAT(a, b) PEFT_FUZZ_CONCAT_(a, b)

/// Defines fuzz target @p name: a body registered under that name.
#define PEFT_FUZZ_TARGET(name)                                                                     \
  static void PEFT_FUZZ_CONCAT(peft_fuzz_body_, name)(const std::uint8_t* data, std::size_t size); \
  static const ::peft_fuzz::registrar PEFT_FUZZ_CONCAT(peft_fuzz_registrar_, name)(                \
      #name, &PEFT_FUZZ_CONCAT(peft_fuzz_body_, name));                                            \
  static void PEFT_FUZZ_CONCAT(peft_fuzz_body_, name)(const std::uint8_t* data, std::size_t size)

#endif  // PEFT_FUZZ_FUZZ_COMMON_HPP
