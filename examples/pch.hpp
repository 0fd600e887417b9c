// SPDX-License-Identifier: Apache-2.0
// The precompiled header of the example programs and the task runtime (examples/CMakeLists.txt):
// the library headers they all parse, parsed once per build instead of once per program.
// Nothing here is a program's own code; each source still includes what it uses.
#include "task_common.hpp"
