// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the .npy readers (read_npy_ids, read_npy_matrix, read_npy_tensor) on a whole
// .npy file. Built only when xtensor is found (the peft::npy target).
#include <peft/io/npy.hpp>

#include <string>

#include "fuzz_common.hpp"

PEFT_FUZZ_TARGET(npy) {
  const std::string path = peft_fuzz::write_scratch("input.npy", data, size);
  peft_fuzz::expect_only_peft_errors([&] { (void)peft::read_npy_ids(path); });
  peft_fuzz::expect_only_peft_errors([&] { (void)peft::read_npy_matrix<float>(path); });
  peft_fuzz::expect_only_peft_errors([&] { (void)peft::read_npy_matrix<double>(path); });
  peft_fuzz::expect_only_peft_errors([&] {
    const peft::tensor t = peft::read_npy_tensor(path);
    peft_fuzz::check(static_cast<std::int64_t>(t.data.size()) == t.numel(), "read_npy_tensor: data size != numel");
  });
}
