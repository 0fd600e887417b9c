// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_OPTIM_HPP
#define PEFT_OPTIM_OPTIM_HPP

/// @file optim.hpp
/// Every optimizer piece of peft: `sgd`, `adam`, `adamw`, `lr_schedule`, `clip_grad_norm`, and the
/// gradient-free `cmaes` and `bayes_opt`.

#include "adam.hpp"
#include "bayes_opt.hpp"
#include "clip.hpp"
#include "cmaes.hpp"
#include "optimizer.hpp"
#include "schedule.hpp"
#include "sgd.hpp"

#endif  // PEFT_OPTIM_OPTIM_HPP
