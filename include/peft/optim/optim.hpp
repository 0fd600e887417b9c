// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_OPTIM_HPP
#define PEFT_OPTIM_OPTIM_HPP

/// @file optim.hpp
/// Every optimizer piece of peft: `sgd`, `adam`, `adamw`, `lr_schedule`, `clip_grad_norm`.

#include "adam.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "schedule.hpp"
#include "sgd.hpp"

#endif  // PEFT_OPTIM_OPTIM_HPP
