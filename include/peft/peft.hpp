// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_PEFT_HPP
#define PEFT_PEFT_HPP

/// @file peft.hpp
/// Umbrella header: everything in peft except the xtensor-based `.npy` reader
/// (`#include <peft/io/npy.hpp>` and link `peft::npy` for that).

#include "version.hpp"
#include "error.hpp"
#include "core/types.hpp"
#include "core/encoder_shape.hpp"
#include "core/parameter.hpp"
#include "core/random.hpp"
#include "core/threading.hpp"
#include "ops/activation.hpp"
#include "ops/attention.hpp"
#include "ops/dropout.hpp"
#include "ops/layer_norm.hpp"
#include "ops/linear.hpp"
#include "policies/policy_traits.hpp"
#include "model/arch.hpp"
#include "model/batch.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "model/random_weights.hpp"
#include "model/tape.hpp"
#include "model/encoder.hpp"
#include "model/heads.hpp"

#endif  // PEFT_PEFT_HPP
