// SPDX-License-Identifier: Apache-2.0
// The task runtime (task_runtime.hpp) instantiated for use_lite.
#include "task_runtime.hpp"

namespace task {
PEFT_EXAMPLES_TASK_RUNTIME(, peft::use_lite)
}  // namespace task
