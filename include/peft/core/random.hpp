// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_RANDOM_HPP
#define PEFT_CORE_RANDOM_HPP

/// @file random.hpp
/// One seeded generator type for everything random in peft (initialisation, dropout,
/// sampling), so that a seed reproduces a run exactly.

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "types.hpp"

namespace peft {

/// SplitMix64's finaliser: a bijective mix of 64 bits, used for counter-based draws.
inline std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Seeded pseudo-random generator. Distributions are computed here rather than with
/// `std::*_distribution`, whose output differs between standard libraries.
class rng {
public:
  explicit rng(std::uint64_t seed = 0x5eed) : m_engine(seed) {}

  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(m_engine() >> 11) * 0x1.0p-53; }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) {
    PEFT_ASSERT(n > 0);
    // Rejection sampling keeps the result unbiased.
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do {
      x = m_engine();
    } while (x >= limit);
    return x % n;
  }
  /// Standard normal (Box-Muller, one value per call).
  double normal() {
    double u1;
    do {
      u1 = uniform();
    } while (u1 <= 0.0);
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Normal truncated to [-2σ, 2σ] by re-drawing, as truncated-normal initialisers do.
  double truncated_normal(double stddev) {
    double x;
    do {
      x = normal();
    } while (x < -2.0 || x > 2.0);
    return x * stddev;
  }
  std::mt19937_64& engine() noexcept { return m_engine; }
  const std::mt19937_64& engine() const noexcept { return m_engine; }

  /// Per-example keys for dropout (empty: off). When set, `ops::make_dropout_mask` takes one
  /// draw from this generator per mask and derives every entry from that draw, the key of the
  /// example the row belongs to, the row's place inside the example and the column. A mask
  /// then does not depend on which other examples share the batch, so data-parallel ranks
  /// holding parts of a batch draw the masks one process holding all of it would.
  void set_example_keys(std::vector<std::uint64_t> keys) { m_keys = std::move(keys); }
  const std::vector<std::uint64_t>& example_keys() const noexcept { return m_keys; }

private:
  std::mt19937_64 m_engine;
  std::vector<std::uint64_t> m_keys;
};

}  // namespace peft

#endif  // PEFT_CORE_RANDOM_HPP
