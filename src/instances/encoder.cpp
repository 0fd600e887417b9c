// SPDX-License-Identifier: Apache-2.0
// peft::instances: the encoder classes (every architecture, float and double) and the encoder
// without a policy, the heads, fit's training loop and the head-only float tasks.
#include <peft/model/encoder.hpp>
#include <peft/task/heads.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_FOR_ARCHS(PEFT_INSTANCES_ENCODER_CLASS, )
PEFT_INSTANCES_ENCODER(, no_policy)
PEFT_INSTANCES_HEADS(, float)
PEFT_INSTANCES_HEADS(, double)
PEFT_INSTANCES_FIT_LOOP(, float)
PEFT_INSTANCES_FIT_LOOP(, double)
PEFT_INSTANCES_TASKS(, no_policy<float>)
}  // namespace peft
