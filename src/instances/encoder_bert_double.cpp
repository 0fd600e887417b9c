// SPDX-License-Identifier: Apache-2.0
// peft::instances: encoder<bert, double> with every built-in policy.
#include "common.hpp"

namespace peft {
PEFT_SRC_ENCODER_ALL_POLICIES(bert, double)
}  // namespace peft
