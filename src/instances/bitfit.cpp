// SPDX-License-Identifier: Apache-2.0
// peft::instances: the bitfit policy: its class (float, double), the encoder with it (every architecture,
// float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/bitfit.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, bitfit, float)
PEFT_INSTANCES_POLICY_CLASS(, bitfit, double)
PEFT_INSTANCES_ENCODER(, bitfit)
PEFT_INSTANCES_TASKS(, bitfit<float>)
PEFT_INSTANCES_POLICY_IO(, bitfit<float>)
}  // namespace peft
