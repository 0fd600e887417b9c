// SPDX-License-Identifier: Apache-2.0
// peft::instances: the full_finetune policy: its class (float, double), the encoder with it (every
// architecture, float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, full_finetune, float)
PEFT_INSTANCES_POLICY_CLASS(, full_finetune, double)
PEFT_INSTANCES_ENCODER(, full_finetune)
PEFT_INSTANCES_TASKS(, full_finetune<float>)
PEFT_INSTANCES_POLICY_IO(, full_finetune<float>)
}  // namespace peft
