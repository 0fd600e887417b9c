// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_DATA_HPP
#define PEFT_DATA_DATA_HPP

/// @file data.hpp
/// Everything in `peft/data/`: datasets and their readers, label maps, few-shot splits and
/// batch samplers.

#include "batching.hpp"
#include "dataset.hpp"
#include "few_shot.hpp"
#include "label_map.hpp"
#include "readers.hpp"
#include "task_data.hpp"

#endif  // PEFT_DATA_DATA_HPP
