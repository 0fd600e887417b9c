// SPDX-License-Identifier: Apache-2.0
// peft::instances: the model loaders (Hugging Face folders, USE-lite) and the adapter
// checkpoints of every built-in policy.
#include "common.hpp"

namespace peft {
PEFT_INSTANCES_HF_CHECKPOINT(, float)
PEFT_INSTANCES_HF_CHECKPOINT(, double)
PEFT_INSTANCES_USE_LITE(, float)
PEFT_INSTANCES_USE_LITE(, double)
PEFT_INSTANCES_POLICY_IO(, bottleneck_adapter<float>)
PEFT_INSTANCES_POLICY_IO(, lora<float>)
PEFT_INSTANCES_POLICY_IO(, prefix_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, mask_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, side_tuning<float>)
PEFT_INSTANCES_POLICY_IO(, full_finetune<float>)
PEFT_INSTANCES_POLICY_IO(, adapter_fusion<float>)
PEFT_INSTANCES_POLICY_IO(, modular_prompt<float>)
}  // namespace peft
