// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_PEFT_HPP
#define PEFT_PEFT_HPP

/// @file peft.hpp
/// Umbrella header: the core, ops, encoder, policies, optimizers, training, multi-task
/// serving, text and data pieces. File formats live in `peft/io/` and are included on their
/// own (the xtensor-based `.npy` reader needs the `peft::npy` target).

#include "version.hpp"
#include "error.hpp"
#include "core/types.hpp"
#include "core/encoder_shape.hpp"
#include "core/limits.hpp"
#include "core/memory.hpp"
#include "core/numerics.hpp"
#include "core/parameter.hpp"
#include "core/random.hpp"
#include "core/threading.hpp"
#include "ops/activation.hpp"
#include "ops/attention.hpp"
#include "ops/dropout.hpp"
#include "ops/layer_norm.hpp"
#include "ops/linear.hpp"
#include "policies/policy_traits.hpp"
#include "policies/adapter_fusion.hpp"
#include "policies/bottleneck_adapter.hpp"
#include "policies/compose.hpp"
#include "policies/full_finetune.hpp"
#include "policies/lora.hpp"
#include "policies/mask_tuning.hpp"
#include "policies/modular_prompt.hpp"
#include "policies/prefix_tuning.hpp"
#include "policies/side_tuning.hpp"
#include "optim/optim.hpp"
#include "model/arch.hpp"
#include "model/batch.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "model/random_weights.hpp"
#include "model/tape.hpp"
#include "model/encoder.hpp"
#include "model/heads.hpp"
#include "model/pooling.hpp"
#include "train/heads.hpp"
#include "train/losses.hpp"
#include "train/progress.hpp"
#include "train/trainer.hpp"
#include "train/self_training.hpp"
#include "train/mpmp.hpp"
#include "serve/multi_task.hpp"
#include "text/unicode.hpp"
#include "text/wordpiece.hpp"
#include "text/unigram.hpp"
#include "text/prompt.hpp"
#include "data/data.hpp"

#endif  // PEFT_PEFT_HPP
