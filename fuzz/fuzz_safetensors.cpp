// SPDX-License-Identifier: Apache-2.0
// Fuzz target: safetensors_file. The input is a whole .safetensors file. Every tensor it
// declares is loaded with each loader that accepts its dtype (the loaded sizes must match the
// header), and with a loader that does not (which must throw a peft::error).
#include <peft/io/safetensors.hpp>

#include <cstdint>
#include <string>

#include "fuzz_common.hpp"

namespace {

/// Checks that a loaded tensor agrees with its header entry.
template <typename T>
void check_loaded(const peft::tensor_info& ti, const std::vector<std::int64_t>& shape, const std::vector<T>& values,
                  const char* loader) {
  const std::string what = std::string(loader) + "('" + ti.name + "')";
  peft_fuzz::check(shape == ti.shape, what + " shape differs from the header");
  peft_fuzz::check(values.size() == static_cast<std::size_t>(ti.numel()),
                   what + " returned " + std::to_string(values.size()) + " values for numel " +
                       std::to_string(ti.numel()));
}

}  // namespace

PEFT_FUZZ_TARGET(safetensors) {
  const std::string path = peft_fuzz::write_scratch("input.safetensors", data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const auto f = peft::safetensors_file::open(path);
    (void)f.metadata().dump();
    peft_fuzz::check(f.data_start() >= 8, "data_start() below 8");
    for (const auto& name : f.names()) {
      const peft::tensor_info& ti = f.info(name);
      peft_fuzz::check(f.contains(name), "contains() false for a listed name");
      peft_fuzz::check(ti.end >= ti.begin, "tensor '" + name + "' end < begin after validation");
      if (peft::is_floating(ti.dtype)) {
        const auto t = f.load(name);
        check_loaded(ti, t.shape, t.data, "load");
        check_loaded(ti, ti.shape, f.load_values<double>(name), "load_values<double>");
        peft_fuzz::expect_peft_error([&] { (void)f.load_integers(name); }, "load_integers on " + name);
        peft_fuzz::expect_peft_error([&] { (void)f.load_bytes(name); }, "load_bytes on " + name);
      } else if (peft::is_byte(ti.dtype)) {
        const auto b = f.load_bytes(name);
        check_loaded(ti, b.shape, b.data, "load_bytes");
        const auto i = f.load_integers(name);
        check_loaded(ti, i.shape, i.data, "load_integers");
        const auto t = f.load(name);
        check_loaded(ti, t.shape, t.data, "load");
        peft_fuzz::expect_peft_error([&] { (void)f.load_values<double>(name); }, "load_values<double> on " + name);
      } else {
        const auto i = f.load_integers(name);
        check_loaded(ti, i.shape, i.data, "load_integers");
        peft_fuzz::expect_peft_error([&] { (void)f.load(name); }, "load on " + name);
        peft_fuzz::expect_peft_error([&] { (void)f.load_bytes(name); }, "load_bytes on " + name);
      }
    }
    const std::string absent = "\x01 not a tensor";
    if (!f.contains(absent)) peft_fuzz::expect_peft_error([&] { (void)f.info(absent); }, "info on a missing name");
  });
}
