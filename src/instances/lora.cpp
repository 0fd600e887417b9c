// SPDX-License-Identifier: Apache-2.0
// peft::instances: the lora policy: its class (float, double), the encoder with it (every architecture,
// float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/lora.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, lora, float)
PEFT_INSTANCES_POLICY_CLASS(, lora, double)
PEFT_INSTANCES_ENCODER(, lora)
PEFT_INSTANCES_TASKS(, lora<float>)
PEFT_INSTANCES_POLICY_IO(, lora<float>)
}  // namespace peft
