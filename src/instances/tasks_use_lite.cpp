// SPDX-License-Identifier: Apache-2.0
// peft::instances: float tasks (task_model, fit, predict_classes, evaluate) on use_lite.
#include "common.hpp"

namespace peft {
PEFT_SRC_TASKS_ALL_POLICIES(use_lite, classification_head<float>)

}  // namespace peft
