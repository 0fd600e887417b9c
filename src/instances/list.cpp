// SPDX-License-Identifier: Apache-2.0
// peft::instances: LiST's self-trainer as peft-train runs it (LiST adapters with a
// classification head on every architecture, with the prompt head on BERT).
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/train/self_training.hpp>

namespace peft {
PEFT_INSTANCES_SELF_TRAINERS()
}  // namespace peft
