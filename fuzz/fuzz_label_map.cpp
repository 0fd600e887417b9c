// SPDX-License-Identifier: Apache-2.0
// Fuzz target: label_map::load on a labels.json file (as a task checkpoint stores it); an
// accepted map must find every label and survive save + load.
#include <peft/data/label_map.hpp>

#include <string>

#include "fuzz_common.hpp"

PEFT_FUZZ_TARGET(label_map) {
  const std::string path = peft_fuzz::write_scratch("labels.json", data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const auto m = peft::label_map::load(path);
    for (std::size_t i = 0; i < m.labels().size(); ++i) {
      const auto id = m.find(m.labels()[i]);
      peft_fuzz::check(id && *id == static_cast<std::int32_t>(i), "label_map::find misses label " + std::to_string(i));
    }
    const std::string again = peft_fuzz::write_scratch("labels_again.json", "");
    try {
      m.save(again);
      peft_fuzz::check(peft::label_map::load(again) == m, "label_map save + load changed the labels");
    } catch (const peft::error& e) {
      throw peft_fuzz::check_failed(std::string("peft_fuzz: check failed: a loaded label_map does not save and load: ") +
                                    e.what());
    }
  });
}
