// SPDX-License-Identifier: Apache-2.0
// peft::instances: the gradient-free optimizers: CMA-ES, the Gaussian process and Bayesian
// optimisation.
#include <peft/optim/bayes_opt.hpp>
#include <peft/optim/cmaes.hpp>

namespace peft {
PEFT_INSTANCES_CMAES()
PEFT_INSTANCES_BAYES_OPT()
}  // namespace peft
