// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_TAPE_HPP
#define PEFT_MODEL_TAPE_HPP

/// @file tape.hpp
/// Activations a forward pass records for the backward pass. A tape belongs to one
/// forward call; `encoder::backward` assumes the forward was called with the same policy
/// and that neither has changed since.

#include <array>
#include <vector>

#include "../core/types.hpp"
#include "../ops/attention.hpp"
#include "../ops/layer_norm.hpp"
#include "../policies/policy_traits.hpp"

namespace peft {

/// One layer's record. Post-LN (BERT): `x` feeds Q/K/V, `x1 = LN1(a + x)` feeds the FFN.
/// Pre-LN (USE-lite): `n1 = LN1(x)` feeds Q/K/V, `x1 = a + residual(x)`, `n2 = LN2(x1)`
/// feeds the FFN.
template <typename Scalar>
struct layer_tape {
  matrix<Scalar> x;             ///< layer input (after on_layer_input)
  matrix<Scalar> n1;            ///< pre-LN only: normalised input
  ops::layer_norm_cache<Scalar> norm1, norm2;
  /// The block LayerNorm applied to the sub-layer's own residual sum for a policy's
  /// `on_residual_norm` (AdapterHub's original_ln_before); unused otherwise.
  ops::layer_norm_cache<Scalar> residual_norm1, residual_norm2;
  matrix<Scalar> q, k, v;       ///< projections, [B*T x d_att]
  matrix<Scalar> prefix_k, prefix_v;  ///< from the policy's kv_prefix, [P x d_att]
  ops::attention_cache<Scalar> attn;
  matrix<Scalar> ctx;           ///< attention context, input of attn_out
  matrix<Scalar> drop_attn;     ///< hidden-dropout scales after attn_out (empty in eval)
  matrix<Scalar> x1;            ///< input of the FFN block
  matrix<Scalar> n2;            ///< pre-LN only: normalised x1
  matrix<Scalar> u;             ///< FFN pre-activation
  matrix<Scalar> g;             ///< FFN activation, input of ffn_out
  matrix<Scalar> drop_ffn;      ///< hidden-dropout scales after ffn_out (empty in eval)
  std::array<matrix<Scalar>, num_linear_ids> w_eff;  ///< effective weights from on_weight
  /// Frozen linear outputs before a policy's output scale (linear_scale), for its gradient.
  std::array<matrix<Scalar>, num_linear_ids> unscaled;
};

template <typename Scalar, typename Policy>
struct encoder_tape {
  index batch_size = 0;
  index time = 0;
  id_matrix mask;                        ///< attention mask of the recorded batch
  ops::layer_norm_cache<Scalar> emb_norm;
  matrix<Scalar> drop_emb;
  matrix<Scalar> h0;                     ///< embedding output, kept for on_encoder_output
  std::vector<layer_tape<Scalar>> layers;
  ops::layer_norm_cache<Scalar> final_norm;
  policy_tape_t<Policy> policy;          ///< whatever the policy recorded
  /// Set before the forward pass: layers below it run but keep nothing, and `backward` can
  /// stop no lower than it. Trainers set it to the policy's lowest trainable layer (frozen
  /// lower layers then cost a forward pass only, and no activation memory); 0 keeps all.
  index record_from = 0;
};

}  // namespace peft

#endif  // PEFT_MODEL_TAPE_HPP
