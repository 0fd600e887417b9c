// SPDX-License-Identifier: Apache-2.0
// Fuzz target: read_mpmp_library_info on a library folder whose library.json is the input.
#include <peft/io/mpmp_library.hpp>

#include <string>

#include "fuzz_common.hpp"

PEFT_FUZZ_TARGET(mpmp_library) {
  const auto dir = peft_fuzz::fresh_scratch_dir("mpmp_library");
  peft_fuzz::write_bytes(dir / peft::mpmp_library_file, data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const peft::mpmp_library_info info = peft::read_mpmp_library_info(dir.string());
    peft_fuzz::check(!info.tasks.empty() && info.placeholder_id >= 0, "read_mpmp_library_info accepted no tasks");
    for (const auto& t : info.tasks) {
      peft_fuzz::check(info.find(t.name) >= 0, "mpmp_library_info::find misses task '" + t.name + "'");
      peft_fuzz::check(info.head_for(t.labels) >= 0, "mpmp_library_info::head_for misses a task's labels");
    }
    (void)info.extra.dump();
  });
}
