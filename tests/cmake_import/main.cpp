// SPDX-License-Identifier: Apache-2.0
// Built against an installed or exported peft by tests/packaging.cmake: it must find the
// umbrella header and its dependencies through peft::peft alone.
#include <peft/peft.hpp>

#include <iostream>
#include <string>

int main() {
  peft::encoder_config config;
  config.model_type = "roberta";
  config.max_positions = 514;
  config.pad_token_id = 1;

  peft::matrix<float> x = peft::matrix<float>::Ones(2, 3);
  const float total = x.sum();

  bool threw = false;
  try {
    peft::parse_activation("swish");
  } catch (const peft::invalid_argument&) {
    threw = true;
  }

  // The header's version must be the one find_package reported.
  const bool same_version = std::string(peft::version_string) == PEFT_CMAKE_VERSION;

  const bool ok = config.max_sequence_length() == 512 && total == 6.0f && threw && same_version;
  std::cout << "peft consumer: " << (ok ? "ok" : "FAILED") << " (peft " << peft::version_string
            << ", CMake package " << PEFT_CMAKE_VERSION << ")\n";
  return ok ? 0 : 1;
}
