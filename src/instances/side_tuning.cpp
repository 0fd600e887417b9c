// SPDX-License-Identifier: Apache-2.0
// peft::instances: the side_tuning policy: its class (float, double), the encoder with it (every
// architecture, float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/side_tuning.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, side_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(, side_tuning, double)
PEFT_INSTANCES_ENCODER(, side_tuning)
PEFT_INSTANCES_TASKS(, side_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, side_tuning<float>)
}  // namespace peft
