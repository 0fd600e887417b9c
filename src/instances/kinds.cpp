// SPDX-License-Identifier: Apache-2.0
// peft::instances: every task kind's loss and evaluation (task/kinds.hpp) in float and double,
// with the metrics they call, compiled here once instead of in each file that instantiates fit.
#include <peft/task/kinds.hpp>

namespace peft {
PEFT_INSTANCES_TASK_KINDS(, float)
PEFT_INSTANCES_TASK_KINDS(, double)
}  // namespace peft
