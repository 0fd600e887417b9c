// SPDX-License-Identifier: Apache-2.0
// peft::instances: the prompt_tuning policy: its class (float, double), the encoder with it (every architecture,
// float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/prompt_tuning.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, prompt_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(, prompt_tuning, double)
PEFT_INSTANCES_ENCODER(, prompt_tuning)
PEFT_INSTANCES_TASKS(, prompt_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, prompt_tuning<float>)
}  // namespace peft
