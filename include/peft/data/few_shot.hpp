// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_FEW_SHOT_HPP
#define PEFT_DATA_FEW_SHOT_HPP

/// @file few_shot.hpp
/// Seeded few-shot splits of a dataset: a small labelled training split, an unlabelled pool
/// (for self-training) and an optional held-back test split, pairwise disjoint.
///
/// Two ways to count K, as the literature does:
/// - `shots_mode::per_class` (LM-BFF style): K examples of every class (stratified).
/// - `shots_mode::total` (LiST style, METHODS.md §1.1): K rows drawn at random regardless of
///   class, so the split is usually class-imbalanced.
///
/// Steps, each with its own seeded stream (so changing one option does not move the others):
/// 1. test: `test_size` labelled rows drawn uniformly with `test_seed` (default: `seed`). Keep
///    `test_seed` fixed across few-shot seeds to evaluate every seed on the same test split.
/// 2. labelled: K per class (classes in the canonical label order of label_map) or K in total,
///    drawn from the labelled rows not in the test split, with `seed`.
/// 3. pool: every row in neither split (unlabelled rows included), optionally capped at
///    `pool_size` by a uniform draw with `seed`.
/// Index lists come back sorted ascending. `peft::rng` (mt19937_64 plus its own integer
/// sampling) makes a seed give the same split on every platform.

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../core/random.hpp"
#include "../error.hpp"
#include "dataset.hpp"
#include "label_map.hpp"

namespace peft {

/// How the K of a few-shot split counts examples.
enum class shots_mode { per_class, total };

/// Options of sample_few_shot().
struct few_shot_options {
  std::size_t shots = 16;                   ///< K (>= 1)
  shots_mode mode = shots_mode::per_class;  ///< K per class or K in total
  std::uint64_t seed = 1;                   ///< seed of the labelled split and of the pool cap
  std::size_t test_size = 0;                ///< labelled rows held back for testing (0: none)
  std::optional<std::uint64_t> test_seed;   ///< seed of the test split (unset: `seed`)
  std::optional<std::size_t> pool_size;     ///< cap on the unlabelled pool (unset: all the rest)
};

/// Indices (sorted ascending) of the three disjoint parts of a few-shot split.
struct few_shot_split {
  std::vector<std::size_t> labeled;    ///< the K-shot training examples
  std::vector<std::size_t> unlabeled;  ///< the pool; use its texts only
  std::vector<std::size_t> test;       ///< held-back labelled examples
};

namespace detail {
/// Seed of an independent stream `stream` derived from `seed` (SplitMix64 finaliser).
inline std::uint64_t few_shot_stream(std::uint64_t seed, std::uint64_t stream) noexcept {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
/// Moves a uniform random `k`-subset of `items` to its front (partial Fisher-Yates) and keeps it.
inline void few_shot_pick(std::vector<std::size_t>& items, std::size_t k, rng& gen) {
  PEFT_ASSERT(k <= items.size());
  for (std::size_t j = 0; j < k; ++j) {
    const auto r = j + static_cast<std::size_t>(gen.below(static_cast<std::uint64_t>(items.size() - j)));
    std::swap(items[j], items[r]);
  }
  items.resize(k);
}
}  // namespace detail

/// Splits `data` into a K-shot labelled split, an unlabelled pool and an optional test split
/// (see the file comment for the exact procedure). Deterministic for given options.
/// @throws peft::invalid_argument if `shots` is 0, `data` has no labelled example, `test_size`
///         exceeds the labelled rows, or there are fewer than K labelled rows (in total, or in
///         some class for per-class sampling, naming the class) left after the test split.
inline few_shot_split sample_few_shot(const dataset& data, const few_shot_options& opt) {
  static const char* where = "sample_few_shot";
  if (opt.shots == 0) throw invalid_argument(detail::expected_got(where, "shots", ">= 1", opt.shots));
  std::vector<std::size_t> labelled;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data[i].label) labelled.push_back(i);
  }
  if (labelled.empty()) {
    throw invalid_argument(std::string(where) + ": labelled examples expected at least " +
                           std::to_string(opt.shots) + ", got none among " + std::to_string(data.size()) +
                           " examples");
  }
  if (opt.test_size > labelled.size()) {
    throw invalid_argument(std::string(where) + ": test_size expected at most the " +
                           std::to_string(labelled.size()) + " labelled examples, got " +
                           std::to_string(opt.test_size));
  }
  std::vector<char> taken(data.size(), 0);
  few_shot_split out;
  // 1. Test split.
  if (opt.test_size > 0) {
    rng gen(detail::few_shot_stream(opt.test_seed.value_or(opt.seed), 0));
    std::vector<std::size_t> pick = labelled;
    detail::few_shot_pick(pick, opt.test_size, gen);
    for (std::size_t i : pick) taken[i] = 1;
    out.test = std::move(pick);
  }
  // 2. Labelled split.
  rng gen(detail::few_shot_stream(opt.seed, 1));
  if (opt.mode == shots_mode::total) {
    std::vector<std::size_t> cand;
    for (std::size_t i : labelled) {
      if (!taken[i]) cand.push_back(i);
    }
    if (cand.size() < opt.shots) {
      throw invalid_argument(std::string(where) +
                             ": labelled examples (outside the test split) expected at least " +
                             std::to_string(opt.shots) + ", got " + std::to_string(cand.size()));
    }
    detail::few_shot_pick(cand, opt.shots, gen);
    out.labeled = std::move(cand);
  } else {
    std::map<std::string, std::vector<std::size_t>> by_class;
    for (std::size_t i : labelled) {
      if (!taken[i]) by_class[*data[i].label].push_back(i);
    }
    std::vector<std::string> classes;
    for (const auto& ex : data) {
      if (ex.label) classes.push_back(*ex.label);
    }
    const label_map order = label_map::from_labels(std::move(classes));
    for (const auto& cls : order.labels()) {
      auto& cand = by_class[cls];
      if (cand.size() < opt.shots) {
        throw invalid_argument(std::string(where) + ": examples of class \"" + cls +
                               "\" (outside the test split) expected at least " + std::to_string(opt.shots) +
                               ", got " + std::to_string(cand.size()));
      }
      detail::few_shot_pick(cand, opt.shots, gen);
      out.labeled.insert(out.labeled.end(), cand.begin(), cand.end());
    }
  }
  for (std::size_t i : out.labeled) taken[i] = 1;
  // 3. Pool.
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (!taken[i]) out.unlabeled.push_back(i);
  }
  if (opt.pool_size && *opt.pool_size < out.unlabeled.size()) {
    rng pool_gen(detail::few_shot_stream(opt.seed, 2));
    detail::few_shot_pick(out.unlabeled, *opt.pool_size, pool_gen);
  }
  std::sort(out.labeled.begin(), out.labeled.end());
  std::sort(out.unlabeled.begin(), out.unlabeled.end());
  std::sort(out.test.begin(), out.test.end());
  return out;
}

/// The pool's examples with their labels removed (what self-training may look at).
inline dataset unlabeled_subset(const dataset& data, const std::vector<std::size_t>& indices) {
  dataset out = subset(data, indices);
  for (auto& ex : out) ex.label.reset();
  return out;
}

}  // namespace peft

#endif  // PEFT_DATA_FEW_SHOT_HPP
