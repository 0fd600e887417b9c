// SPDX-License-Identifier: Apache-2.0
// The task runtime's entry points (task_common.hpp): each picks the model's architecture at
// run time and calls that architecture's instance (task_runtime_<arch>.cpp).
#include "task_runtime.hpp"

namespace task {

PEFT_EXAMPLES_TASK_RUNTIME(extern, peft::bert)
PEFT_EXAMPLES_TASK_RUNTIME(extern, peft::roberta)
PEFT_EXAMPLES_TASK_RUNTIME(extern, peft::use_lite)

run_result train_task(const model_files& m, const task_settings& s, peft::index classes,
                      const std::vector<std::int32_t>& label_words,
                      const std::vector<peft::encoded_example>& train,
                      const std::vector<peft::encoded_example>& dev,
                      const std::vector<peft::encoded_example>& test, const peft::fit_options& fit,
                      std::uint64_t seed) {
  return with_arch(m.model_type, [&](auto arch) {
    return runtime::train_task<decltype(arch)>(m, s, classes, label_words, train, dev, test, fit, seed);
  });
}

run_result train_list_task(const model_files& m, const task_settings& s, peft::index classes,
                           const std::vector<std::int32_t>& label_words,
                           const std::vector<peft::encoded_example>& train,
                           const std::vector<peft::encoded_example>& pool,
                           const std::vector<peft::encoded_example>& test, const peft::list_options& list) {
  return with_arch(m.model_type, [&](auto arch) {
    return runtime::train_list_task<decltype(arch)>(m, s, classes, label_words, train, pool, test, list);
  });
}

run_result train_mpmp_task(const model_files& m, const task_settings& s, const peft::label_map& labels,
                           const std::vector<peft::encoded_example>& train,
                           const std::vector<peft::encoded_example>& dev,
                           const std::vector<peft::encoded_example>& test, const mpmp_settings& mp,
                           std::uint64_t seed) {
  return with_arch(m.model_type, [&](auto arch) {
    return runtime::train_mpmp_task<decltype(arch)>(m, s, labels, train, dev, test, mp, seed);
  });
}

run_result predict_task(const model_files& m, const task_settings& s, peft::index classes,
                        const std::vector<std::int32_t>& label_words, const std::string& policy_dir,
                        const std::string& head_path, const std::vector<peft::encoded_example>& data) {
  return with_arch(m.model_type, [&](auto arch) {
    return runtime::predict_task<decltype(arch)>(m, s, classes, label_words, policy_dir, head_path, data);
  });
}

}  // namespace task
