// SPDX-License-Identifier: Apache-2.0
// peft::instances: the model loaders: Hugging Face folders (load and save) and USE-lite.
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/use_lite.hpp>

namespace peft {
PEFT_INSTANCES_HF_CHECKPOINT(, float)
PEFT_INSTANCES_HF_CHECKPOINT(, double)
PEFT_INSTANCES_USE_LITE(, float)
PEFT_INSTANCES_USE_LITE(, double)
}  // namespace peft
#include <peft/io/detail/hf_peft_impl.hpp>
