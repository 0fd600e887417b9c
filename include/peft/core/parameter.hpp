// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_PARAMETER_HPP
#define PEFT_CORE_PARAMETER_HPP

/// @file parameter.hpp
/// Trainable parameters. A policy (or head) owns one `parameter_store`: named blocks laid
/// out in one contiguous value vector and one gradient vector of the same layout. Views are
/// built from offsets on demand and never stored, so copies of a policy never share storage.
/// `parameter_set` strings several stores together for an optimizer, indexed by position.

#include <string>
#include <utility>
#include <vector>

#include "limits.hpp"
#include "types.hpp"

namespace peft {

/// Optimizer treatment of a block: weight decay applies to `weight` only (biases and
/// LayerNorm parameters are not decayed, as the reference implementations do).
enum class param_group { weight, bias, norm };

inline const char* to_string(param_group g) noexcept {
  switch (g) {
    case param_group::weight: return "weight";
    case param_group::bias: return "bias";
    case param_group::norm: return "norm";
  }
  return "?";
}

/// One named block inside a store.
struct param_block {
  std::string name;  ///< checkpoint key (Hugging Face PEFT / AdapterHub style path)
  index offset = 0;
  index rows = 0;
  index cols = 0;  ///< 1 for a vector
  param_group group = param_group::weight;
  index size() const noexcept { return rows * cols; }
};

/// A view of one block: its value and its gradient as row-major matrices.
template <typename Scalar>
struct parameter_view {
  const param_block* block;
  Eigen::Map<matrix<Scalar>> value;
  Eigen::Map<matrix<Scalar>> grad;
};

template <typename Scalar>
class parameter_store {
public:
  using scalar_type = Scalar;

  /// Appends a zero-initialised block; returns its position. Names must be unique.
  index add(std::string name, index rows, index cols, param_group group) {
    if (rows <= 0 || cols <= 0)
      throw invalid_argument("parameter_store::add: block '" + name + "' shape expected positive, got [" +
                             std::to_string(rows) + ", " + std::to_string(cols) + "]");
    for (const auto& b : m_blocks)
      if (b.name == name) throw invalid_argument("parameter_store::add: duplicate block name '" + name + "'");
    // Sizes often come from a config file: refuse an overflowing or absurd size before
    // allocating (values and gradients) for it.
    const auto limit = static_cast<index>(default_read_limits().max_policy_parameters);
    if (rows > limit / cols || rows * cols > limit - m_values.size())
      throw invalid_argument("parameter_store::add: block '" + name + "' of shape [" + std::to_string(rows) + ", " +
                             std::to_string(cols) + "] would take the store past " + std::to_string(limit) +
                             " parameters (read_limits::max_policy_parameters)");
    param_block b{std::move(name), m_values.size(), rows, cols, group};
    const index n = m_values.size() + b.size();
    m_values.conservativeResize(n);
    m_grads.conservativeResize(n);
    m_values.tail(b.size()).setZero();
    m_grads.tail(b.size()).setZero();
    m_blocks.push_back(std::move(b));
    return static_cast<index>(m_blocks.size()) - 1;
  }

  index num_blocks() const noexcept { return static_cast<index>(m_blocks.size()); }
  index size() const noexcept { return m_values.size(); }
  const std::vector<param_block>& blocks() const noexcept { return m_blocks; }
  const param_block& block(index i) const { return m_blocks.at(static_cast<std::size_t>(i)); }
  /// Position of the block named `name`, or -1.
  index find(const std::string& name) const noexcept {
    for (std::size_t i = 0; i < m_blocks.size(); ++i)
      if (m_blocks[i].name == name) return static_cast<index>(i);
    return -1;
  }

  Eigen::Map<matrix<Scalar>> value(index i) { return map(m_values, block(i)); }
  Eigen::Map<const matrix<Scalar>> value(index i) const { return cmap(m_values, block(i)); }
  Eigen::Map<matrix<Scalar>> grad(index i) { return map(m_grads, block(i)); }
  Eigen::Map<const matrix<Scalar>> grad(index i) const { return cmap(m_grads, block(i)); }

  /// All values / gradients, flat, in block order.
  vector<Scalar>& values() noexcept { return m_values; }
  const vector<Scalar>& values() const noexcept { return m_values; }
  vector<Scalar>& grads() noexcept { return m_grads; }
  const vector<Scalar>& grads() const noexcept { return m_grads; }
  void zero_grad() { m_grads.setZero(); }

  std::vector<parameter_view<Scalar>> views() {
    std::vector<parameter_view<Scalar>> v;
    for (index i = 0; i < num_blocks(); ++i) v.push_back({&block(i), value(i), grad(i)});
    return v;
  }

private:
  static Eigen::Map<matrix<Scalar>> map(vector<Scalar>& v, const param_block& b) {
    return {v.data() + b.offset, b.rows, b.cols};
  }
  static Eigen::Map<const matrix<Scalar>> cmap(const vector<Scalar>& v, const param_block& b) {
    return {v.data() + b.offset, b.rows, b.cols};
  }

  std::vector<param_block> m_blocks;
  vector<Scalar> m_values;
  vector<Scalar> m_grads;
};

/// Several stores seen as one flat parameter vector, for optimizers. Holds references:
/// build it where you train, after the policies and heads exist, and do not outlive them.
template <typename Scalar>
class parameter_set {
public:
  parameter_set() = default;
  template <typename... Stores>
  explicit parameter_set(Stores&... stores) {
    (add(stores), ...);
  }
  void add(parameter_store<Scalar>& s) { m_stores.push_back(&s); }

  index size() const noexcept {
    index n = 0;
    for (auto* s : m_stores) n += s->size();
    return n;
  }
  std::size_t num_stores() const noexcept { return m_stores.size(); }
  parameter_store<Scalar>& store(std::size_t i) { return *m_stores.at(i); }
  const parameter_store<Scalar>& store(std::size_t i) const { return *m_stores.at(i); }
  void zero_grad() {
    for (auto* s : m_stores) s->zero_grad();
  }
  /// Copies every value into one vector (black-box optimizers work on this).
  vector<Scalar> get_flat() const {
    vector<Scalar> out(size());
    index o = 0;
    for (auto* s : m_stores) {
      out.segment(o, s->size()) = s->values();
      o += s->size();
    }
    return out;
  }
  void set_flat(const vector<Scalar>& in) {
    if (in.size() != size())
      throw invalid_argument("parameter_set::set_flat: size expected " + std::to_string(size()) + ", got " +
                             std::to_string(in.size()));
    index o = 0;
    for (auto* s : m_stores) {
      s->values() = in.segment(o, s->size());
      o += s->size();
    }
  }
  vector<Scalar> get_flat_grad() const {
    vector<Scalar> out(size());
    index o = 0;
    for (auto* s : m_stores) {
      out.segment(o, s->size()) = s->grads();
      o += s->size();
    }
    return out;
  }

private:
  std::vector<parameter_store<Scalar>*> m_stores;
};

}  // namespace peft

#endif  // PEFT_CORE_PARAMETER_HPP
