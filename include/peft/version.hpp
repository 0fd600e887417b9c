// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_VERSION_HPP
#define PEFT_VERSION_HPP

#define PEFT_VERSION_MAJOR 0
#define PEFT_VERSION_MINOR 1
#define PEFT_VERSION_PATCH 0

namespace peft {
inline constexpr const char* version_string = "0.1.0";
}

#endif  // PEFT_VERSION_HPP
