// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_ERROR_HPP
#define PEFT_ERROR_HPP

/// @file error.hpp
/// The one exception hierarchy of peft. Every public entry point reports bad input by
/// throwing one of these, in Release builds too; messages read
/// `class::method: what was expected, what was found`.

#include <cassert>
#include <stdexcept>
#include <string>

namespace peft {

/// Base of every exception peft throws.
class error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A caller passed a value, shape or option that cannot be used.
class invalid_argument : public error {
public:
  using error::error;
};

/// A file could not be read or written, or its contents are malformed.
class io_error : public error {
public:
  using error::error;
};

/// A NaN or infinity appeared where a finite number is required.
class numeric_error : public error {
public:
  using error::error;
};

/// Internal invariant checks. Override by defining PEFT_ASSERT before including peft.
#ifndef PEFT_ASSERT
#define PEFT_ASSERT(x) assert(x)
#endif

namespace detail {
/// Builds "where: expected E, got G" messages without pulling in <sstream> everywhere.
template <typename E, typename G>
std::string expected_got(const char* where, const char* what, const E& expected, const G& got) {
  auto str = [](const auto& v) {
    if constexpr (std::is_convertible_v<decltype(v), std::string>) {
      return std::string(v);
    } else {
      return std::to_string(v);
    }
  };
  return std::string(where) + ": " + what + " expected " + str(expected) + ", got " + str(got);
}
}  // namespace detail

}  // namespace peft

#endif  // PEFT_ERROR_HPP
