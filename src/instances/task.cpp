// SPDX-License-Identifier: Apache-2.0
// peft::instances: the task layer (task/task.hpp: model folders, encoding, saved tasks), the
// entry points of task/run.hpp, and the task runtime for bert (training with every registered
// method, LiST, MPMP, prediction and serving, with each kind of head). The other architectures'
// runtimes are in task_<arch>.cpp, which compile in parallel; bert's is here rather than in a
// file of its own because that file would parse the same headers again (about 25 s).
// peft::instances defines PEFT_TASK_SEPARATE for what links it.
#include <peft/task/detail/run_impl.hpp>
#include <peft/task/detail/task_impl.hpp>

PEFT_TASK_RUN_INSTANCES(, peft::bert)
