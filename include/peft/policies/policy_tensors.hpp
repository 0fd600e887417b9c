// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_POLICY_TENSORS_HPP
#define PEFT_POLICIES_POLICY_TENSORS_HPP

/// @file policy_tensors.hpp
/// A policy's saved form as named tensors, and the way back. A policy whose saved form
/// differs from its trainable blocks (a bit-packed mask, an ejected prefix, a composition)
/// provides `export_tensors()` / `import_tensors()`; every other policy is saved block by
/// block, each block an F32 tensor named by its block name (biases and norms as 1-D
/// `[n]`, weights as 2-D `[rows, cols]`, the layout Hugging Face checkpoints use).
///
/// These helpers live with the policies (not in io/) so that `compose<...>` can build its
/// own saved form from its members'; io/adapter_checkpoint.hpp writes and reads them.

#include <cmath>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "policy_traits.hpp"

namespace peft {

namespace detail {
template <typename P, typename = void>
struct has_export_tensors : std::false_type {};
template <typename P>
struct has_export_tensors<P, std::void_t<decltype(std::map<std::string, tensor>(cref_<P>().export_tensors()))>>
    : std::true_type {};

template <typename P, typename = void>
struct has_import_tensors : std::false_type {};
template <typename P>
struct has_import_tensors<P, std::void_t<decltype(ref_<P>().import_tensors(cref_<std::map<std::string, tensor>>()))>>
    : std::true_type {};

/// P's trainable parameters are one `parameter_store` (`parameters()` returns it).
template <typename P, typename = void>
struct has_parameter_store : std::false_type {};
template <typename P>
struct has_parameter_store<P, std::void_t<decltype(cref_<P>().parameters().blocks())>> : std::true_type {};
/// P counts its trainable parameters (`num_parameters() const`).
template <typename P, typename = void>
struct has_num_parameters : std::false_type {};
template <typename P>
struct has_num_parameters<P, std::void_t<decltype(cref_<P>().num_parameters())>> : std::true_type {};
/// P lists its trainable stores itself (`stores()`): a policy with several stores
/// (`modular_prompt`) or a composition. Takes precedence over `has_parameter_store`.
template <typename P, typename = void>
struct has_parameter_stores : std::false_type {};
template <typename P>
struct has_parameter_stores<P, std::void_t<decltype(ref_<P>().stores())>> : std::true_type {};
}  // namespace detail

/// True when `P` provides `export_tensors() const`.
template <typename P>
inline constexpr bool has_export_tensors_v = detail::has_export_tensors<P>::value;
/// True when `P` provides `import_tensors(const std::map<std::string, tensor>&)`.
template <typename P>
inline constexpr bool has_import_tensors_v = detail::has_import_tensors<P>::value;

/// Shape a block is saved with: `[n]` for biases and norms, `[rows, cols]` for weights.
inline std::vector<std::int64_t> saved_shape(const param_block& b) {
  if (b.group != param_group::weight) return {static_cast<std::int64_t>(b.size())};
  return {static_cast<std::int64_t>(b.rows), static_cast<std::int64_t>(b.cols)};
}

/// Every block of @p store as an F32 tensor named by the block name.
template <typename Scalar>
std::map<std::string, tensor> store_tensors(const parameter_store<Scalar>& store) {
  std::map<std::string, tensor> out;
  for (index i = 0; i < store.num_blocks(); ++i) {
    const auto& b = store.block(i);
    tensor t;
    t.shape = saved_shape(b);
    const auto v = store.value(i);
    t.data.resize(static_cast<std::size_t>(b.size()));
    for (index k = 0; k < b.size(); ++k) t.data[static_cast<std::size_t>(k)] = static_cast<float>(v.data()[k]);
    out.emplace(b.name, std::move(t));
  }
  return out;
}

/// The saved form of a policy: `export_tensors()` when it has one, else its blocks.
template <typename P>
std::map<std::string, tensor> policy_tensors(const P& p) {
  if constexpr (has_export_tensors_v<P>) {
    return p.export_tensors();
  } else {
    static_assert(detail::has_parameter_store<P>::value,
                  "peft::policy_tensors: the policy needs parameters() (a parameter_store) or export_tensors()");
    return store_tensors(p.parameters());
  }
}

/// Checks that @p got holds exactly the tensors (names and shapes) of @p expected.
/// @param where  prefix of the error message (function and file)
/// @throws peft::invalid_argument naming the first missing, unexpected or mis-shaped tensor
inline void check_tensor_set(const std::map<std::string, tensor>& expected, const std::map<std::string, tensor>& got,
                             const std::string& where) {
  for (const auto& kv : expected) {
    auto it = got.find(kv.first);
    if (it == got.end())
      throw invalid_argument(where + ": missing tensor '" + kv.first + "' (shape " + kv.second.shape_string() + ")");
    if (it->second.shape != kv.second.shape)
      throw invalid_argument(where + ": tensor '" + kv.first + "' shape expected " + kv.second.shape_string() +
                             ", got " + it->second.shape_string());
    if (static_cast<std::int64_t>(it->second.data.size()) != it->second.numel())
      throw invalid_argument(where + ": tensor '" + kv.first + "' holds " + std::to_string(it->second.data.size()) +
                             " values, expected " + std::to_string(it->second.numel()) + " (numel of its shape)");
  }
  for (const auto& kv : got)
    if (!expected.count(kv.first))
      throw invalid_argument(where + ": unexpected tensor '" + kv.first + "' (shape " + kv.second.shape_string() +
                             "); expected " + std::to_string(expected.size()) + " tensors");
}

/// Fills every block of @p store from the tensor of the same name (set checked first).
/// @throws peft::invalid_argument for a missing, unexpected or mis-shaped tensor
template <typename Scalar>
void load_store_tensors(parameter_store<Scalar>& store, const std::map<std::string, tensor>& tensors,
                        const std::string& where) {
  check_tensor_set(store_tensors(store), tensors, where);
  for (index i = 0; i < store.num_blocks(); ++i) {
    const auto& t = tensors.at(store.block(i).name);
    auto v = store.value(i);
    for (index k = 0; k < v.size(); ++k) v.data()[k] = static_cast<Scalar>(t.data[static_cast<std::size_t>(k)]);
  }
}

/// Sets a policy from its saved form: `import_tensors()` when it has one (after checking
/// the set against `export_tensors()`), else block by block.
/// @throws peft::invalid_argument naming the tensor at fault
template <typename P>
void set_policy_tensors(P& p, const std::map<std::string, tensor>& tensors, const std::string& where) {
  if constexpr (has_import_tensors_v<P>) {
    check_tensor_set(policy_tensors(p), tensors, where);
    p.import_tensors(tensors);
  } else {
    load_store_tensors(p.parameters(), tensors, where);
  }
}

}  // namespace peft

#endif  // PEFT_POLICIES_POLICY_TENSORS_HPP
