// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_BATCHING_HPP
#define PEFT_DATA_BATCHING_HPP

/// @file batching.hpp
/// Which examples go into which batch. Batches are padded to their longest sequence, so
/// training groups examples of similar token length (less padding, less work) while keeping
/// the order random; evaluation goes through the data in order.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "../core/random.hpp"
#include "../error.hpp"

namespace peft {

/// Batches of consecutive indices `[0, b)`, `[b, 2b)`, ..., the last one possibly shorter:
/// for evaluation and prediction, where outputs must follow the input order.
/// @throws peft::invalid_argument if `batch_size` is 0.
inline std::vector<std::vector<std::size_t>> sequential_batches(std::size_t n, std::size_t batch_size) {
  if (batch_size == 0)
    throw invalid_argument(detail::expected_got("sequential_batches", "batch_size", ">= 1", 0));
  std::vector<std::vector<std::size_t>> out;
  out.reserve((n + batch_size - 1) / batch_size);
  for (std::size_t start = 0; start < n; start += batch_size) {
    std::vector<std::size_t> b(std::min(batch_size, n - start));
    std::iota(b.begin(), b.end(), start);
    out.push_back(std::move(b));
  }
  return out;
}

/// Training batches of similar length, reshuffled every epoch.
///
/// For epoch `e`: shuffle all indices with a generator seeded from (`seed`, `e`); cut the
/// permutation into chunks of `batch_size * bucket_batches`; sort each chunk by length (stable,
/// so equal lengths stay in random order) and cut it into batches; shuffle the order of all
/// batches. Every index appears exactly once per epoch. With `drop_last`, a final batch smaller
/// than `batch_size` is dropped. `bucket_batches = 1` gives batches of random composition but
/// sorted within; larger values trade randomness for less padding.
class length_batch_sampler {
public:
  /// @param lengths token length of every example (as fed to the encoder)
  /// @throws peft::invalid_argument if `lengths` is empty or `batch_size` or `bucket_batches` is 0.
  length_batch_sampler(std::vector<std::size_t> lengths, std::size_t batch_size, std::uint64_t seed,
                       std::size_t bucket_batches = 50, bool drop_last = false)
      : m_lengths(std::move(lengths)),
        m_batch(batch_size),
        m_bucket(bucket_batches),
        m_seed(seed),
        m_drop_last(drop_last) {
    static const char* where = "length_batch_sampler::length_batch_sampler";
    if (m_lengths.empty())
      throw invalid_argument(std::string(where) + ": examples expected at least 1, got 0");
    if (m_batch == 0) throw invalid_argument(detail::expected_got(where, "batch_size", ">= 1", 0));
    if (m_bucket == 0) throw invalid_argument(detail::expected_got(where, "bucket_batches", ">= 1", 0));
  }

  /// Index batches of epoch `e` (0-based); the same for the same seed and `e`.
  std::vector<std::vector<std::size_t>> epoch(std::uint64_t e) const {
    rng gen(mix(m_seed, e));
    const std::size_t n = m_lengths.size();
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    for (std::size_t i = n; i > 1; --i) {
      const auto j = static_cast<std::size_t>(gen.below(i));
      std::swap(perm[i - 1], perm[j]);
    }
    const std::size_t chunk = m_batch * m_bucket;
    std::vector<std::vector<std::size_t>> batches;
    batches.reserve((n + m_batch - 1) / m_batch);
    for (std::size_t start = 0; start < n; start += chunk) {
      const auto first = perm.begin() + static_cast<std::ptrdiff_t>(start);
      const auto last = perm.begin() + static_cast<std::ptrdiff_t>(std::min(n, start + chunk));
      std::stable_sort(first, last,
                       [&](std::size_t a, std::size_t b) { return m_lengths[a] < m_lengths[b]; });
      for (auto it = first; it < last; it += static_cast<std::ptrdiff_t>(std::min<std::size_t>(
                                           m_batch, static_cast<std::size_t>(last - it)))) {
        const auto end = it + static_cast<std::ptrdiff_t>(
                                  std::min<std::size_t>(m_batch, static_cast<std::size_t>(last - it)));
        batches.emplace_back(it, end);
      }
    }
    if (m_drop_last && !batches.empty() && batches.back().size() < m_batch) batches.pop_back();
    for (std::size_t i = batches.size(); i > 1; --i) {
      const auto j = static_cast<std::size_t>(gen.below(i));
      std::swap(batches[i - 1], batches[j]);
    }
    return batches;
  }

  /// Number of examples.
  std::size_t size() const noexcept { return m_lengths.size(); }
  /// Number of batches per epoch.
  std::size_t num_batches() const noexcept {
    const std::size_t n = m_lengths.size();
    return m_drop_last ? n / m_batch : (n + m_batch - 1) / m_batch;
  }
  std::size_t batch_size() const noexcept { return m_batch; }
  const std::vector<std::size_t>& lengths() const noexcept { return m_lengths; }

private:
  static std::uint64_t mix(std::uint64_t seed, std::uint64_t e) noexcept {
    std::uint64_t z = seed ^ (0x9E3779B97F4A7C15ULL * (e + 1));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  std::vector<std::size_t> m_lengths;
  std::size_t m_batch, m_bucket;
  std::uint64_t m_seed;
  bool m_drop_last;
};

}  // namespace peft

#endif  // PEFT_DATA_BATCHING_HPP
