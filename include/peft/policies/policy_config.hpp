// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_POLICY_CONFIG_HPP
#define PEFT_POLICIES_POLICY_CONFIG_HPP

/// @file policy_config.hpp
/// Helpers every policy's `config_json()` / `from_config()` share: the encoder-shape fields
/// a checkpoint records ("model_type", "num_layers", "hidden_size", "embedding_size"), the
/// checks that reject a checkpoint for another encoder or another method, typed field
/// reads with messages naming the field, and parameter accounting.

#include <nlohmann/json.hpp>

#include <string>
#include <type_traits>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/limits.hpp"
#include "../core/types.hpp"
#include "../error.hpp"

namespace peft {

/// Writes the encoder-shape fields of @p s into @p j.
inline void write_shape_fields(nlohmann::json& j, const encoder_shape& s) {
  j["model_type"] = s.model_type;
  j["num_layers"] = s.num_layers;
  j["hidden_size"] = s.hidden_size;
  j["embedding_size"] = s.embedding_size;
}

namespace detail {
/// True for std::vector of an integer type (such fields are read element by element, range-checked).
template <typename T>
struct is_integer_vector : std::false_type {};
template <typename E, typename A>
struct is_integer_vector<std::vector<E, A>>
    : std::bool_constant<std::is_integral_v<E> && !std::is_same_v<E, bool>> {};
}  // namespace detail

/// Reads field @p key of @p j as T. Integers (alone or in arrays) must fit T exactly.
/// @throws peft::invalid_argument "<where>: field '<key>' expected <what>, got <json>"
template <typename T>
T config_field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    throw invalid_argument(where + ": field '" + key + "' missing from the config");
  const auto& v = j.at(key);
  bool ok = true;
  const char* what = "";
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean();
    what = "a boolean";
  } else if constexpr (std::is_integral_v<T>) {
    ok = v.is_number_integer();
    what = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v.is_number();
    what = "a number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    ok = v.is_string();
    what = "a string";
  }
  if (!ok) throw invalid_argument(where + ": field '" + key + "' expected " + what + ", got " + v.dump());
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    T out{};
    if (!detail::json_to_integer(v, out))
      throw invalid_argument(where + ": field '" + key + "' is out of range for its integer type, got " + v.dump());
    return out;
  } else if constexpr (detail::is_integer_vector<T>::value) {
    T out;
    if (!detail::json_to_integer(v, out))
      throw invalid_argument(where + ": field '" + key + "' expected an array of integers in range, got " +
                             v.dump().substr(0, 80));
    return out;
  } else {
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(where + ": field '" + key + "' cannot be read: " + e.what());
    }
  }
}

/// Field @p key of @p j as T, checked like config_field, or @p fallback when @p j has no such
/// field (a field added after checkpoints were written).
template <typename T>
T config_field_or(const nlohmann::json& j, const char* key, T fallback, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  return config_field<T>(j, key, where);
}

/// Checks "peft_type" and the encoder-shape fields of a checkpoint config against the
/// method and the encoder it is being loaded into.
/// @throws peft::invalid_argument naming the field, the expected and the found value
inline void check_config_header(const nlohmann::json& j, const char* peft_type, const encoder_shape& s,
                                const std::string& where) {
  if (!j.is_object()) throw invalid_argument(where + ": config expected a JSON object, got " + j.dump());
  const auto type = config_field<std::string>(j, "peft_type", where);
  if (type != peft_type)
    throw invalid_argument(where + ": field 'peft_type' expected \"" + peft_type + "\", got \"" + type + "\"");
  const auto mt = config_field<std::string>(j, "model_type", where);
  if (mt != s.model_type)
    throw invalid_argument(where + ": field 'model_type' expected \"" + s.model_type + "\" (encoder), got \"" + mt +
                           "\" (checkpoint)");
  auto check = [&](const char* key, index expected) {
    const auto got = config_field<index>(j, key, where);
    if (got != expected)
      throw invalid_argument(where + ": field '" + key + "' expected " + std::to_string(expected) + " (encoder), got " +
                             std::to_string(got) + " (checkpoint)");
  };
  check("num_layers", s.num_layers);
  check("hidden_size", s.hidden_size);
  check("embedding_size", s.embedding_size);
}

/// Trainable parameters of @p p as a fraction of the backbone's (`encoder_shape::backbone_parameters`).
template <class P>
double backbone_share(const P& p, const encoder_shape& s) {
  if (s.backbone_parameters <= 0)
    throw invalid_argument("backbone_share: backbone_parameters expected > 0, got " +
                           std::to_string(s.backbone_parameters));
  return static_cast<double>(p.num_parameters()) / static_cast<double>(s.backbone_parameters);
}

}  // namespace peft

#endif  // PEFT_POLICIES_POLICY_CONFIG_HPP
