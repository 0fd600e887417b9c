// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_PROMPT_PLACEHOLDERS_HPP
#define PEFT_TASK_PROMPT_PLACEHOLDERS_HPP

/// @file prompt_placeholders.hpp
/// The input side of modular prompts (MPMP): placeholder ids inserted after the first token of
/// an encoded example, where `modular_prompt` adds its prompt. Training (train/mpmp.hpp) and
/// the saved-task encoding (task/task.hpp) both prepare data this way.

#include <cstdint>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../policies/modular_prompt.hpp"
#include "task_model.hpp"

namespace peft {

/// Inserts @p n placeholder ids (`first_id`, `first_id + 1`, ...) after the first token of
/// @p e, shifting the positions that follow (the mask, an answer's start and end, the label
/// options); the prompt is then added at positions 1..n.
/// @throws peft::invalid_argument for an empty example or n < 1
inline void insert_prompt_placeholders(encoded_example& e, index n, std::int32_t first_id = mpmp_placeholder_id) {
  const char* where = "insert_prompt_placeholders";
  if (n < 1) throw invalid_argument(detail::expected_got(where, "prompt tokens", ">= 1", n));
  if (e.ids.empty()) throw invalid_argument(std::string(where) + ": example expected >= 1 token, got 0");
  std::vector<std::int32_t> ph(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) ph[static_cast<std::size_t>(i)] = first_id + static_cast<std::int32_t>(i);
  e.ids.insert(e.ids.begin() + 1, ph.begin(), ph.end());
  if (!e.segments.empty()) e.segments.insert(e.segments.begin() + 1, ph.size(), e.segments.front());
  if (e.mask_pos >= 1) e.mask_pos += n;
  for (index* p : {&e.start, &e.end})
    if (*p >= 1) *p += n;
  for (auto& [first, last] : e.choices) {
    if (first >= 1) first += n;
    if (last >= 1) last += n;
  }
}

/// A copy of @p data with placeholders inserted in every example.
inline std::vector<encoded_example> with_prompt_placeholders(std::vector<encoded_example> data, index n,
                                                             std::int32_t first_id = mpmp_placeholder_id) {
  for (auto& e : data) insert_prompt_placeholders(e, n, first_id);
  return data;
}

}  // namespace peft

#endif  // PEFT_TASK_PROMPT_PLACEHOLDERS_HPP
