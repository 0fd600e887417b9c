// SPDX-License-Identifier: Apache-2.0
// Compiled (not run) by the consumer project when peft::npy is available.
#include <peft/io/npy.hpp>

#include <string>

peft::matrix<float> consumer_read(const std::string& path) { return peft::read_npy_matrix<float>(path); }
