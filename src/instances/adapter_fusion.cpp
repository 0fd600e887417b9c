// SPDX-License-Identifier: Apache-2.0
// peft::instances: the adapter_fusion policy: its class (float, double), the encoder with it (every
// architecture, float and double), its checkpoint loader and writer. (No float tasks: peft-train's
// method list has no fusion, so none are declared in detail/instances.hpp either.)
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/model/encoder.hpp>
#include <peft/policies/adapter_fusion.hpp>
#include <peft/train/trainer.hpp>

namespace peft {
PEFT_INSTANCES_POLICY_CLASS(, adapter_fusion, float)
PEFT_INSTANCES_POLICY_CLASS(, adapter_fusion, double)
PEFT_INSTANCES_ENCODER(, adapter_fusion)
PEFT_INSTANCES_POLICY_IO(, adapter_fusion<float>)
}  // namespace peft
