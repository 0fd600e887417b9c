// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_COMPOSE_HPP
#define PEFT_POLICIES_COMPOSE_HPP

/// @file compose.hpp
/// `compose<P1, P2, ...>`: several policies in one encoder (e.g. a LiST adapter plus a
/// prefix). Each hook of the composition calls the members that implement it, in member
/// order in the forward pass and in reverse order in the backward pass; hooks no member
/// implements are absent from the composition too (so the encoder skips them).
///
/// Semantics per hook:
///  - embeddings, layer input, sub-layer output, encoder output: the members' maps are
///    chained (P1 first); the backward runs them in reverse.
///  - linear output: every member adds its path to y (each is additive in the contract).
///  - K/V prefix: the members' prefixes are stacked (P1's rows first).
///  - frozen weight: at most one member may transform a given (layer, linear); two at once
///    throw `peft::invalid_argument` (the hook passes no gradient through a transform).
///  - `lowest_layer` = the minimum over the members.
///
/// Parameters: `stores()` lists every member's trainable stores in member order — the
/// member's own `stores()` when it has several (`modular_prompt`, a nested `compose`), else its
/// `parameter_store`; members with no parameters add none — and `parameters()` returns a
/// `parameter_set` over them. `num_parameters()` is the sum of the members' counts.
///
/// Checkpoints: `config_json()` = {"peft_type": "COMPOSE", "members": [each member's
/// config_json()], shape fields}; tensors are each member's saved form with its keys
/// prefixed by `members.<i>.` (a whole path segment), so two members may use the same keys.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "policy_config.hpp"
#include "policy_tensors.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Several policies run as one.
/// @tparam Ps member policies, all with the same `scalar_type`
template <typename... Ps>
class compose {
  static_assert(sizeof...(Ps) >= 1, "peft::compose: needs at least one member policy");
  static_assert((is_policy_v<Ps> && ...), "peft::compose: every member must declare scalar_type");
  using first_type = std::tuple_element_t<0, std::tuple<Ps...>>;

public:
  using scalar_type = typename first_type::scalar_type;
  static_assert((std::is_same_v<typename Ps::scalar_type, scalar_type> && ...),
                "peft::compose: every member must have the same scalar_type");
  using mat = matrix<scalar_type>;
  using tape_type = std::tuple<policy_tape_t<Ps>...>;
  static constexpr const char* peft_type = "COMPOSE";
  static constexpr std::size_t num_members = sizeof...(Ps);

  compose() = default;
  explicit compose(Ps... members) : m_members(std::move(members)...) {}

  /// Member I.
  template <std::size_t I>
  auto& get() noexcept {
    return std::get<I>(m_members);
  }
  template <std::size_t I>
  const auto& get() const noexcept {
    return std::get<I>(m_members);
  }
  std::tuple<Ps...>& members() noexcept { return m_members; }
  const std::tuple<Ps...>& members() const noexcept { return m_members; }

  /// Every member's trainable stores, in member order.
  std::vector<parameter_store<scalar_type>*> stores() {
    std::vector<parameter_store<scalar_type>*> out;
    for_each([&](auto& m) {
      using M = std::decay_t<decltype(m)>;
      if constexpr (detail::has_parameter_stores<M>::value) {
        for (auto* s : m.stores()) out.push_back(s);
      } else if constexpr (detail::has_parameter_store<M>::value) {
        out.push_back(&m.parameters());
      }
    });
    return out;
  }
  /// A parameter_set over `stores()`; do not let it outlive this composition.
  parameter_set<scalar_type> parameters() {
    parameter_set<scalar_type> set;
    for (auto* s : stores()) set.add(*s);
    return set;
  }
  /// Sum of the members' trainable parameters.
  index num_parameters() const {
    index n = 0;
    for_each([&](const auto& m) {
      using M = std::decay_t<decltype(m)>;
      if constexpr (detail::has_num_parameters<M>::value) {
        n += m.num_parameters();
      } else if constexpr (detail::has_parameter_store<M>::value) {
        n += m.parameters().size();
      }
    });
    return n;
  }
  void zero_grad() {
    for (auto* s : stores()) s->zero_grad();
  }
  /// Lowest layer any member trains.
  index lowest_layer(index num_layers) const {
    index lo = num_layers;
    for_each([&](const auto& m) { lo = std::min(lo, lowest_trainable_layer(m, num_layers)); });
    return lo;
  }

  /// The members' position offsets added up (their prefixes stand for earlier positions).
  template <bool B = (detail::has_position_offset<Ps>::value || ...), std::enable_if_t<B, int> = 0>
  index position_offset() const {
    index n = 0;
    for_each([&](const auto& m) { n += position_offset_of(m); });
    return n;
  }

  // --- hooks (each present only when some member has it) ----------------------------------
  /// Members that supply input embeddings must replace different rows (each one's gradient is
  /// read from the same word-embedding gradient).
  template <bool B = (has_on_input_embeddings_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_input_embeddings(const batch& b, mat& e, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_input_embeddings_v<typename decltype(tag)::type>) m.on_input_embeddings(b, e, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_input_embeddings_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_input_embeddings_backward(const mat& de, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_input_embeddings_v<typename decltype(tag)::type>) m.on_input_embeddings_backward(de, mt);
    }, t);
  }
  template <bool B = (has_on_embeddings_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_embeddings(mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_embeddings_v<typename decltype(tag)::type>) m.on_embeddings(h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_embeddings_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_embeddings_backward(mat& dh, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_embeddings_v<typename decltype(tag)::type>) m.on_embeddings_backward(dh, mt);
    }, t);
  }

  template <bool B = (has_on_layer_input_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_layer_input(index l, mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_layer_input_v<typename decltype(tag)::type>) m.on_layer_input(l, h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_layer_input_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_layer_input_backward(index l, mat& dh, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_layer_input_v<typename decltype(tag)::type>) m.on_layer_input_backward(l, dh, mt);
    }, t);
  }

  template <bool B = (has_kv_prefix_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  index kv_prefix_length(index l) const {
    index n = 0;
    for_each([&](const auto& m) {
      if constexpr (has_kv_prefix_v<std::decay_t<decltype(m)>>) n += m.kv_prefix_length(l);
    });
    return n;
  }
  template <bool B = (has_kv_prefix_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void kv_prefix(index l, mat& pk, mat& pv, const hook_context& ctx, tape_type& t) const {
    std::vector<mat> ks, vs;
    index rows = 0, cols = 0;
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_kv_prefix_v<typename decltype(tag)::type>) {
        if (m.kv_prefix_length(l) <= 0) return;
        mat k, v;
        m.kv_prefix(l, k, v, ctx, mt);
        rows += k.rows();
        cols = k.cols();
        ks.push_back(std::move(k));
        vs.push_back(std::move(v));
      }
    }, t);
    pk.resize(rows, cols);
    pv.resize(rows, cols);
    index r = 0;
    for (std::size_t i = 0; i < ks.size(); ++i) {
      pk.middleRows(r, ks[i].rows()) = ks[i];
      pv.middleRows(r, vs[i].rows()) = vs[i];
      r += ks[i].rows();
    }
  }
  template <bool B = (has_kv_prefix_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void kv_prefix_backward(index l, const mat& dpk, const mat& dpv, const tape_type& t) {
    // Row offsets in forward order, then the members' backward in reverse order.
    std::array<index, sizeof...(Ps)> offset{}, length{};
    {
      index r = 0;
      std::size_t i = 0;
      for_each([&](const auto& m) {
        index n = 0;
        if constexpr (has_kv_prefix_v<std::decay_t<decltype(m)>>) n = m.kv_prefix_length(l);
        offset[i] = r;
        length[i] = n;
        r += n;
        ++i;
      });
    }
    bwd_each_indexed([&](auto& m, const auto& mt, auto tag, std::size_t i) {
      if constexpr (has_kv_prefix_v<typename decltype(tag)::type>) {
        if (length[i] <= 0) return;
        m.kv_prefix_backward(l, mat(dpk.middleRows(offset[i], length[i])), mat(dpv.middleRows(offset[i], length[i])),
                             mt);
      }
    }, t);
  }

  template <bool B = (has_on_weight_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  bool transforms_weight(index l, linear_id w) const {
    int n = 0;
    for_each([&](const auto& m) {
      if constexpr (has_on_weight_v<std::decay_t<decltype(m)>>) n += m.transforms_weight(l, w) ? 1 : 0;
    });
    if (n > 1)
      throw invalid_argument("compose::transforms_weight: " + std::to_string(n) + " members transform the " +
                             to_string(w) + " weight of layer " + std::to_string(l) + ", expected at most 1");
    return n == 1;
  }
  template <bool B = (has_on_weight_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_weight(index l, linear_id w, const mat& W, mat& W_eff, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_weight_v<typename decltype(tag)::type>) {
        if (m.transforms_weight(l, w)) m.on_weight(l, w, W, W_eff, mt);
      }
    }, t);
  }
  template <bool B = (has_on_weight_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_weight_backward(index l, linear_id w, const mat& W, const mat& dW_eff, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_weight_v<typename decltype(tag)::type>) {
        if (m.transforms_weight(l, w)) m.on_weight_backward(l, w, W, dW_eff, mt);
      }
    }, t);
  }

  /// The scale of the one member that scales linear @p w of layer @p l (at most one may).
  template <bool B = (has_linear_scale_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  linear_scaling<scalar_type> linear_scale(index l, linear_id w) const {
    linear_scaling<scalar_type> out;
    int n = 0;
    for_each([&](const auto& m) {
      if constexpr (has_linear_scale_v<std::decay_t<decltype(m)>>) {
        const linear_scaling<scalar_type> sc = m.linear_scale(l, w);
        if (sc.data) out = sc, ++n;
      }
    });
    if (n > 1)
      throw invalid_argument("compose::linear_scale: " + std::to_string(n) + " members scale the " + to_string(w) +
                             " linear of layer " + std::to_string(l) + ", expected at most 1");
    return out;
  }
  template <bool B = (has_linear_scale_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_linear_scale_backward(index l, linear_id w, const row_vector<scalar_type>& ds) {
    for_each([&](auto& m) {
      if constexpr (has_linear_scale_v<std::decay_t<decltype(m)>>) {
        if (m.linear_scale(l, w).data) m.on_linear_scale_backward(l, w, ds);
      }
    });
  }

  template <bool B = (has_on_linear_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_linear(index l, linear_id w, const mat& x, mat& y, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_linear_v<typename decltype(tag)::type>) m.on_linear(l, w, x, y, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_linear_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_linear_backward(index l, linear_id w, const mat& dy, mat& dx, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_linear_v<typename decltype(tag)::type>) m.on_linear_backward(l, w, dy, dx, mt);
    }, t);
  }

  template <bool B = (has_on_sublayer_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_sublayer_output(index l, sublayer s, placement p, mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_sublayer_output_v<typename decltype(tag)::type>) m.on_sublayer_output(l, s, p, h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_sublayer_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_sublayer_output_backward(index l, sublayer s, placement p, mat& dh, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_sublayer_output_v<typename decltype(tag)::type>)
        m.on_sublayer_output_backward(l, s, p, dh, mt);
    }, t);
  }

  template <bool B = (has_on_norm_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_norm_output(index l, norm_site n, mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_norm_output_v<typename decltype(tag)::type>) m.on_norm_output(l, n, h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_norm_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_norm_output_backward(index l, norm_site n, mat& dh, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_norm_output_v<typename decltype(tag)::type>) m.on_norm_output_backward(l, n, dh, mt);
    }, t);
  }

  // Every member that reads the normed residual sum gets the same z, in order.
  template <bool B = (has_on_residual_norm_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  bool reads_residual_norm(index l, sublayer s) const {
    bool any = false;
    for_each([&](const auto& m) {
      if constexpr (has_on_residual_norm_v<std::decay_t<decltype(m)>>) any = any || m.reads_residual_norm(l, s);
    });
    return any;
  }
  template <bool B = (has_on_residual_norm_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_residual_norm(index l, sublayer s, const mat& z, mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_residual_norm_v<typename decltype(tag)::type>)
        if (m.reads_residual_norm(l, s)) m.on_residual_norm(l, s, z, h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_residual_norm_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_residual_norm_backward(index l, sublayer s, mat& dh, mat& dz, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_residual_norm_v<typename decltype(tag)::type>)
        if (m.reads_residual_norm(l, s)) m.on_residual_norm_backward(l, s, dh, dz, mt);
    }, t);
  }

  template <bool B = (has_on_encoder_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_encoder_output(const mat& h0, mat& h, const hook_context& ctx, tape_type& t) const {
    fwd_each([&](const auto& m, auto& mt, auto tag) {
      if constexpr (has_on_encoder_output_v<typename decltype(tag)::type>) m.on_encoder_output(h0, h, ctx, mt);
    }, t);
  }
  template <bool B = (has_on_encoder_output_v<Ps> || ...), std::enable_if_t<B, int> = 0>
  void on_encoder_output_backward(mat& dh, const tape_type& t) {
    bwd_each([&](auto& m, const auto& mt, auto tag) {
      if constexpr (has_on_encoder_output_v<typename decltype(tag)::type>) m.on_encoder_output_backward(dh, mt);
    }, t);
  }

  // --- checkpoints -----------------------------------------------------------------------
  nlohmann::json config_json() const {
    nlohmann::json j;
    j["peft_type"] = peft_type;
    nlohmann::json list = nlohmann::json::array();
    for_each([&](const auto& m) { list.push_back(m.config_json()); });
    j["members"] = list;
    const auto& first = list.front();
    for (const char* k : {"model_type", "num_layers", "hidden_size", "embedding_size"})
      if (first.contains(k)) j[k] = first[k];
    return j;
  }

  /// Rebuilds every member with `Pi::from_config(members[i], shape)`.
  /// @throws peft::invalid_argument naming the field when the member list or a member does not match
  static compose from_config(const nlohmann::json& j, const encoder_shape& shape) {
    const std::string where = "compose::from_config";
    check_config_header(j, peft_type, shape, where);
    if (!j.contains("members") || !j["members"].is_array())
      throw invalid_argument(where + ": field 'members' expected an array of member configs");
    const auto& list = j["members"];
    if (list.size() != sizeof...(Ps))
      throw invalid_argument(where + ": field 'members' expected " + std::to_string(sizeof...(Ps)) +
                             " entries, got " + std::to_string(list.size()));
    return from_config_impl(list, shape, std::index_sequence_for<Ps...>{});
  }

  /// Each member's saved form, keys prefixed with `members.<i>.`.
  std::map<std::string, tensor> export_tensors() const {
    std::map<std::string, tensor> out;
    std::size_t i = 0;
    for_each([&](const auto& m) {
      const std::string pre = member_prefix(i++);
      for (auto& kv : policy_tensors(m)) out.emplace(pre + kv.first, std::move(kv.second));
    });
    return out;
  }
  /// Splits the tensors by `members.<i>.` prefix and sets each member.
  void import_tensors(const std::map<std::string, tensor>& tensors) {
    check_tensor_set(export_tensors(), tensors, "compose::import_tensors");
    std::size_t i = 0;
    for_each([&](auto& m) {
      const std::string pre = member_prefix(i++);
      std::map<std::string, tensor> sub;
      for (const auto& kv : tensors)
        if (kv.first.compare(0, pre.size(), pre) == 0) sub.emplace(kv.first.substr(pre.size()), kv.second);
      set_policy_tensors(m, sub, "compose::import_tensors: member " + std::to_string(i - 1));
    });
  }

private:
  static std::string member_prefix(std::size_t i) { return "members." + std::to_string(i) + "."; }

  template <std::size_t... I>
  static compose from_config_impl(const nlohmann::json& list, const encoder_shape& shape, std::index_sequence<I...>) {
    return compose(Ps::from_config(list[I], shape)...);
  }

  template <typename T>
  struct type_tag {
    using type = T;
  };

  template <typename F>
  void for_each(F&& f) {
    std::apply([&](auto&... m) { (f(m), ...); }, m_members);
  }
  template <typename F>
  void for_each(F&& f) const {
    std::apply([&](const auto&... m) { (f(m), ...); }, m_members);
  }
  template <typename F, std::size_t... I>
  void fwd_impl(F& f, tape_type& t, std::index_sequence<I...>) const {
    (f(std::get<I>(m_members), std::get<I>(t), type_tag<std::tuple_element_t<I, std::tuple<Ps...>>>{}), ...);
  }
  template <typename F>
  void fwd_each(F&& f, tape_type& t) const {
    fwd_impl(f, t, std::index_sequence_for<Ps...>{});
  }
  template <std::size_t I, typename F>
  void bwd_step(F& f, const tape_type& t) {
    constexpr std::size_t J = sizeof...(Ps) - 1 - I;  // reverse order
    f(std::get<J>(m_members), std::get<J>(t), type_tag<std::tuple_element_t<J, std::tuple<Ps...>>>{}, J);
  }
  template <typename F, std::size_t... I>
  void bwd_impl(F& f, const tape_type& t, std::index_sequence<I...>) {
    (bwd_step<I>(f, t), ...);
  }
  template <typename F>
  void bwd_each_indexed(F&& f, const tape_type& t) {
    bwd_impl(f, t, std::index_sequence_for<Ps...>{});
  }
  template <typename F>
  void bwd_each(F&& f, const tape_type& t) {
    auto g = [&](auto& m, const auto& mt, auto tag, std::size_t) { f(m, mt, tag); };
    bwd_impl(g, t, std::index_sequence_for<Ps...>{});
  }

  std::tuple<Ps...> m_members;
};

}  // namespace peft

#endif  // PEFT_POLICIES_COMPOSE_HPP
