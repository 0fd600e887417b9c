// SPDX-License-Identifier: Apache-2.0
// peft::instances: float tasks (task_model, fit, predict_classes, evaluate) on bert.
#include "common.hpp"

namespace peft {
PEFT_SRC_TASKS_ALL_POLICIES(bert, classification_head<float>)
PEFT_SRC_TASKS_ALL_POLICIES(bert, prompt_head<float>)
}  // namespace peft
