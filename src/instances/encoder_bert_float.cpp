// SPDX-License-Identifier: Apache-2.0
// peft::instances: encoder<bert, float> with every built-in policy.
#include "common.hpp"

namespace peft {
PEFT_SRC_ENCODER_ALL_POLICIES(bert, float)
}  // namespace peft
