// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_TYPES_HPP
#define PEFT_CORE_TYPES_HPP

/// @file types.hpp
/// Eigen aliases used throughout peft. Activations are row-major `[tokens x features]`;
/// a linear layer's weight is stored as Hugging Face does, `[out x in]`, so
/// `y = x * W^T + b`.

#include <Eigen/Core>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../error.hpp"

namespace peft {

using index = Eigen::Index;

template <typename Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
template <typename Scalar>
using row_vector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
template <typename Scalar>
using matrix_map = Eigen::Map<matrix<Scalar>>;
template <typename Scalar>
using const_matrix_map = Eigen::Map<const matrix<Scalar>>;

/// Integer matrix of token ids or 0/1 masks, `[batch x time]`.
using id_matrix = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Non-linearity of a feed-forward block.
enum class activation { gelu_erf, gelu_tanh, relu };

/// Whether a forward pass trains (dropout on, activations recorded) or evaluates.
/// The mode is always passed explicitly; nothing in peft stores it as a hidden flag.
enum class mode { eval, train };

/// Dense n-d float tensor as read from a checkpoint file, row-major.
struct tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;

  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::string shape_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

namespace detail {
template <typename T>
struct nondeduced {
  using type = T;
};
}  // namespace detail
/// Keeps a parameter out of template argument deduction (so `nullptr` can be passed).
template <typename T>
using nondeduced_t = typename detail::nondeduced<T>::type;

template <typename T>
inline constexpr bool is_supported_scalar_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

}  // namespace peft

#endif  // PEFT_CORE_TYPES_HPP
