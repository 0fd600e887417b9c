// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_LIMITS_HPP
#define PEFT_CORE_LIMITS_HPP

/// @file limits.hpp
/// Resource limits for reading files peft did not write. A checkpoint, adapter, tokenizer
/// file or JSON config downloaded from a stranger is untrusted input: whatever it declares (a
/// header size, a tensor count, a tensor shape, a model size, a nesting depth) is checked
/// against these limits *before* anything is allocated for it, and a declaration beyond a limit
/// throws `peft::io_error` naming the file, the limit and the declared value.
///
/// The defaults admit every real encoder checkpoint (BERT-large in F64 included) and reject
/// declarations that no machine could satisfy. `default_read_limits()` is process-wide and is
/// used by every loader; set it once at start-up, before files are read on other threads.

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../error.hpp"

namespace peft {

/// Upper bounds on what a file may make peft allocate. All sizes are in bytes.
struct read_limits {
  /// Largest JSON document read whole (config.json, adapter_config.json, model.json,
  /// tokenizer.json, library.json, a dataset's .json file).
  std::uint64_t max_json_bytes = std::uint64_t(1) << 30;
  /// Deepest nesting of JSON arrays and objects. nlohmann::json copies, compares and prints
  /// recursively, so an unbounded depth is a stack overflow waiting for the first copy.
  int max_json_depth = 128;
  /// Largest safetensors JSON header (the format's own implementations cap it at 100 MB).
  std::uint64_t max_header_bytes = 100000000;
  /// Most tensors in one safetensors file.
  std::uint64_t max_tensors = 1000000;
  /// Largest single tensor once converted to the requested element type.
  std::uint64_t max_tensor_bytes = std::uint64_t(16) << 30;
  /// Largest encoder a config.json may declare, in parameters (embeddings + layers).
  std::uint64_t max_model_parameters = std::uint64_t(20) * 1000 * 1000 * 1000;
  /// Most values one policy's parameter store may hold (each also gets a gradient), whether
  /// its sizes come from an adapter_config.json or from code. 2^31 - 1 floats are 8 GB.
  std::uint64_t max_policy_parameters = 0x7FFFFFFF;
};

/// The process-wide limits every loader uses. Modify before reading files concurrently.
inline read_limits& default_read_limits() noexcept {
  static read_limits limits;
  return limits;
}

namespace detail {

/// Parses JSON text under @p limits: a text longer than `max_json_bytes` or nested deeper than
/// `max_json_depth` throws `peft::io_error` prefixed with @p where; syntax errors propagate as
/// `nlohmann::json::exception` for the caller to word.
inline nlohmann::json parse_json_limited(std::string_view text, const std::string& where,
                                         const read_limits& limits = default_read_limits()) {
  if (text.size() > limits.max_json_bytes)
    throw io_error(where + ": JSON text of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                   std::to_string(limits.max_json_bytes) + " bytes (read_limits::max_json_bytes)");
  const int max_depth = limits.max_json_depth;
  // The callback sees every event with the nesting depth of the value being built; it
  // throws on the first array or object that would go one level too deep.
  auto guard = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) -> bool {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= max_depth)
      throw io_error(where + ": JSON nested deeper than " + std::to_string(max_depth) +
                     " levels (read_limits::max_json_depth)");
    return true;
  };
  return nlohmann::json::parse(text.begin(), text.end(), guard);
}

/// Reads @p j as the integer type T when it is a JSON integer that T can hold exactly.
/// nlohmann's `get<T>()` converts a float or an out-of-range integer without a check (a float
/// beyond T's range is undefined behaviour), so every integer a file supplies goes through here.
/// @return false, leaving @p out alone, for a non-integer or a value outside T's range
template <typename T>
bool json_to_integer(const nlohmann::json& j, T& out) noexcept {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "json_to_integer: T must be an integer type");
  if (j.is_number_unsigned()) {
    const auto v = j.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
    out = static_cast<T>(v);
    return true;
  }
  if (!j.is_number_integer()) return false;
  const auto v = j.get<std::int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (v < 0 || static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
  } else {
    if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
        v > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
      return false;
  }
  out = static_cast<T>(v);
  return true;
}

/// Reads @p j as an array of integers of type T, each checked as by the scalar overload.
/// @return false, leaving @p out alone, unless @p j is an array whose every entry fits T
template <typename T>
bool json_to_integer(const nlohmann::json& j, std::vector<T>& out) {
  if (!j.is_array()) return false;
  std::vector<T> values(j.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!json_to_integer(j[i], values[i])) return false;
  out = std::move(values);
  return true;
}

}  // namespace detail
}  // namespace peft

#endif  // PEFT_CORE_LIMITS_HPP
