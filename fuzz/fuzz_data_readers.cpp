// SPDX-License-Identifier: Apache-2.0
// Fuzz target: read_dataset. The first input byte picks the file name's extension (its value
// modulo 4: '0' .jsonl, '1' .tsv, '2' .csv, '3' .json); the rest of the input is the file.
// Every example read must have a text, and a line number inside the file.
#include <peft/data/readers.hpp>

#include <string>

#include "fuzz_common.hpp"

PEFT_FUZZ_TARGET(data_readers) {
  if (size == 0) return;
  static const char* const names[] = {"data.jsonl", "data.tsv", "data.csv", "data.json"};
  const std::string path = peft_fuzz::write_scratch(names[data[0] % 4], data + 1, size - 1);
  peft_fuzz::expect_only_peft_errors([&] {
    const peft::dataset d = peft::read_dataset(path);
    for (const auto& ex : d) {
      peft_fuzz::check(!ex.text.empty(), "read_dataset returned an example with an empty text");
      peft_fuzz::check(ex.line >= 1 && ex.line <= size, "read_dataset returned line " + std::to_string(ex.line));
    }
    (void)peft::label_counts(d);
  });
}
