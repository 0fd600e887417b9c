// SPDX-License-Identifier: Apache-2.0
// Frozen weights are shared as shared_ptr<const encoder_weights>: nothing reached through a
// peft::shared_weights can modify them.
// PEFT_FAILTEST_EXPECT: discards qualifiers|not marked const
#include <peft/model/weights.hpp>

#include <memory>

int main() {
  peft::encoder_weights<float> weights;
  weights.layers.resize(2);
  peft::shared_weights<float> shared = std::make_shared<const peft::encoder_weights<float>>(weights);
#ifdef PEFT_FAILTEST_KO
  shared->layers.clear();
#endif
  return shared->layers.size() == 2 ? 0 : 1;
}
