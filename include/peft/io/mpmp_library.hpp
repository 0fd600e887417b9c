// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_MPMP_LIBRARY_HPP
#define PEFT_IO_MPMP_LIBRARY_HPP

/// @file mpmp_library.hpp
/// The MPMP prompt library on disk: a pre-trained `modular_prompt` (one router row per
/// upstream task) and its heads, in one of two forms:
///  - `head == "task"`: each upstream task's classification head and its label names, so that
///    a downstream task can start from the head of an upstream task with the same labels;
///  - `head == "span"`: one span head shared by every task, which read their labels as options
///    (the reference's form; text/label_options.hpp), so that any downstream task starts from it.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/limits.hpp"
#include "../error.hpp"
#include "../policies/modular_prompt.hpp"
#include "../policies/policy_tensors.hpp"
#include "adapter_checkpoint.hpp"
#include "../core/file_util.hpp"
#include "safetensors.hpp"

namespace peft {

/// A pre-trained prompt library on disk: folder `dir` with
///  - `adapter_config.json` + `adapter_model.safetensors`: the `modular_prompt` (`save_policy`);
///  - `heads.safetensors`: each upstream task's head, tensors `<task>/<block>`, or the shared
///    span head, tensors `span/<block>`;
///  - `library.json`: the head form, the tasks in router order, each with its label names, head
///    pooling and (span head) the option texts of its labels, and the placeholder id.
/// `save` writes a complete new folder next to @p dir and swaps it in, so a failed save leaves
/// the previous library as it was.
struct mpmp_library_task {
  std::string name;
  std::vector<std::string> labels;  ///< label names in class-id order
  std::string pooling;              ///< classification head pooling (to_string(pool_kind))
  std::vector<std::string> options{};  ///< span head: each label written as an option, in label order
};

inline constexpr const char* mpmp_task_heads = "task";  ///< a classification head per task
inline constexpr const char* mpmp_span_head = "span";   ///< one span head over label options

struct mpmp_library_info {
  std::vector<mpmp_library_task> tasks;
  std::int32_t placeholder_id = mpmp_placeholder_id;
  std::string head = mpmp_task_heads;  ///< mpmp_task_heads or mpmp_span_head
  nlohmann::json extra;  ///< free-form provenance (settings, dev accuracies)

  bool span_head() const { return head == mpmp_span_head; }

  /// Index of the first task whose label names equal @p labels (same order), or -1.
  index head_for(const std::vector<std::string>& labels) const {
    for (std::size_t t = 0; t < tasks.size(); ++t)
      if (tasks[t].labels == labels) return static_cast<index>(t);
    return -1;
  }
  index find(const std::string& name) const {
    for (std::size_t t = 0; t < tasks.size(); ++t)
      if (tasks[t].name == name) return static_cast<index>(t);
    return -1;
  }
};

inline constexpr const char* mpmp_library_file = "library.json";
inline constexpr const char* mpmp_heads_file = "heads.safetensors";

/// Saves a library (see `mpmp_library_info`).
/// @throws peft::invalid_argument when heads and tasks disagree; peft::io_error when writing
///   fails (the previous library at @p dir is then unchanged)
template <typename Scalar, typename Head>
void save_mpmp_library(const std::string& dir, const modular_prompt<Scalar>& policy, const std::vector<Head>& heads,
                       const mpmp_library_info& info) {
  namespace fs = std::filesystem;
  const std::string where = "save_mpmp_library";
  const bool span = info.span_head();
  if (!span && info.head != mpmp_task_heads)
    throw invalid_argument(where + ": head expected \"task\" or \"span\", got '" + info.head + "'");
  const std::size_t want_heads = span ? 1 : info.tasks.size();
  if (heads.size() != want_heads || policy.num_tasks() != static_cast<index>(info.tasks.size()))
    throw invalid_argument(where + ": expected " + (span ? "one shared span head" : "one head") +
                           " and one router row per task (" + std::to_string(info.tasks.size()) + " tasks), got " +
                           std::to_string(heads.size()) + " heads and " + std::to_string(policy.num_tasks()) +
                           " router rows");
  std::map<std::string, tensor> ht;
  for (std::size_t t = 0; t < info.tasks.size(); ++t) {
    const auto& task = info.tasks[t];
    if (task.name.empty() || task.name.find('/') != std::string::npos)
      throw invalid_argument(where + ": task name expected non-empty without '/', got '" + task.name + "'");
    if (span && task.options.size() != task.labels.size())
      throw invalid_argument(where + ": task '" + task.name + "' expected an option per label (" +
                             std::to_string(task.labels.size()) + "), got " + std::to_string(task.options.size()));
    if (!span && static_cast<index>(task.labels.size()) != heads[t].num_classes())
      throw invalid_argument(where + ": task '" + task.name + "' has " + std::to_string(task.labels.size()) +
                             " labels but its head " + std::to_string(heads[t].num_classes()) + " classes");
    if (!span)
      for (auto& kv : store_tensors(heads[t].parameters())) ht.emplace(task.name + "/" + kv.first, std::move(kv.second));
  }
  if (span) {
    if (heads[0].num_classes() != 2)
      throw invalid_argument(where + ": the span head expected 2 outputs (start, end), got " +
                             std::to_string(heads[0].num_classes()));
    for (auto& kv : store_tensors(heads[0].parameters()))
      ht.emplace(std::string(mpmp_span_head) + "/" + kv.first, std::move(kv.second));
  }
  nlohmann::json j;
  j["format"] = "peft-mpmp-library";
  j["version"] = 1;
  j["placeholder_id"] = info.placeholder_id;
  j["head"] = info.head;
  j["tasks"] = nlohmann::json::array();
  for (const auto& t : info.tasks) {
    j["tasks"].push_back({{"name", t.name}, {"labels", t.labels}, {"pooling", t.pooling}});
    if (span) j["tasks"].back()["options"] = t.options;
  }
  j["extra"] = info.extra.is_null() ? nlohmann::json::object() : info.extra;

  const fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  const fs::path parent = target.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw io_error(where + ": cannot create folder '" + parent.string() + "': " + ec.message());
  const fs::path stage = parent / (target.filename().string() + ".tmp." + std::to_string(detail::process_id()));
  const fs::path old = parent / (target.filename().string() + ".old." + std::to_string(detail::process_id()));
  fs::remove_all(stage, ec);
  try {
    save_policy(stage.string(), policy);
    save_safetensors((stage / mpmp_heads_file).string(), ht, {{"format", "pt"}});
    atomic_write((stage / mpmp_library_file).string(), j.dump(2) + "\n");
  } catch (...) {
    fs::remove_all(stage, ec);
    throw;
  }
  fs::remove_all(old, ec);
  const bool had = fs::exists(target, ec);
  if (had) {
    fs::rename(target, old, ec);
    if (ec) {
      fs::remove_all(stage, ec);
      throw io_error(where + ": cannot move the previous library '" + target.string() + "' aside");
    }
  }
  fs::rename(stage, target, ec);
  if (ec) {
    const std::string msg = ec.message();
    if (had) fs::rename(old, target, ec);
    fs::remove_all(stage, ec);
    throw io_error(where + ": cannot move the new library into '" + target.string() + "': " + msg);
  }
  if (had) fs::remove_all(old, ec);
}

/// Reads `library.json` of the library at @p dir.
/// @throws peft::io_error for a missing or malformed file (naming the field)
inline mpmp_library_info read_mpmp_library_info(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / mpmp_library_file).string();
  const std::string where = "read_mpmp_library_info: '" + path + "'";
  nlohmann::json j;
  try {
    j = detail::parse_json_limited(detail::read_file(path, "read_mpmp_library_info"), where);
  } catch (const nlohmann::json::exception& e) {
    throw io_error(where + ": not valid JSON (" + e.what() + ")");
  }
  mpmp_library_info info;
  try {
    if (j.at("format").get<std::string>() != "peft-mpmp-library")
      throw io_error(where + ": field 'format' expected \"peft-mpmp-library\", got " + j.at("format").dump());
    const nlohmann::json& pid = j.at("placeholder_id");
    // get<int32_t> on a float or a wide integer would convert out of range (undefined).
    if (!detail::json_to_integer(pid, info.placeholder_id) || info.placeholder_id < 0)
      throw io_error(where + ": field 'placeholder_id' expected an integer in [0, 2^31), got " + pid.dump());
    for (const auto& t : j.at("tasks")) {
      mpmp_library_task task;
      task.name = t.at("name").get<std::string>();
      task.labels = t.at("labels").get<std::vector<std::string>>();
      task.pooling = t.at("pooling").get<std::string>();
      if (t.contains("options")) task.options = t.at("options").get<std::vector<std::string>>();
      info.tasks.push_back(std::move(task));
    }
    // Libraries written before the span head had a head per task and no "head" field.
    if (j.contains("head")) info.head = j.at("head").get<std::string>();
    if (info.head != mpmp_task_heads && info.head != mpmp_span_head)
      throw io_error(where + ": field 'head' expected \"task\" or \"span\", got \"" + info.head + "\"");
    for (const auto& t : info.tasks)
      if (info.span_head() && t.options.size() != t.labels.size())
        throw io_error(where + ": task '" + t.name + "' field 'options' expected one per label (" +
                       std::to_string(t.labels.size()) + "), got " + std::to_string(t.options.size()));
    if (j.contains("extra")) info.extra = j["extra"];
  } catch (const nlohmann::json::exception& e) {
    throw io_error(where + ": " + e.what());
  }
  if (info.tasks.empty()) throw io_error(where + ": field 'tasks' expected >= 1 task, got 0");
  if (info.placeholder_id < 0) throw io_error(where + ": field 'placeholder_id' expected >= 0");
  return info;
}

/// Loads the modular prompt of the library at @p dir for an encoder of shape @p shape.
template <typename Scalar>
modular_prompt<Scalar> load_mpmp_library_policy(const std::string& dir, const encoder_shape& shape) {
  return load_policy<modular_prompt<Scalar>>(dir, shape);
}

/// Loads the head of library task @p task into @p head (same classes and width); in a span
/// library, @p task `mpmp_span_head` is the shared span head (2 outputs, pooling `tokens`).
/// @throws peft::io_error / peft::invalid_argument naming the file and tensor
template <typename Head>
void load_mpmp_library_head(const std::string& dir, const std::string& task, Head& head) {
  const std::string path = (std::filesystem::path(dir) / mpmp_heads_file).string();
  const auto f = safetensors_file::open(path);
  std::map<std::string, tensor> t;
  const std::string prefix = task + "/";
  for (const auto& n : f.names())
    if (n.compare(0, prefix.size(), prefix) == 0) t[n.substr(prefix.size())] = f.load(n);
  if (t.empty()) throw invalid_argument("load_mpmp_library_head: '" + path + "' has no head for task '" + task + "'");
  load_store_tensors(head.parameters(), t, "load_mpmp_library_head: '" + path + "' task '" + task + "'");
}

}  // namespace peft

#endif  // PEFT_IO_MPMP_LIBRARY_HPP
