// SPDX-License-Identifier: Apache-2.0
// peft::instances: encoder<use_lite, float> with every built-in policy.
#include "common.hpp"

namespace peft {
PEFT_SRC_ENCODER_ALL_POLICIES(use_lite, float)
}  // namespace peft
