// SPDX-License-Identifier: Apache-2.0
// peft::instances: the modular_prompt policy: its class (float, double), the encoder with it (every
// architecture, float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, modular_prompt, float)
PEFT_INSTANCES_POLICY_CLASS(, modular_prompt, double)
PEFT_INSTANCES_ENCODER(, modular_prompt)
PEFT_INSTANCES_TASKS(, modular_prompt<float>)
PEFT_INSTANCES_POLICY_IO(, modular_prompt<float>)
}  // namespace peft
