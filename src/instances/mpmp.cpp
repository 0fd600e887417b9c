// SPDX-License-Identifier: Apache-2.0
// peft::instances: MPMP's phases (pre-training, two-stage tuning, black-box tuning) in float with a
// classification head on every architecture.
#include <peft/train/mpmp.hpp>

namespace peft {
PEFT_INSTANCES_MPMP_ALL()
}  // namespace peft
