// SPDX-License-Identifier: Apache-2.0
// peft::instances: the ia3 policy: its class (float, double), the encoder with it (every architecture,
// float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/ia3.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, ia3, float)
PEFT_INSTANCES_POLICY_CLASS(, ia3, double)
PEFT_INSTANCES_ENCODER(, ia3)
PEFT_INSTANCES_TASKS(, ia3<float>)
PEFT_INSTANCES_POLICY_IO(, ia3<float>)
}  // namespace peft
