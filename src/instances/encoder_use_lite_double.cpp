// SPDX-License-Identifier: Apache-2.0
// peft::instances: encoder<use_lite, double> with every built-in policy.
#include "common.hpp"

namespace peft {
PEFT_SRC_ENCODER_ALL_POLICIES(use_lite, double)
}  // namespace peft
