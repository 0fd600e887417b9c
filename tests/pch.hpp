// SPDX-License-Identifier: Apache-2.0
// The precompiled header of the test files (tests/CMakeLists.txt): the third-party and
// standard headers they all parse, none of peft's own (each test includes what it tests).
#include <catch2/catch.hpp>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>
