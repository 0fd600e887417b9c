// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_BF16_HPP
#define PEFT_CORE_BF16_HPP

/// @file bf16.hpp
/// bfloat16 storage for frozen weights. A bf16 value is the upper half of an IEEE float
/// (8 exponent bits, 7 mantissa bits): conversion from float rounds to nearest, ties to
/// even; conversion back is exact. peft never computes in bf16 itself; it stores frozen
/// matrices in it and hands them to a bf16 GEMM (oneDNN with PEFT_DNNL, see ops/linear.hpp)
/// that multiplies bf16 operands and accumulates in float.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "types.hpp"

namespace peft {

/// The 16 bits of one bfloat16 value.
using bf16_bits = std::uint16_t;

/// Rounds @p f to the nearest bfloat16 (ties to even). NaN stays NaN (quiet), infinities
/// stay infinite, and finite values above the bf16 range round to infinity as IEEE does.
inline bf16_bits float_to_bf16(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_bits>((u >> 16) | 0x0040u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<bf16_bits>(u >> 16);
}

inline float bf16_to_float(bf16_bits b) noexcept {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Converts @p n floats to bf16 (a loop the compiler vectorises).
inline void float_to_bf16(const float* src, bf16_bits* dst, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

/// Row-major `[rows x cols]` matrix of bf16 values: a frozen weight at half the memory.
class bf16_matrix {
public:
  bf16_matrix() = default;
  /// Rounds every entry of @p m to bf16.
  explicit bf16_matrix(const matrix<float>& m) : m_rows(m.rows()), m_cols(m.cols()), m_data(std::size_t(m.size())) {
    float_to_bf16(m.data(), m_data.data(), m_data.size());
  }

  index rows() const noexcept { return m_rows; }
  index cols() const noexcept { return m_cols; }
  index size() const noexcept { return m_rows * m_cols; }
  bool empty() const noexcept { return m_data.empty(); }
  const bf16_bits* data() const noexcept { return m_data.data(); }
  /// Bytes held by the values.
  std::size_t bytes() const noexcept { return m_data.size() * sizeof(bf16_bits); }

  /// The matrix widened back to float (exact).
  matrix<float> to_float() const {
    matrix<float> m(m_rows, m_cols);
    for (std::size_t i = 0; i < m_data.size(); ++i) m.data()[i] = bf16_to_float(m_data[i]);
    return m;
  }

private:
  index m_rows = 0, m_cols = 0;
  std::vector<bf16_bits> m_data;
};

}  // namespace peft

#endif  // PEFT_CORE_BF16_HPP
