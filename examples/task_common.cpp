// SPDX-License-Identifier: Apache-2.0
// What the example programs add to the library's task layer: opening a task folder named on a
// command line.
#include "task_common.hpp"

namespace task {

saved_task open_task(const model_files& m, const std::string& dir, const bare_task_options& bare,
                     const std::string& where) {
  const bool described = !bare.head.empty() || !bare.labels.empty() || !bare.pooling.empty() || bare.max_length > 0;
  if (has_saved_task(dir)) {
    if (described)
      throw usage_error(where + "--head, --labels, --pooling and --max-length go with a bare adapter folder; '" + dir +
                        "' holds a saved task (task.json)");
    return read_saved_task(m, dir, where);
  }
  if (!fs::is_directory(dir)) throw peft::io_error(where + "adapter folder '" + dir + "' does not exist");
  // A Hugging Face sequence classifier's folder carries its head (modules_to_save), and its
  // model's config.json may name the classes (id2label); an AdapterHub folder may carry a head
  // with its class names (head_config.json).
  const bool has_config = fs::exists(fs::path(dir) / peft::adapter_config_file);
  const auto head = bare.head.empty() && has_config ? read_folder_head(dir) : std::nullopt;
  if (bare.head.empty() && !head)
    throw usage_error(where + "'" + dir +
                      "' has no task.json and saves no classifier (modules_to_save or head_config.json): a bare "
                      "adapter folder needs --head FILE and --labels");
  if (bare.labels.empty() && !(head && !head->labels.empty())) {
    try {
      (void)model_labels(m);
    } catch (const peft::invalid_argument& e) {
      throw usage_error(where + "'" + dir + "' has no task.json and the model names no classes: --labels is needed (" +
                        e.what() + ")");
    }
  }
  return read_bare_task(m, dir, bare, where);
}

}  // namespace task
