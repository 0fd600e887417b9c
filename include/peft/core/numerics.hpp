// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_NUMERICS_HPP
#define PEFT_CORE_NUMERICS_HPP

/// @file numerics.hpp
/// Numeric-fault detection: a process-wide, opt-in check mode and the finiteness checks
/// behind it.
///
/// Some points are always checked (a loss and its gradient, a gradient norm before clipping,
/// the optimizers' `check_finite`, weights read from a checkpoint, prefix vectors a policy
/// injects). In check mode the frozen encoder also checks the output of every op of its
/// forward pass and every gradient of its backward pass, and throws `peft::numeric_error`
/// naming the first non-finite tensor, its layer and op, and the entry:
///
///     encoder::forward: layer 1 ffn_in output: expected finite, got NaN at row 5, column 17
///
/// Check mode is off unless `set_check_numerics(true)` is called, a `numerics_check_scope`
/// is alive, or the environment variable `PEFT_CHECK_NUMERICS` is `1` (or `true`, `on`,
/// `yes`) when the switch is first read. When off, a check site costs one relaxed atomic
/// load. The switch is process-wide: it applies to every thread and every encoder.

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

#include "../error.hpp"
#include "parameter.hpp"
#include "types.hpp"

namespace peft {

namespace detail {

/// -1: not read yet (the environment decides on first use), 0: off, 1: on.
inline std::atomic<int> g_check_numerics{-1};

/// True when @p value switches check mode on: "1", "true", "on" or "yes", any case.
inline bool numerics_env_value_on(const char* value) {
  if (!value) return false;
  std::string v(value);
  for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return v == "1" || v == "true" || v == "on" || v == "yes";
}

/// Reads `PEFT_CHECK_NUMERICS` once; a switch set meanwhile by another thread wins.
inline bool init_check_numerics_from_env() {
  int expected = -1;
  const int from_env = numerics_env_value_on(std::getenv("PEFT_CHECK_NUMERICS")) ? 1 : 0;
  g_check_numerics.compare_exchange_strong(expected, from_env, std::memory_order_relaxed);
  return g_check_numerics.load(std::memory_order_relaxed) == 1;
}

/// Forgets the switch, so the next `check_numerics()` reads the environment again
/// (for tests of the environment variable).
inline void reset_check_numerics() noexcept { g_check_numerics.store(-1, std::memory_order_relaxed); }

}  // namespace detail

/// Whether check mode is on. One relaxed atomic load once the switch is known; the first
/// call reads the environment variable `PEFT_CHECK_NUMERICS` unless a switch was set before.
inline bool check_numerics() {
  const int v = detail::g_check_numerics.load(std::memory_order_relaxed);
  if (v >= 0) return v == 1;
  return detail::init_check_numerics_from_env();
}

/// Switches check mode on or off for the whole process (overrides the environment).
inline void set_check_numerics(bool on) noexcept {
  detail::g_check_numerics.store(on ? 1 : 0, std::memory_order_relaxed);
}

/// Switches check mode on (or off) for its lifetime and restores the previous state.
/// Scopes on different threads race on the one process-wide switch; use one at a time.
class numerics_check_scope {
public:
  explicit numerics_check_scope(bool on = true) : m_previous(check_numerics()) { set_check_numerics(on); }
  ~numerics_check_scope() { set_check_numerics(m_previous); }
  numerics_check_scope(const numerics_check_scope&) = delete;
  numerics_check_scope& operator=(const numerics_check_scope&) = delete;

private:
  bool m_previous;
};

namespace detail {

/// Where the first non-finite entry of a tensor is (row-major order) and what it holds.
struct non_finite_entry {
  bool found = false;
  index row = 0;
  index col = 0;
  double value = 0;
};

/// "NaN", "+Inf", "-Inf", or the number.
inline std::string finite_or_not(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return std::to_string(v);
}

/// The first non-finite entry of @p m in row-major order, if any. A vectorised test of the
/// whole tensor first; the scalar search runs only on failure.
template <typename Derived>
non_finite_entry first_non_finite(const Eigen::DenseBase<Derived>& m) {
  non_finite_entry e;
  if (m.allFinite()) return e;
  for (index r = 0; r < m.rows(); ++r)
    for (index c = 0; c < m.cols(); ++c) {
      const auto v = m(r, c);
      if (!std::isfinite(v)) {
        e.found = true;
        e.row = r;
        e.col = c;
        e.value = static_cast<double>(v);
        return e;
      }
    }
  return e;
}

/// The message for a non-finite entry: "what: expected finite, got NaN at row r, column c".
inline std::string non_finite_message(const std::string& what, const non_finite_entry& e) {
  return what + ": expected finite, got " + finite_or_not(e.value) + " at row " + std::to_string(e.row) +
         ", column " + std::to_string(e.col);
}

/// Throws `numeric_error` naming @p what and the first non-finite entry of @p m.
/// @param what  "where: tensor", e.g. "encoder::forward: layer 3 attention scores"
/// @throws numeric_error if an entry of @p m is NaN or infinite
template <typename Derived>
void check_finite(const Eigen::DenseBase<Derived>& m, const std::string& what) {
  const non_finite_entry e = first_non_finite(m);
  if (e.found) throw numeric_error(non_finite_message(what, e));
}

/// As `check_finite`, but the name is built by @p name() only when an entry is not finite
/// (no string is made on the common, finite path).
template <typename Derived, typename NameFn>
void check_finite_lazy(const Eigen::DenseBase<Derived>& m, NameFn&& name) {
  const non_finite_entry e = first_non_finite(m);
  if (e.found) throw numeric_error(non_finite_message(name(), e));
}

/// Checks every block of a parameter store's gradient, naming the block.
/// @throws numeric_error "where: gradient of parameter 'name': expected finite, got NaN at row r, column c"
template <typename Scalar>
void check_finite_grads(const parameter_store<Scalar>& store, const char* where) {
  if (store.grads().allFinite()) return;
  for (index i = 0; i < store.num_blocks(); ++i) {
    const non_finite_entry e = first_non_finite(store.grad(i));
    if (e.found)
      throw numeric_error(non_finite_message(
          std::string(where) + ": gradient of parameter '" + store.block(i).name + "'", e));
  }
}

}  // namespace detail
}  // namespace peft

#endif  // PEFT_CORE_NUMERICS_HPP
