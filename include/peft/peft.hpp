// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_PEFT_HPP
#define PEFT_PEFT_HPP

/// @file peft.hpp
/// Umbrella header: the core, ops, encoder, policies, optimizers, training, multi-task
/// serving, text and data pieces. File formats live in `peft/io/` and are included on their
/// own (the xtensor-based `.npy` reader needs the `peft::npy` target). So are the method
/// registry (`peft/methods.hpp`: any_policy, load_any_policy) and the task layer
/// (`peft/task/task.hpp`, `peft/task/run.hpp`): they reach every method and file format, and
/// header-only, `run.hpp` compiles every architecture x method x head into the file that
/// includes it (linking `peft::instances` makes that a declaration only).

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
#include "core/batch.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "model/random_weights.hpp"
#include "model/tape.hpp"
#include "model/encoder.hpp"
#include "model/mlm_head.hpp"
#include "model/pooling.hpp"
#include "ops/losses.hpp"
#include "task/heads.hpp"
#include "task/task_model.hpp"
#include "task/prompt_placeholders.hpp"
#include "train/progress.hpp"
#include "train/trainer.hpp"
#include "train/self_training.hpp"
#include "train/mpmp.hpp"
#include "serve/multi_task.hpp"
#include "text/unicode.hpp"
#include "text/tokenizer.hpp"
#include "text/wordpiece.hpp"
#include "text/bpe.hpp"
#include "text/sentencepiece.hpp"
#include "text/hf_tokenizer.hpp"
#include "text/unigram.hpp"
#include "text/prompt.hpp"
#include "data/data.hpp"

#endif  // PEFT_PEFT_HPP
