// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_POLICY_TRAITS_HPP
#define PEFT_POLICIES_POLICY_TRAITS_HPP

/// @file policy_traits.hpp
/// The policy interface: the hook points where a PEFT method plugs into the frozen encoder.
///
/// A policy is any class with a `scalar_type` that implements some of the hooks below;
/// the encoder detects each one at compile time and skips the rest (no virtual calls).
/// Every forward hook is `const` and may record what its backward needs in the policy's
/// own `tape_type` (default: nothing), which the encoder keeps inside its tape. Every
/// backward hook receives the gradient of the hook's output, accumulates the gradients of
/// the policy's own parameters, and turns the gradient into that of the hook's input.
///
/// | hook | forward signature | backward signature |
/// |---|---|---|
/// | input embeddings | `on_input_embeddings(b, e, ctx, tape)` | `on_input_embeddings_backward(de, tape)` |
/// | embeddings | `on_embeddings(h, ctx, tape)` | `on_embeddings_backward(dh, tape)` |
/// | layer input | `on_layer_input(l, h, ctx, tape)` | `on_layer_input_backward(l, dh, tape)` |
/// | K/V prefix | `kv_prefix_length(l)`, `kv_prefix(l, pk, pv, ctx, tape)` | `kv_prefix_backward(l, dpk, dpv, tape)` |
/// | frozen weight | `transforms_weight(l, w)`, `on_weight(l, w, W, W_eff, tape)` | `on_weight_backward(l, w, W, dW_eff, tape)` |
/// | linear output | `on_linear(l, w, x, y, ctx, tape)` | `on_linear_backward(l, w, dy, dx, tape)` (adds to dx) |
/// | linear scale | `linear_scale(l, w)` → `linear_scaling` | `on_linear_scale_backward(l, w, ds)` |
/// | sub-layer output | `on_sublayer_output(l, s, p, h, ctx, tape)` | `on_sublayer_output_backward(l, s, p, dh, tape)` |
/// | LayerNorm output | `on_norm_output(l, n, h, ctx, tape)` | `on_norm_output_backward(l, n, dh, tape)` |
/// | normed residual sum | `reads_residual_norm(l, s)`, `on_residual_norm(l, s, z, h, ctx, tape)` | `on_residual_norm_backward(l, s, dh, dz, tape)` (adds to dz) |
/// | encoder output | `on_encoder_output(h0, h, ctx, tape)` | `on_encoder_output_backward(dh, tape)` |
///
/// `on_input_embeddings` sees the word embeddings `e` (`[B*T x E]`) of batch `b` before the
/// encoder adds positions and token types and normalises, and may replace rows (the positions
/// of `virtual_token_id`, which the encoder accepts only with this hook); its backward gets
/// the gradient of `e`, and runs only when the backward pass reaches layer 0.
///
/// `on_norm_output` runs on the output of each LayerNorm `n` the encoder has (`l` = -1 for the
/// embeddings' and the final one); its backward runs where the backward pass reaches that norm.
///
/// `on_residual_norm` serves a unit that reads the sub-layer's output after the block's own
/// residual add and LayerNorm, as AdapterHub's `original_ln_before` adapters do: in a post-norm
/// encoder, where `reads_residual_norm(l, s)` is true, the encoder computes `z = LN(h + r)` from
/// the sub-layer output `h` (after its dropout and `on_sublayer_output`), the block's residual
/// input `r` and the block's LayerNorm, and the hook may change `h`, which then goes through
/// that residual add and LayerNorm as usual (the LayerNorm runs twice, with the same weights).
/// Its backward gets the gradient of the changed `h`, adds the gradient of `z` to `dz` and turns
/// `dh` into the gradient of `h` along the hook's direct path; the encoder carries `dz` back
/// through the LayerNorm into `h` and `r`. A pre-norm encoder refuses such a policy.
///
/// `linear_scale` is the one hook the encoder does the math for: the policy names a vector `s`
/// and which side of frozen linear `w` it multiplies, its input (`y = W (x ⊙ s) + b`) or its
/// output (`y = (W x + b) ⊙ s`), and gets back `ds`, the gradient of `s` over the batch. An
/// `on_weight` or `on_linear` hook of the same linear sees the scaled input; an output scale
/// applies to the frozen map alone, before `on_linear` adds its path. ((IA)³ uses it.)
///
/// `position_offset()` (optional) moves the positions the embeddings give the text: it starts
/// at that position instead of 0 (prefix-tuning as Hugging Face PEFT runs it on BERT).
///
/// `lowest_layer(num_layers)` (optional) names the lowest layer whose hooks hold trainable
/// parameters; the backward pass stops below it. Without it the encoder assumes 0.

#include <type_traits>
#include <utility>

#include "../core/random.hpp"
#include "../core/types.hpp"

namespace peft {

/// The frozen linear maps of a layer, as seen by `on_weight` / `on_linear`.
enum class linear_id { query = 0, key = 1, value = 2, attn_out = 3, ffn_in = 4, ffn_out = 5 };
inline constexpr int num_linear_ids = 6;

inline const char* to_string(linear_id w) noexcept {
  switch (w) {
    case linear_id::query: return "query";
    case linear_id::key: return "key";
    case linear_id::value: return "value";
    case linear_id::attn_out: return "attn_out";
    case linear_id::ffn_in: return "ffn_in";
    case linear_id::ffn_out: return "ffn_out";
  }
  return "?";
}

/// The two sub-layers of a Transformer layer.
enum class sublayer { attention, ffn };
/// The LayerNorms of an encoder: after the embeddings, in each layer the attention's and the
/// FFN's (after their residual sums, or before the sub-layers in a pre-norm encoder), and the
/// final one of a pre-norm encoder.
enum class norm_site { embeddings, attention, ffn, final };

/// Where on a sub-layer's output a hook runs: before or after its hidden dropout.
enum class placement { pre_dropout, post_dropout };

struct batch;

/// What a policy's `linear_scale(l, w)` returns: a vector multiplied into a frozen linear's
/// input (`on_input`, `size` = input features) or output (`size` = output features), or no
/// scaling at all (`data` null). The values stay the policy's; the encoder only reads them.
template <typename Scalar>
struct linear_scaling {
  const Scalar* data = nullptr;
  index size = 0;
  bool on_input = false;
};

/// What every forward hook is told about the call.
struct hook_context {
  mode run_mode = mode::eval;  ///< dropout and sampling follow this; never a stored flag
  rng* gen = nullptr;          ///< generator for dropout/sampling in train mode (may be null in eval)
  bool record = false;         ///< a backward pass will follow: record what it needs in the tape
  const batch* input = nullptr;
  index batch_size = 0;
  index time = 0;
};

/// Policy with no hooks: the plain frozen encoder.
template <typename Scalar>
struct no_policy {
  using scalar_type = Scalar;
};

namespace detail {
struct empty_tape {};

template <typename P, typename = void>
struct policy_tape {
  using type = empty_tape;
};
template <typename P>
struct policy_tape<P, std::void_t<typename P::tape_type>> {
  using type = typename P::tape_type;
};
}  // namespace detail

/// The per-forward record a policy keeps (its `tape_type`, or an empty struct).
template <typename P>
using policy_tape_t = typename detail::policy_tape<P>::type;

namespace detail {
template <typename P>
using S_ = typename P::scalar_type;
template <typename P>
using M_ = matrix<S_<P>>;
template <typename T>
T& ref_();
template <typename T>
const T& cref_();

template <typename P, typename = void>
struct has_on_embeddings : std::false_type {};
template <typename P>
struct has_on_embeddings<P, std::void_t<decltype(cref_<P>().on_embeddings(ref_<M_<P>>(), cref_<hook_context>(),
                                                                           ref_<policy_tape_t<P>>())),
                                        decltype(ref_<P>().on_embeddings_backward(
                                            ref_<M_<P>>(), cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_input_embeddings : std::false_type {};
template <typename P>
struct has_on_input_embeddings<
    P, std::void_t<decltype(cref_<P>().on_input_embeddings(cref_<batch>(), ref_<M_<P>>(), cref_<hook_context>(),
                                                           ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_input_embeddings_backward(cref_<M_<P>>(), cref_<policy_tape_t<P>>()))>>
    : std::true_type {};

template <typename P, typename = void>
struct has_on_layer_input : std::false_type {};
template <typename P>
struct has_on_layer_input<
    P, std::void_t<decltype(cref_<P>().on_layer_input(index{}, ref_<M_<P>>(), cref_<hook_context>(),
                                                      ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_layer_input_backward(index{}, ref_<M_<P>>(), cref_<policy_tape_t<P>>()))>>
    : std::true_type {};

template <typename P, typename = void>
struct has_kv_prefix : std::false_type {};
template <typename P>
struct has_kv_prefix<
    P, std::void_t<decltype(cref_<P>().kv_prefix_length(index{})),
                   decltype(cref_<P>().kv_prefix(index{}, ref_<M_<P>>(), ref_<M_<P>>(), cref_<hook_context>(),
                                                 ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().kv_prefix_backward(index{}, cref_<M_<P>>(), cref_<M_<P>>(),
                                                         cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_weight : std::false_type {};
template <typename P>
struct has_on_weight<
    P, std::void_t<decltype(bool(cref_<P>().transforms_weight(index{}, linear_id{}))),
                   decltype(cref_<P>().on_weight(index{}, linear_id{}, cref_<M_<P>>(), ref_<M_<P>>(),
                                                 ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_weight_backward(index{}, linear_id{}, cref_<M_<P>>(), cref_<M_<P>>(),
                                                         cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_linear : std::false_type {};
template <typename P>
struct has_on_linear<
    P, std::void_t<decltype(cref_<P>().on_linear(index{}, linear_id{}, cref_<M_<P>>(), ref_<M_<P>>(),
                                                 cref_<hook_context>(), ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_linear_backward(index{}, linear_id{}, cref_<M_<P>>(), ref_<M_<P>>(),
                                                         cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_linear_scale : std::false_type {};
template <typename P>
struct has_linear_scale<
    P, std::void_t<decltype(linear_scaling<S_<P>>(cref_<P>().linear_scale(index{}, linear_id{}))),
                   decltype(ref_<P>().on_linear_scale_backward(index{}, linear_id{}, cref_<row_vector<S_<P>>>()))>>
    : std::true_type {};

template <typename P, typename = void>
struct has_on_sublayer_output : std::false_type {};
template <typename P>
struct has_on_sublayer_output<
    P, std::void_t<decltype(cref_<P>().on_sublayer_output(index{}, sublayer{}, placement{}, ref_<M_<P>>(),
                                                          cref_<hook_context>(), ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_sublayer_output_backward(index{}, sublayer{}, placement{}, ref_<M_<P>>(),
                                                                  cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_norm_output : std::false_type {};
template <typename P>
struct has_on_norm_output<
    P, std::void_t<decltype(cref_<P>().on_norm_output(index{}, norm_site{}, ref_<M_<P>>(), cref_<hook_context>(),
                                                      ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_norm_output_backward(index{}, norm_site{}, ref_<M_<P>>(),
                                                              cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_residual_norm : std::false_type {};
template <typename P>
struct has_on_residual_norm<
    P, std::void_t<decltype(bool(cref_<P>().reads_residual_norm(index{}, sublayer{}))),
                   decltype(cref_<P>().on_residual_norm(index{}, sublayer{}, cref_<M_<P>>(), ref_<M_<P>>(),
                                                        cref_<hook_context>(), ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_residual_norm_backward(index{}, sublayer{}, ref_<M_<P>>(), ref_<M_<P>>(),
                                                                cref_<policy_tape_t<P>>()))>> : std::true_type {};

template <typename P, typename = void>
struct has_on_encoder_output : std::false_type {};
template <typename P>
struct has_on_encoder_output<
    P, std::void_t<decltype(cref_<P>().on_encoder_output(cref_<M_<P>>(), ref_<M_<P>>(), cref_<hook_context>(),
                                                         ref_<policy_tape_t<P>>())),
                   decltype(ref_<P>().on_encoder_output_backward(ref_<M_<P>>(), cref_<policy_tape_t<P>>()))>>
    : std::true_type {};

template <typename P, typename = void>
struct has_position_offset : std::false_type {};
template <typename P>
struct has_position_offset<P, std::void_t<decltype(index(cref_<P>().position_offset()))>> : std::true_type {};

template <typename P, typename = void>
struct has_lowest_layer : std::false_type {};
template <typename P>
struct has_lowest_layer<P, std::void_t<decltype(index(cref_<P>().lowest_layer(index{})))>> : std::true_type {};

template <typename P, typename = void>
struct has_scalar_type : std::false_type {};
template <typename P>
struct has_scalar_type<P, std::void_t<typename P::scalar_type>> : std::true_type {};
}  // namespace detail

template <typename P> inline constexpr bool has_on_embeddings_v = detail::has_on_embeddings<P>::value;
template <typename P> inline constexpr bool has_on_input_embeddings_v = detail::has_on_input_embeddings<P>::value;
template <typename P> inline constexpr bool has_on_layer_input_v = detail::has_on_layer_input<P>::value;
template <typename P> inline constexpr bool has_kv_prefix_v = detail::has_kv_prefix<P>::value;
template <typename P> inline constexpr bool has_on_weight_v = detail::has_on_weight<P>::value;
template <typename P> inline constexpr bool has_on_linear_v = detail::has_on_linear<P>::value;
template <typename P> inline constexpr bool has_linear_scale_v = detail::has_linear_scale<P>::value;
template <typename P> inline constexpr bool has_on_sublayer_output_v = detail::has_on_sublayer_output<P>::value;
template <typename P> inline constexpr bool has_on_norm_output_v = detail::has_on_norm_output<P>::value;
template <typename P> inline constexpr bool has_on_residual_norm_v = detail::has_on_residual_norm<P>::value;
template <typename P> inline constexpr bool has_on_encoder_output_v = detail::has_on_encoder_output<P>::value;
template <typename P> inline constexpr bool has_lowest_layer_v = detail::has_lowest_layer<P>::value;

/// True for a type usable as an encoder policy: it names its `scalar_type`.
template <typename P>
inline constexpr bool is_policy_v = detail::has_scalar_type<P>::value;

template <typename Scalar>
class any_policy;  // methods.hpp

namespace detail {
template <typename P>
struct is_any_policy : std::false_type {};
template <typename S>
struct is_any_policy<any_policy<S>> : std::true_type {};
}  // namespace detail

/// True for `any_policy<S>`: a registered policy held by value, reached through `visit`.
template <typename P>
inline constexpr bool is_any_policy_v = detail::is_any_policy<P>::value;

/// Where the text's positions start for this policy (`position_offset()`, e.g. after a K/V
/// prefix that stands for earlier positions; 0 without it).
template <typename P>
index position_offset_of(const P& p) {
  if constexpr (detail::has_position_offset<P>::value) {
    return p.position_offset();
  } else {
    (void)p;
    return 0;
  }
}

/// Lowest layer whose backward must run for this policy (0 = all of them).
template <typename P>
index lowest_trainable_layer(const P& p, index num_layers) {
  if constexpr (has_lowest_layer_v<P>) {
    return p.lowest_layer(num_layers);
  } else {
    (void)p;
    (void)num_layers;
    return 0;
  }
}

}  // namespace peft

#endif  // PEFT_POLICIES_POLICY_TRAITS_HPP
