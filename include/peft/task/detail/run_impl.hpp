// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_DETAIL_RUN_IMPL_HPP
#define PEFT_TASK_DETAIL_RUN_IMPL_HPP

/// @file run_impl.hpp
/// The definitions of run.hpp's entry points: each picks the architecture from the model's
/// model_type and calls that architecture's template (run_arch.hpp). Included by run.hpp
/// (header-only use), or, with PEFT_TASK_SEPARATE defined, in exactly one file, which then
/// finds each architecture's instance in a file of its own (PEFT_TASK_RUN_INSTANCES).

#include "../run.hpp"
#include "run_arch.hpp"

#if defined(PEFT_TASK_SEPARATE)
PEFT_TASK_RUN_INSTANCES(extern, peft::bert)
PEFT_TASK_RUN_INSTANCES(extern, peft::roberta)
PEFT_TASK_RUN_INSTANCES(extern, peft::use_lite)
#endif

namespace peft::task {

PEFT_TASK_API run_result train_task(const model_files& m, const task_settings& s, peft::index classes,
                                    const std::vector<std::int32_t>& label_words,
                                    const std::vector<peft::encoded_example>& train,
                                    const std::vector<peft::encoded_example>& dev,
                                    const std::vector<peft::encoded_example>& test,
                                    const peft::fit_options& fit, std::uint64_t seed) {
  return with_arch(m.model_type, [&](auto arch) {
    return detail::train_task_for<decltype(arch)>(m, s, classes, label_words, train, dev, test, fit, seed);
  });
}

PEFT_TASK_API run_result train_list_task(const model_files& m, const task_settings& s, peft::index classes,
                                         const std::vector<std::int32_t>& label_words,
                                         const std::vector<peft::encoded_example>& train,
                                         const std::vector<peft::encoded_example>& pool,
                                         const std::vector<peft::encoded_example>& test,
                                         const peft::list_options& list) {
  return with_arch(m.model_type, [&](auto arch) {
    return detail::train_list_task_for<decltype(arch)>(m, s, classes, label_words, train, pool, test, list);
  });
}

PEFT_TASK_API run_result train_mpmp_task(const model_files& m, const task_settings& s,
                                         const peft::label_map& labels,
                                         const std::vector<peft::encoded_example>& train,
                                         const std::vector<peft::encoded_example>& dev,
                                         const std::vector<peft::encoded_example>& test,
                                         const mpmp_settings& mp, std::uint64_t seed) {
  return with_arch(m.model_type, [&](auto arch) {
    return detail::train_mpmp_task_for<decltype(arch)>(m, s, labels, train, dev, test, mp, seed);
  });
}

PEFT_TASK_API run_result predict_task(const model_files& m, const task_settings& s, peft::index classes,
                                      const std::vector<std::int32_t>& label_words,
                                      const std::string& policy_dir, const std::string& head_path,
                                      const std::vector<peft::encoded_example>& data,
                                      const peft::task_objective& objective) {
  return with_arch(m.model_type, [&](auto arch) {
    return detail::predict_task_for<decltype(arch)>(m, s, classes, label_words, policy_dir, head_path, data,
                                                    objective);
  });
}

}  // namespace peft::task

#endif  // PEFT_TASK_DETAIL_RUN_IMPL_HPP
