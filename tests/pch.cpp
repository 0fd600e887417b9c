// SPDX-License-Identifier: Apache-2.0
// Compiles tests/pch.hpp into the precompiled header the test files reuse.
