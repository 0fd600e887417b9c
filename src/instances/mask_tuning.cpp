// SPDX-License-Identifier: Apache-2.0
// peft::instances: the mask_tuning policy: its class (float, double), the encoder with it (every
// architecture, float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, mask_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(, mask_tuning, double)
PEFT_INSTANCES_ENCODER(, mask_tuning)
PEFT_INSTANCES_TASKS(, mask_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, mask_tuning<float>)
}  // namespace peft
