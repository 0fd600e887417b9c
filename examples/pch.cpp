// SPDX-License-Identifier: Apache-2.0
// Compiles examples/pch.hpp once; the example targets reuse the result.
