// SPDX-License-Identifier: Apache-2.0
// What the example programs share on top of the library's task layer (peft/task/task.hpp and
// peft/task/run.hpp, reached here as task::...): the command-line helpers and small
// statistics. The task layer itself is compiled once, in peft::instances.
#ifndef PEFT_EXAMPLES_TASK_COMMON_HPP
#define PEFT_EXAMPLES_TASK_COMMON_HPP

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <peft/data/data.hpp>
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/atomic_folder.hpp>
#include <peft/core/file_util.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/mpmp_library.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/methods.hpp>
#include <peft/peft.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/side_tuning.hpp>
#include <peft/text/prompt.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/hf_tokenizer.hpp>
#include <peft/train/mpmp.hpp>
#include <peft/task/run.hpp>
#include <peft/task/task.hpp>
#include <peft/train/trainer.hpp>

#include "cli.hpp"

namespace task {

using namespace peft::task;  // the library's task layer: load_model, encode, train_task, save_task, ...

namespace fs = std::filesystem;


/// The integer in option @p flag's value @p v, which must be >= min.
/// @throws usage_error naming the flag, the bound and the value
inline long to_long(const std::string& flag, const std::string& v, long min) {
  try {
    std::size_t used = 0;
    const long x = std::stol(v, &used);
    if (used == v.size() && x >= min) return x;
  } catch (const std::exception&) {
  }
  throw usage_error(flag + " expects an integer >= " + std::to_string(min) + ", got '" + v + "'");
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
/// Sample standard deviation (n - 1), 0 for fewer than two values.
inline double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

/// The task in @p dir for a program: a saved task, or a bare adapter folder described by @p bare
/// (a folder that does not exist is an io_error; a bare one without --head/--labels, or a
/// saved task given them, is a usage error).
saved_task open_task(const model_files& m, const std::string& dir, const bare_task_options& bare,
                     const std::string& where = "");

}  // namespace task

#endif
