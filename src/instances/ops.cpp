// SPDX-License-Identifier: Apache-2.0
// peft::instances: the op kernels (attention, layer norm, activations, dropout, linear maps) in
// float and double.
#include <peft/ops/activation.hpp>
#include <peft/ops/attention.hpp>
#include <peft/ops/dropout.hpp>
#include <peft/ops/layer_norm.hpp>
#include <peft/ops/linear.hpp>

namespace peft {
PEFT_INSTANCES_OPS_ATTENTION(, float)
PEFT_INSTANCES_OPS_ATTENTION(, double)
PEFT_INSTANCES_OPS_LAYER_NORM(, float)
PEFT_INSTANCES_OPS_LAYER_NORM(, double)
PEFT_INSTANCES_OPS_ACTIVATION(, float)
PEFT_INSTANCES_OPS_ACTIVATION(, double)
PEFT_INSTANCES_OPS_DROPOUT(, float)
PEFT_INSTANCES_OPS_DROPOUT(, double)
PEFT_INSTANCES_OPS_LINEAR(, float)
PEFT_INSTANCES_OPS_LINEAR(, double)
}  // namespace peft
