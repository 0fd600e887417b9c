// SPDX-License-Identifier: Apache-2.0
// peft::instances: the bottleneck_adapter policy: its class (float, double), the encoder with it (every
// architecture, float and double), its float tasks, its checkpoint loader and writer.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, bottleneck_adapter, float)
PEFT_INSTANCES_POLICY_CLASS(, bottleneck_adapter, double)
PEFT_INSTANCES_ENCODER(, bottleneck_adapter)
PEFT_INSTANCES_TASKS(, bottleneck_adapter<float>)
PEFT_INSTANCES_POLICY_IO(, bottleneck_adapter<float>)
}  // namespace peft
