// SPDX-License-Identifier: Apache-2.0
// Shared by the sources of peft::instances: every header whose templates they instantiate.
// Each source expands some of the lists of peft/detail/instances.hpp as definitions; the
// split (by architecture, then the rest) lets a parallel build keep every core busy.
#ifndef PEFT_SRC_INSTANCES_COMMON_HPP
#define PEFT_SRC_INSTANCES_COMMON_HPP

#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/ops/activation.hpp>
#include <peft/ops/attention.hpp>
#include <peft/ops/dropout.hpp>
#include <peft/ops/layer_norm.hpp>
#include <peft/ops/linear.hpp>
#include <peft/policies/adapter_fusion.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/side_tuning.hpp>
#include <peft/train/heads.hpp>
#include <peft/train/trainer.hpp>

/// The encoder class and every built-in policy for architecture `A` and scalar `S`.
#define PEFT_SRC_ENCODER_ALL_POLICIES(A, S)                    \
  PEFT_INSTANCES_ENCODER_CLASS(, A, S)                         \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, no_policy<S>)          \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, bottleneck_adapter<S>) \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, lora<S>)               \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, prefix_tuning<S>)      \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, mask_tuning<S>)        \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, side_tuning<S>)        \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, full_finetune<S>)      \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, adapter_fusion<S>)     \
  PEFT_INSTANCES_ENCODER_POLICY(, A, S, modular_prompt<S>)

/// Float tasks on architecture `A` with head `H` for every policy the trainer list holds.
#define PEFT_SRC_TASKS_ALL_POLICIES(A, H)                \
  PEFT_INSTANCES_TASK(, A, no_policy<float>, H)          \
  PEFT_INSTANCES_TASK(, A, bottleneck_adapter<float>, H) \
  PEFT_INSTANCES_TASK(, A, lora<float>, H)               \
  PEFT_INSTANCES_TASK(, A, prefix_tuning<float>, H)      \
  PEFT_INSTANCES_TASK(, A, mask_tuning<float>, H)        \
  PEFT_INSTANCES_TASK(, A, side_tuning<float>, H)        \
  PEFT_INSTANCES_TASK(, A, full_finetune<float>, H)      \
  PEFT_INSTANCES_TASK(, A, modular_prompt<float>, H)

#endif
