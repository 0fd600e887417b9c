// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_RANDOM_WEIGHTS_HPP
#define PEFT_MODEL_RANDOM_WEIGHTS_HPP

/// @file random_weights.hpp
/// Randomly initialised encoder weights of a given shape, for tests, benchmarks and
/// experiments that need no pretrained checkpoint.

#include <memory>

#include "../core/random.hpp"
#include "config.hpp"
#include "weights.hpp"

namespace peft {

namespace detail {
template <typename Scalar>
void fill_normal(matrix<Scalar>& m, index rows, index cols, double stddev, rng& gen) {
  m.resize(rows, cols);
  for (index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(gen.normal() * stddev);
}
template <typename Scalar>
void fill_normal(vector<Scalar>& v, index n, double stddev, double mean, rng& gen) {
  v.resize(n);
  for (index i = 0; i < n; ++i) v[i] = static_cast<Scalar>(mean + gen.normal() * stddev);
}
template <typename Scalar>
linear_weights<Scalar> random_linear(index out, index in, double stddev, rng& gen) {
  linear_weights<Scalar> l;
  fill_normal(l.weight, out, in, stddev, gen);
  fill_normal(l.bias, out, stddev, 0.0, gen);
  return l;
}
template <typename Scalar>
layer_norm_weights<Scalar> random_norm(index d, rng& gen) {
  layer_norm_weights<Scalar> n;
  fill_normal(n.gamma, d, 0.1, 1.0, gen);
  fill_normal(n.beta, d, 0.1, 0.0, gen);
  return n;
}
}  // namespace detail

/// Weights for `cfg` drawn from N(0, stddev) (LayerNorm gains near 1). For `use_lite`,
/// layer 0 reads `embedding_size` and a residual projection is created when it differs
/// from `hidden_size`. Heads (pooler, masked-LM, sentence) are included.
template <typename Scalar>
std::shared_ptr<encoder_weights<Scalar>> random_encoder_weights(const encoder_config& cfg, std::uint64_t seed,
                                                                double stddev = 0.05) {
  if (cfg.hidden_size <= 0 || cfg.num_layers <= 0 || cfg.num_heads <= 0 || cfg.vocab_size <= 0 ||
      cfg.intermediate_size <= 0 || cfg.max_positions <= 0)
    throw invalid_argument("random_encoder_weights: every size in the config must be positive");
  rng gen(seed);
  auto w = std::make_shared<encoder_weights<Scalar>>();
  w->config = cfg;
  const index E = cfg.embedding_size > 0 ? cfg.embedding_size : cfg.hidden_size;
  w->config.embedding_size = E;
  const index H = cfg.hidden_size;
  const bool sinusoidal = cfg.model_type == "use_lite";
  detail::fill_normal(w->word_embeddings, cfg.vocab_size, E, stddev * 10, gen);
  if (!sinusoidal) detail::fill_normal(w->position_embeddings, cfg.max_positions, E, stddev * 10, gen);
  if (cfg.type_vocab_size > 0) detail::fill_normal(w->token_type_embeddings, cfg.type_vocab_size, E, stddev * 10, gen);
  if (!sinusoidal) w->embedding_norm = detail::random_norm<Scalar>(E, gen);
  index in = E;
  for (index l = 0; l < cfg.num_layers; ++l) {
    layer_weights<Scalar> L;
    L.query = detail::random_linear<Scalar>(in, in, stddev * 4, gen);
    L.key = detail::random_linear<Scalar>(in, in, stddev * 4, gen);
    L.value = detail::random_linear<Scalar>(in, in, stddev * 4, gen);
    L.attn_out = detail::random_linear<Scalar>(H, in, stddev * 4, gen);
    if (in != H) L.residual_proj = detail::random_linear<Scalar>(H, in, stddev * 4, gen);
    L.ffn_in = detail::random_linear<Scalar>(cfg.intermediate_size, H, stddev * 4, gen);
    L.ffn_out = detail::random_linear<Scalar>(H, cfg.intermediate_size, stddev * 4, gen);
    L.attn_norm = detail::random_norm<Scalar>(sinusoidal ? in : H, gen);
    L.ffn_norm = detail::random_norm<Scalar>(H, gen);
    w->layers.push_back(std::move(L));
    in = H;
  }
  if (sinusoidal) {
    w->sentence_dense = detail::random_linear<Scalar>(H, H, stddev * 4, gen);
  } else {
    w->pooler = detail::random_linear<Scalar>(H, H, stddev * 4, gen);
    w->mlm_transform = detail::random_linear<Scalar>(H, H, stddev * 4, gen);
    w->mlm_norm = detail::random_norm<Scalar>(H, gen);
    detail::fill_normal(w->mlm_bias, cfg.vocab_size, stddev, 0.0, gen);
  }
  return w;
}

}  // namespace peft

#endif  // PEFT_MODEL_RANDOM_WEIGHTS_HPP
