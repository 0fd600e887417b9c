// SPDX-License-Identifier: Apache-2.0
// peft::instances: float tasks (task_model, fit, predict_classes, evaluate) on roberta.
#include "common.hpp"

namespace peft {
PEFT_SRC_TASKS_ALL_POLICIES(roberta, classification_head<float>)

}  // namespace peft
