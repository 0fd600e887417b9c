// SPDX-License-Identifier: Apache-2.0
// peft::instances: the task runtime (task/run.hpp) for roberta: training with every registered
// method, LiST, MPMP, prediction and serving of saved tasks, with each kind of head.
#include <peft/task/detail/run_arch.hpp>

PEFT_TASK_RUN_INSTANCES(, peft::roberta)
