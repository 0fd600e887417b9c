// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_OPTIMIZER_HPP
#define PEFT_OPTIM_OPTIMIZER_HPP

/// @file optimizer.hpp
/// What every first-order optimizer of peft shares: per-store and per-group overrides of
/// the learning rate and weight decay, the layout check, per-store step counts and the
/// exportable state (`optimizer_state`).
///
/// Optimizers hold hyper-parameters only. `init(set)` creates the state, sized from the
/// `parameter_set` and indexed by position (never by address); `step(set, lr)` checks that
/// the set still has the layout `init` saw and throws `peft::invalid_argument` otherwise.
///
/// Learning rate and weight decay of one block (store `s`, block group `g`):
/// ```
/// lr(block) = lr(step) * store_options(s).lr_scale * group_options(g).lr_scale
/// wd(block) = weight blocks:     store_options(s).weight_decay, else group_options(weight).weight_decay,
///                                else the optimizer's weight_decay
///             bias / norm blocks: group_options(g).weight_decay, else 0   (no decay, as HF/LiST)
/// ```
/// A store or group marked `frozen` is skipped: its values and its state do not change and its
/// step count does not advance (MPMP's "router only, then prompts only" stages).

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"

namespace peft {

/// Overrides for one store of the set (by position) or one `param_group`.
struct param_options {
  double lr_scale = 1.0;               ///< multiplies the step's learning rate (>= 0)
  std::optional<double> weight_decay;  ///< replaces the optimizer's weight decay (>= 0)
  bool frozen = false;                 ///< skip these parameters entirely
};

/// Optimizer state for checkpoint / resume: flat buffers in set order plus step counts.
template <typename Scalar>
struct optimizer_state {
  std::string kind;                       ///< "sgd", "adam" or "adamw"
  std::vector<index> store_sizes;         ///< layout the state was built for
  std::vector<std::int64_t> steps;        ///< per store: optimizer steps applied to it
  std::vector<std::string> buffer_names;  ///< e.g. {"exp_avg", "exp_avg_sq"}
  std::vector<vector<Scalar>> buffers;    ///< one per name, each of length sum(store_sizes)
};

namespace detail {

inline std::string sizes_string(const std::vector<index>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

inline void check_rate(const std::string& where, const char* what, double v) {
  if (!std::isfinite(v) || v < 0)
    throw invalid_argument(where + ": " + what + " expected finite and >= 0, got " + std::to_string(v));
}

/// First non-finite gradient entry of the set as "store s block 'name' entry k (value)", or "".
template <typename Scalar>
std::string first_non_finite_grad(const parameter_set<Scalar>& set) {
  for (std::size_t s = 0; s < set.num_stores(); ++s) {
    const auto& st = set.store(s);
    const auto& g = st.grads();
    if (g.allFinite()) continue;
    for (const auto& b : st.blocks())
      for (index k = 0; k < b.size(); ++k) {
        const Scalar v = g[b.offset + k];
        if (!std::isfinite(v))
          return "store " + std::to_string(s) + " block '" + b.name + "' entry " + std::to_string(k) + " (" +
                 std::to_string(static_cast<double>(v)) + ")";
      }
  }
  return {};
}

}  // namespace detail

/// Shared part of `sgd`, `adam` and `adamw`: overrides, layout, step counts, state buffers.
/// Not used on its own (its constructor is protected).
/// @tparam Scalar float or double
template <typename Scalar>
class optimizer_base {
  static_assert(is_supported_scalar_v<Scalar>, "peft::optimizer_base: Scalar must be float or double");

public:
  using scalar_type = Scalar;

  /// Overrides for the store at position `store` of the set given to `init` / `step`.
  /// @throws invalid_argument for a negative position, lr_scale or weight decay
  void set_store_options(index store, const param_options& o) {
    const std::string where = m_kind + "::set_store_options";
    if (store < 0)
      throw invalid_argument(where + ": store position expected >= 0, got " + std::to_string(store));
    check_options(where, o);
    if (static_cast<std::size_t>(store) >= m_store_options.size())
      m_store_options.resize(static_cast<std::size_t>(store) + 1);
    m_store_options[static_cast<std::size_t>(store)] = o;
  }
  /// Overrides for every block of group `g` (e.g. a separate LR for LayerNorm parameters).
  void set_group_options(param_group g, const param_options& o) {
    check_options(m_kind + "::set_group_options", o);
    m_group_options[static_cast<std::size_t>(g)] = o;
  }
  /// Shorthand: learning-rate multiplier of one store.
  void set_store_lr_scale(index store, double lr_scale) {
    param_options o = store_options(store);
    o.lr_scale = lr_scale;
    set_store_options(store, o);
  }
  /// Shorthand: freeze or unfreeze one store.
  void set_store_frozen(index store, bool frozen) {
    param_options o = store_options(store);
    o.frozen = frozen;
    set_store_options(store, o);
  }
  /// Options of a store (defaults if never set).
  param_options store_options(index store) const {
    if (store >= 0 && static_cast<std::size_t>(store) < m_store_options.size())
      return m_store_options[static_cast<std::size_t>(store)];
    return {};
  }
  const param_options& group_options(param_group g) const noexcept {
    return m_group_options[static_cast<std::size_t>(g)];
  }

  /// Effective learning rate of block `b` of store `store` for a step at rate `lr`.
  double block_lr(index store, const param_block& b, double lr) const {
    return lr * store_options(store).lr_scale * group_options(b.group).lr_scale;
  }
  /// Effective weight decay of block `b` of store `store` (see the file comment).
  double block_weight_decay(index store, const param_block& b) const {
    const auto& go = group_options(b.group);
    if (b.group != param_group::weight) return go.weight_decay.value_or(0.0);
    const auto so = store_options(store);
    if (so.weight_decay) return *so.weight_decay;
    if (go.weight_decay) return *go.weight_decay;
    return m_weight_decay;
  }
  bool block_frozen(index store, const param_block& b) const {
    return store_options(store).frozen || group_options(b.group).frozen;
  }

  /// True once `init` (or `load_state`) has created the state.
  bool initialized() const noexcept { return m_initialized; }
  /// Steps applied to store `store` since `init` (stores can differ when some were frozen).
  std::int64_t step_count(index store = 0) const {
    if (store < 0 || static_cast<std::size_t>(store) >= m_steps.size())
      throw invalid_argument(detail::expected_got((m_kind + "::step_count").c_str(), "store position below",
                                                  m_steps.size(), store));
    return m_steps[static_cast<std::size_t>(store)];
  }
  /// Store sizes the state was built for.
  const std::vector<index>& layout() const noexcept { return m_store_sizes; }

  /// Creates zeroed state for `set`: every buffer has `set.size()` entries in set order.
  /// @throws invalid_argument if store options name a store the set does not have
  void init(const parameter_set<Scalar>& set) {
    const std::string where = m_kind + "::init";
    check_option_positions(where, set);
    m_store_sizes.clear();
    m_store_blocks.clear();
    for (std::size_t s = 0; s < set.num_stores(); ++s) {
      m_store_sizes.push_back(set.store(s).size());
      m_store_blocks.push_back(set.store(s).num_blocks());
    }
    m_steps.assign(set.num_stores(), 0);
    for (auto& b : m_buffers) b = vector<Scalar>::Zero(set.size());
    m_initialized = true;
  }

  /// Exports the state (copies).
  optimizer_state<Scalar> state() const {
    if (!m_initialized) throw error(m_kind + "::state: init(set) must be called first");
    return {m_kind, m_store_sizes, m_steps, m_buffer_names, m_buffers};
  }

  /// Restores state exported by `state()` for a set of the same layout.
  /// @throws invalid_argument if the kind, layout, buffer names or sizes differ, or a value is not finite
  void load_state(const parameter_set<Scalar>& set, const optimizer_state<Scalar>& st) {
    const std::string where = m_kind + "::load_state";
    if (st.kind != m_kind)
      throw invalid_argument(detail::expected_got(where.c_str(), "state kind", m_kind, st.kind));
    std::vector<index> sizes;
    for (std::size_t s = 0; s < set.num_stores(); ++s) sizes.push_back(set.store(s).size());
    if (st.store_sizes != sizes)
      throw invalid_argument(where + ": state store sizes expected " + detail::sizes_string(sizes) +
                             " (the parameter set), got " + detail::sizes_string(st.store_sizes));
    if (st.steps.size() != sizes.size())
      throw invalid_argument(
          detail::expected_got(where.c_str(), "step counts", sizes.size(), st.steps.size()));
    for (std::size_t s = 0; s < st.steps.size(); ++s)
      if (st.steps[s] < 0)
        throw invalid_argument(where + ": step count of store " + std::to_string(s) + " expected >= 0, got " +
                               std::to_string(st.steps[s]));
    if (st.buffer_names != m_buffer_names || st.buffers.size() != m_buffer_names.size())
      throw invalid_argument(where + ": buffers expected " + names_string(m_buffer_names) + ", got " +
                             names_string(st.buffer_names));
    for (std::size_t i = 0; i < st.buffers.size(); ++i) {
      if (st.buffers[i].size() != set.size())
        throw invalid_argument(where + ": buffer '" + st.buffer_names[i] + "' size expected " +
                               std::to_string(set.size()) + ", got " + std::to_string(st.buffers[i].size()));
      if (!st.buffers[i].allFinite())
        throw invalid_argument(where + ": buffer '" + st.buffer_names[i] +
                               "' expected finite values, got NaN/Inf");
    }
    init(set);
    m_steps = st.steps;
    m_buffers = st.buffers;
  }

  /// Weight decay of `weight` blocks without overrides.
  double weight_decay() const noexcept { return m_weight_decay; }
  /// Default learning rate, used by `step(set)` with no rate.
  double lr() const noexcept { return m_lr; }

protected:
  optimizer_base(std::string kind, double lr, double weight_decay, bool check_finite,
                 std::vector<std::string> buffer_names)
      : m_kind(std::move(kind)),
        m_lr(lr),
        m_weight_decay(weight_decay),
        m_check_finite(check_finite),
        m_buffer_names(std::move(buffer_names)),
        m_buffers(m_buffer_names.size()) {
    detail::check_rate(m_kind + "::" + m_kind, "lr", lr);
    detail::check_rate(m_kind + "::" + m_kind, "weight_decay", weight_decay);
  }

  /// Validates `set` and `lr` for a step, then calls
  /// `f(store, block, value, grad, offset, block_lr, block_wd, step)` for every block not
  /// frozen, where `offset` is the block's first entry in the flat buffers and `step` is the
  /// 1-based count of this update for the store. Step counts advance for stores with any
  /// unfrozen block.
  template <typename F>
  void for_each_block(parameter_set<Scalar>& set, double lr, F&& f) {
    const std::string where = m_kind + "::step";
    if (!m_initialized) throw error(where + ": init(set) must be called before the first step");
    detail::check_rate(where, "learning rate", lr);
    check_layout(where, set);
    if (m_check_finite) {
      const std::string bad = detail::first_non_finite_grad(set);
      if (!bad.empty())
        throw numeric_error(where + ": gradient expected finite, got a non-finite value at " + bad +
                            "; parameters left unchanged");
    }
    index base = 0;
    for (std::size_t s = 0; s < set.num_stores(); ++s) {
      auto& st = set.store(s);
      const index si = static_cast<index>(s);
      bool any = false;
      for (const auto& b : st.blocks()) any = any || !block_frozen(si, b);
      if (any) ++m_steps[s];
      for (const auto& b : st.blocks()) {
        if (block_frozen(si, b)) continue;
        f(si, b, st.values().segment(b.offset, b.size()), st.grads().segment(b.offset, b.size()),
          base + b.offset, block_lr(si, b, lr), block_weight_decay(si, b), m_steps[s]);
      }
      base += st.size();
    }
  }

  /// Flat buffer `i` (as named in the constructor).
  vector<Scalar>& buffer(std::size_t i) { return m_buffers[i]; }

  std::string m_kind;
  double m_lr;
  double m_weight_decay;
  bool m_check_finite;

private:
  static std::string names_string(const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  }
  static void check_options(const std::string& where, const param_options& o) {
    detail::check_rate(where, "lr_scale", o.lr_scale);
    if (o.weight_decay) detail::check_rate(where, "weight_decay", *o.weight_decay);
  }
  void check_option_positions(const std::string& where, const parameter_set<Scalar>& set) const {
    for (std::size_t s = set.num_stores(); s < m_store_options.size(); ++s) {
      const auto& o = m_store_options[s];
      if (o.lr_scale != 1.0 || o.weight_decay || o.frozen)
        throw invalid_argument(where + ": options were set for store " + std::to_string(s) +
                               " but the set has " + std::to_string(set.num_stores()) + " stores");
    }
  }
  void check_layout(const std::string& where, const parameter_set<Scalar>& set) const {
    std::vector<index> sizes, blocks;
    for (std::size_t s = 0; s < set.num_stores(); ++s) {
      sizes.push_back(set.store(s).size());
      blocks.push_back(set.store(s).num_blocks());
    }
    if (sizes != m_store_sizes || blocks != m_store_blocks)
      throw invalid_argument(
          where + ": parameter set layout expected " + std::to_string(m_store_sizes.size()) +
          " stores of sizes " + detail::sizes_string(m_store_sizes) + " and block counts " +
          detail::sizes_string(m_store_blocks) + " (as at init), got " + std::to_string(sizes.size()) +
          " stores of sizes " + detail::sizes_string(sizes) + " and block counts " +
          detail::sizes_string(blocks) + "; call init(set) again");
    check_option_positions(where, set);
  }

  std::vector<param_options> m_store_options;
  param_options m_group_options[3] = {};
  bool m_initialized = false;
  std::vector<index> m_store_sizes;
  std::vector<index> m_store_blocks;
  std::vector<std::int64_t> m_steps;
  std::vector<std::string> m_buffer_names;
  std::vector<vector<Scalar>> m_buffers;
};

}  // namespace peft

#endif  // PEFT_OPTIM_OPTIMIZER_HPP
