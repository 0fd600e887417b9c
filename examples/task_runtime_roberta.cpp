// SPDX-License-Identifier: Apache-2.0
// The task runtime (task_runtime.hpp) instantiated for roberta.
#include "task_runtime.hpp"

namespace task {
PEFT_EXAMPLES_TASK_RUNTIME(, peft::roberta)
}  // namespace task
