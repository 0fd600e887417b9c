// SPDX-License-Identifier: Apache-2.0
// peft::instances: the heads and the training loop of fit, in float and double.
#include "common.hpp"

namespace peft {
PEFT_INSTANCES_HEADS(, float)
PEFT_INSTANCES_HEADS(, double)
PEFT_INSTANCES_FIT_LOOP(, float)
PEFT_INSTANCES_FIT_LOOP(, double)
}  // namespace peft
