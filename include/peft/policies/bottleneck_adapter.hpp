// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_BOTTLENECK_ADAPTER_HPP
#define PEFT_POLICIES_BOTTLENECK_ADAPTER_HPP

/// @file bottleneck_adapter.hpp
/// Bottleneck adapters on the sub-layer outputs: Houlsby et al. 2019 (arXiv 1902.00751),
/// Pfeiffer et al. 2021 (AdapterHub "seq_bn") and the LiST adapter (Wang et al. 2022,
/// arXiv 2110.06274).
///
/// One adapter unit per adapted (layer, sub-layer), with the residual inside the adapter:
///
///     A(z) = z + f(z W_down^T + b_down) W_up^T + b_up        W_down: [m x W], W_up: [W x m]
///
/// applied to the attention-output and/or FFN-output projection's result, either before
/// its hidden dropout (LiST: `microsoft/LiST:src/model_adaptation.py`, the "linear_after"
/// / "LiST" choice `x + x W1^T W2^T`) or after it (Houlsby: `google-research/adapter-bert:
/// modeling.py:feedforward_adapter`, AdapterHub `methods/modeling.py:Adapter`), always
/// before the residual add and LayerNorm of the layer.
///
/// Checkpoint keys follow AdapterHub (`methods/bottleneck.py`, BERT module paths without the
/// model prefix): `encoder.layer.{i}.attention.output.adapters.{name}.adapter_down.0.weight`,
/// `...adapter_down.0.bias`, `...adapter_up.weight`, `...adapter_up.bias`, and
/// `encoder.layer.{i}.output.adapters.{name}...` for the FFN position.
///
/// AdapterHub's other bottleneck settings (`methods/modeling.py:Adapter.pre_forward`,
/// `bottleneck.py:bottleneck_layer_forward`) are config fields:
///  - `scaling` multiplies the branch: `scaling * (f(z W_down^T + b_down) W_up^T + b_up)`;
///  - `original_ln_before`: the unit reads `z = LN(h + x)`, the sub-layer output `h` after the
///    block's own residual add and LayerNorm (the encoder's `on_residual_norm` hook, post-norm
///    encoders only), and the block then computes `LN(h + A + x)` with the same LayerNorm;
///  - `residual_before_ln`: the branch is added to `h` (true) or, with `original_ln_before`,
///    to `z` (false): `LN(z + A(z) + x)`.
///
/// Departures from the references (also in the README):
///  - AdapterHub's Pfeiffer config feeds the adapter `LN2(h + x)` (`original_ln_before`). The
///    `pfeiffer()` preset here keeps `original_ln_before = false` (the adapter reads `h`) so
///    that it also runs on pre-norm encoders such as USE-lite; set the field (or load an
///    AdapterHub `seq_bn` folder) for AdapterHub's exact computation on a BERT-family encoder.
///    Pfeiffer's other settings (FFN only, ReLU, N(0, 0.02) init, reduction factor 16) are kept.
///  - Houlsby's original code also trains every LayerNorm and the head; this policy holds
///    only the adapters (heads are separate; LayerNorms stay frozen).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../ops/activation.hpp"
#include "../ops/linear.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Which sub-layers of a layer get an adapter.
enum class adapter_location { attention, ffn, both };
/// Non-linearity between the down- and up-projection (`identity`: the linear LiST adapter).
enum class adapter_activation { identity, relu, gelu, gelu_tanh, swish };
/// Weight initialisation (biases always start at zero).
enum class adapter_init {
  truncated_normal,  ///< N(0, std) re-drawn outside ±2 std (TF truncated_normal_initializer)
  normal             ///< N(0, std)
};

inline const char* to_string(adapter_location v) noexcept {
  switch (v) {
    case adapter_location::attention: return "attention";
    case adapter_location::ffn: return "ffn";
    case adapter_location::both: return "both";
  }
  return "?";
}
inline const char* to_string(adapter_activation v) noexcept {
  switch (v) {
    case adapter_activation::identity: return "identity";
    case adapter_activation::relu: return "relu";
    case adapter_activation::gelu: return "gelu";
    case adapter_activation::gelu_tanh: return "gelu_new";
    case adapter_activation::swish: return "swish";
  }
  return "?";
}
inline const char* to_string(adapter_init v) noexcept {
  return v == adapter_init::truncated_normal ? "truncated_normal" : "normal";
}
inline const char* placement_name(placement p) noexcept {
  return p == placement::pre_dropout ? "pre_dropout" : "post_dropout";
}

/// Hyper-parameters of a bottleneck adapter. Use the presets for the published variants.
struct bottleneck_config {
  index bottleneck_size = 64;     ///< m; when 0, m = width / reduction_factor (at least 1)
  double reduction_factor = 0.0;  ///< used only when bottleneck_size == 0
  adapter_location location = adapter_location::both;
  std::vector<index> layers;      ///< adapted layers; empty = every layer
  placement where = placement::post_dropout;
  adapter_activation activation = adapter_activation::gelu_tanh;
  bool bias = true;
  adapter_init init = adapter_init::truncated_normal;
  double init_std = 1e-3;
  std::string adapter_name = "default";  ///< the `{name}` path segment of the keys
  double scaling = 1.0;            ///< multiplies the branch (AdapterHub `scaling`, a float)
  bool original_ln_before = false; ///< read LN(h + x) instead of h (post-norm encoders)
  bool residual_before_ln = true;  ///< with original_ln_before: add the branch to h (true) or to LN(h + x)

  /// Houlsby et al. (adapter-bert code): both sub-layers, GELU (tanh form, as BERT's TF code),
  /// after dropout, biases, truncated-normal std 1e-3 (near-identity).
  static bottleneck_config houlsby(index size = 64) {
    bottleneck_config c;
    c.bottleneck_size = size;
    return c;
  }
  /// Pfeiffer / AdapterHub "seq_bn": FFN only, ReLU, after dropout, biases, N(0, 0.02).
  /// @param size bottleneck size; 0 = reduction factor 16 (AdapterHub's default)
  static bottleneck_config pfeiffer(index size = 0) {
    bottleneck_config c;
    c.bottleneck_size = size;
    c.reduction_factor = size == 0 ? 16.0 : 0.0;
    c.location = adapter_location::ffn;
    c.activation = adapter_activation::relu;
    c.init = adapter_init::normal;
    c.init_std = 0.02;
    return c;
  }
  /// LiST: `z + z W1^T W2^T` (no bias, no non-linearity), before dropout, both sub-layers,
  /// N(0, 2e-4) (`adapter_init_std`), r = 128.
  static bottleneck_config list(index size = 128) {
    bottleneck_config c;
    c.bottleneck_size = size;
    c.where = placement::pre_dropout;
    c.activation = adapter_activation::identity;
    c.bias = false;
    c.init = adapter_init::normal;
    c.init_std = 2e-4;
    return c;
  }
};
/// The contract's name for the config.
using bottleneck_adapter_config = bottleneck_config;

/// Bottleneck adapters (Houlsby / Pfeiffer / LiST) at the sub-layer outputs.
/// @tparam Scalar float or double
///
/// Forward hooks record the adapter input and pre-activation when `ctx.record`; the backward
/// assumes the forward ran with the same parameter values.
template <typename Scalar = float>
class bottleneck_adapter {
  static_assert(is_supported_scalar_v<Scalar>, "peft::bottleneck_adapter: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  using config_type = bottleneck_config;
  static constexpr const char* peft_type = "BOTTLENECK_ADAPTER";

  /// Per (layer, sub-layer): adapter input z and pre-activation u of the last recorded forward.
  struct tape_type {
    std::vector<mat> z, u;
  };

  /// @throws peft::invalid_argument naming the field for a bad config or encoder shape
  bottleneck_adapter(const encoder_shape& shape, const bottleneck_config& cfg, std::uint64_t seed)
      : m_shape(shape), m_cfg(cfg) {
    validate();
    build(seed);
  }

  const bottleneck_config& config() const noexcept { return m_cfg; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  index num_parameters() const noexcept { return m_params.size(); }
  /// Trainable parameters as a fraction of the backbone's.
  double share_of_backbone() const { return backbone_share(*this, m_shape); }

  /// True when (l, s) holds an adapter unit.
  bool adapts(index l, sublayer s) const noexcept { return slot(l, s) >= 0; }
  /// Bottleneck size m of the unit at layer l (resolved from the reduction factor if needed).
  index bottleneck_size(index l) const { return resolve_size(width(l)); }
  /// Lowest adapted layer (the backward stops there).
  index lowest_layer(index num_layers) const {
    index lo = num_layers;
    for (index l = 0; l < m_shape.num_layers; ++l)
      if (adapts(l, sublayer::attention) || adapts(l, sublayer::ffn)) lo = std::min(lo, l);
    return lo;
  }

  /// The adapter's branch without its residual: `f(z W_down^T + b_down) W_up^T + b_up`.
  /// @param pre_activation when non-null, receives `z W_down^T + b_down` (for the backward)
  /// @throws peft::invalid_argument if (l, s) has no unit or z has the wrong width
  mat adapter_delta(index l, sublayer s, const mat& z, mat* pre_activation = nullptr) const;

  /// Adds to @p dz the gradient, with respect to the unit's input, of the branch
  /// `adapter_delta` given its gradient @p dd and the recorded @p pre_activation. Touches
  /// no parameter gradient (used when the adapter is frozen, e.g. inside AdapterFusion).
  void adapter_delta_backward_input(index l, sublayer s, const mat& pre_activation, const mat& dd, mat& dz) const {
    const index k = checked_slot(l, s, dd.cols(), "bottleneck_adapter::adapter_delta_backward_input");
    mat da = dd * value(k, up_w());
    if (m_cfg.scaling != 1.0) da *= static_cast<Scalar>(m_cfg.scaling);
    activate_backward(pre_activation, da);
    dz.noalias() += da * value(k, 0);
  }

  // --- hooks -----------------------------------------------------------------------------
  void on_sublayer_output(index l, sublayer s, placement p, mat& h, const hook_context& ctx,
                          tape_type& t) const;

  void on_sublayer_output_backward(index l, sublayer s, placement p, mat& dh, const tape_type& t);

  /// True where a unit reads the normed residual sum (`original_ln_before`).
  bool reads_residual_norm(index l, sublayer s) const noexcept {
    return m_cfg.original_ln_before && slot(l, s) >= 0;
  }
  void on_residual_norm(index l, sublayer s, const mat& z, mat& h, const hook_context& ctx, tape_type& t) const;
  void on_residual_norm_backward(index l, sublayer s, mat& dh, mat& dz, const tape_type& t);

  // --- checkpoints -----------------------------------------------------------------------
  nlohmann::json config_json() const;

  /// Rebuilds an adapter (values zero until loaded) from `config_json()` output.
  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static bottleneck_adapter from_config(const nlohmann::json& j, const encoder_shape& shape);

private:
  template <typename E>
  static E parse_enum(const nlohmann::json& j, const char* key, const std::string& where,
                      std::initializer_list<E> all);

  static constexpr index up_w() noexcept { return 2; }
  static std::size_t tape_slot(index l, sublayer s) noexcept {
    return static_cast<std::size_t>(2 * l + (s == sublayer::ffn ? 1 : 0));
  }

  /// The unit at slot k on input z: returns its branch, records z and the pre-activation.
  mat unit_forward(index l, sublayer s, const mat& z, const hook_context& ctx, tape_type& t) const;
  /// Its backward: parameter gradients from @p dd (gradient of the branch), input gradient added to @p dz.
  void unit_backward(index l, sublayer s, const mat& dd, mat& dz, const tape_type& t);

  index width(index l) const { return m_shape.output_width[static_cast<std::size_t>(l)]; }

  index resolve_size(index w) const {
    if (m_cfg.bottleneck_size > 0) return m_cfg.bottleneck_size;
    return std::max<index>(1, static_cast<index>(std::floor(static_cast<double>(w) / m_cfg.reduction_factor)));
  }

  void validate() const;

  void build(std::uint64_t seed);

  /// Block index offset inside a unit: 0 down.w, 1 down.b, 2 up.w, 3 up.b (without biases: 0, -, 1, -).
  index block_offset(index which) const noexcept { return m_cfg.bias ? which : which / 2; }

  index slot(index l, sublayer s) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    return m_slot[static_cast<std::size_t>(2 * l + (s == sublayer::ffn ? 1 : 0))];
  }
  index checked_slot(index l, sublayer s, index cols, const char* where) const;

  Eigen::Map<const mat> value(index k, index which) const { return m_params.value(k + block_offset(which)); }
  Eigen::Map<mat> grad(index k, index which) { return m_params.grad(k + block_offset(which)); }

  void activate(mat& a) const;
  /// du = da * f'(u), in place on da.
  void activate_backward(const mat& u, mat& da) const;

  encoder_shape m_shape;
  bottleneck_config m_cfg;
  std::vector<index> m_slot;  ///< per (layer, sub-layer): first block of the unit, or -1
  parameter_store<Scalar> m_params;
};

template <typename Scalar>
matrix<Scalar> bottleneck_adapter<Scalar>::adapter_delta(index l, sublayer s, const mat& z,
                                                         mat* pre_activation) const {
  const index k = checked_slot(l, s, z.cols(), "bottleneck_adapter::adapter_delta");
  mat u;
  ops::matmul(z, false, value(k, 0), true, u);
  if (m_cfg.bias) u.rowwise() += value(k, 1).col(0).transpose();
  mat a = u;
  activate(a);
  mat d;
  ops::matmul(a, false, value(k, up_w()), true, d);
  if (m_cfg.bias) d.rowwise() += value(k, 3).col(0).transpose();
  if (m_cfg.scaling != 1.0) d *= static_cast<Scalar>(m_cfg.scaling);
  if (pre_activation) *pre_activation = std::move(u);
  return d;
}

template <typename Scalar>
matrix<Scalar> bottleneck_adapter<Scalar>::unit_forward(index l, sublayer s, const mat& z, const hook_context& ctx,
                                                       tape_type& t) const {
  mat u;
  mat d = adapter_delta(l, s, z, &u);
  if (ctx.record) {
    const auto n = static_cast<std::size_t>(2 * m_shape.num_layers);
    if (t.z.size() != n) {
      t.z.assign(n, mat());
      t.u.assign(n, mat());
    }
    t.z[tape_slot(l, s)] = z;
    t.u[tape_slot(l, s)] = std::move(u);
  }
  return d;
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::unit_backward(index l, sublayer s, const mat& dd, mat& dz, const tape_type& t) {
  const index k = slot(l, s);
  const auto i = tape_slot(l, s);
  if (i >= t.z.size() || t.z[i].rows() != dd.rows())
    throw invalid_argument("bottleneck_adapter: backward: no recorded forward for layer " + std::to_string(l) + " " +
                           (s == sublayer::ffn ? "ffn" : "attention") + " (was forward called with a tape?)");
  const mat& z = t.z[i];
  const mat& u = t.u[i];
  mat a = u;
  activate(a);
  const Scalar c = static_cast<Scalar>(m_cfg.scaling);
  const mat scaled = c == Scalar(1) ? mat() : mat(dd * c);
  const mat& dy = c == Scalar(1) ? dd : scaled;  // gradient of the unscaled up-projection
  auto g_up = grad(k, up_w());
  ops::matmul(dy, true, a, false, g_up, true);
  if (m_cfg.bias) grad(k, 3) += dy.colwise().sum().transpose();
  mat da;
  ops::matmul(dy, false, value(k, up_w()), false, da);
  activate_backward(u, da);
  auto g_down = grad(k, 0);
  ops::matmul(da, true, z, false, g_down, true);
  if (m_cfg.bias) grad(k, 1) += da.colwise().sum().transpose();
  ops::matmul(da, false, value(k, 0), false, dz, true);
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::on_sublayer_output(index l, sublayer s, placement p, mat& h,
                                                    const hook_context& ctx, tape_type& t) const {
  if (p != m_cfg.where || m_cfg.original_ln_before || slot(l, s) < 0) return;
  h += unit_forward(l, s, h, ctx, t);
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::on_sublayer_output_backward(index l, sublayer s, placement p, mat& dh,
                                                             const tape_type& t) {
  if (p != m_cfg.where || m_cfg.original_ln_before || slot(l, s) < 0) return;
  unit_backward(l, s, dh, dh, t);  // dh is both the branch's gradient and, with the residual, the input's
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::on_residual_norm(index l, sublayer s, const mat& z, mat& h, const hook_context& ctx,
                                                  tape_type& t) const {
  if (!reads_residual_norm(l, s)) return;
  mat d = unit_forward(l, s, z, ctx, t);
  if (m_cfg.residual_before_ln) {
    h += d;
  } else {
    h = z + d;
  }
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::on_residual_norm_backward(index l, sublayer s, mat& dh, mat& dz,
                                                           const tape_type& t) {
  if (!reads_residual_norm(l, s)) return;
  unit_backward(l, s, dh, dz, t);
  if (!m_cfg.residual_before_ln) {
    dz += dh;
    dh.setZero();
  }
}

template <typename Scalar>
nlohmann::json bottleneck_adapter<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["bottleneck_size"] = m_cfg.bottleneck_size;
  j["reduction_factor"] = m_cfg.reduction_factor;
  j["location"] = to_string(m_cfg.location);
  j["layers"] = m_cfg.layers;
  j["placement"] = placement_name(m_cfg.where);
  j["non_linearity"] = to_string(m_cfg.activation);
  j["bias"] = m_cfg.bias;
  j["init_weights"] = to_string(m_cfg.init);
  j["init_std"] = m_cfg.init_std;
  j["adapter_name"] = m_cfg.adapter_name;
  j["scaling"] = m_cfg.scaling;
  j["original_ln_before"] = m_cfg.original_ln_before;
  j["residual_before_ln"] = m_cfg.residual_before_ln;
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
bottleneck_adapter<Scalar> bottleneck_adapter<Scalar>::from_config(const nlohmann::json& j,
                                                                   const encoder_shape& shape) {
  const std::string where = "bottleneck_adapter::from_config";
  check_config_header(j, peft_type, shape, where);
  bottleneck_config c;
  c.bottleneck_size = config_field<index>(j, "bottleneck_size", where);
  c.reduction_factor = config_field<double>(j, "reduction_factor", where);
  c.location = parse_enum<adapter_location>(
      j, "location", where, {adapter_location::attention, adapter_location::ffn, adapter_location::both});
  c.layers = config_field<std::vector<index>>(j, "layers", where);
  const auto pl = config_field<std::string>(j, "placement", where);
  if (pl == "pre_dropout") {
    c.where = placement::pre_dropout;
  } else if (pl == "post_dropout") {
    c.where = placement::post_dropout;
  } else {
    throw invalid_argument(
        where + ": field 'placement' expected \"pre_dropout\" or \"post_dropout\", got \"" + pl + "\"");
  }
  c.activation = parse_enum<adapter_activation>(
      j, "non_linearity", where,
      {adapter_activation::identity, adapter_activation::relu, adapter_activation::gelu,
       adapter_activation::gelu_tanh, adapter_activation::swish});
  c.bias = config_field<bool>(j, "bias", where);
  c.init = parse_enum<adapter_init>(j, "init_weights", where,
                                    {adapter_init::truncated_normal, adapter_init::normal});
  c.init_std = config_field<double>(j, "init_std", where);
  c.adapter_name = config_field<std::string>(j, "adapter_name", where);
  // Added after checkpoints were first written: absent means AdapterHub's defaults.
  c.scaling = config_field_or<double>(j, "scaling", 1.0, where);
  c.original_ln_before = config_field_or<bool>(j, "original_ln_before", false, where);
  c.residual_before_ln = config_field_or<bool>(j, "residual_before_ln", true, where);
  bottleneck_adapter a(shape, c, 0);
  a.m_params.values().setZero();
  return a;
}

template <typename Scalar>
template <typename E>
E bottleneck_adapter<Scalar>::parse_enum(const nlohmann::json& j, const char* key, const std::string& where,
                                         std::initializer_list<E> all) {
  const auto s = config_field<std::string>(j, key, where);
  std::string names;
  for (E e : all) {
    if (s == to_string(e)) return e;
    names += std::string(names.empty() ? "" : ", ") + "\"" + to_string(e) + "\"";
  }
  throw invalid_argument(where + ": field '" + key + "' expected one of " + names + ", got \"" + s + "\"");
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::validate() const {
  const std::string where = "bottleneck_adapter::bottleneck_adapter";
  auto fail = [&](const std::string& what) { throw invalid_argument(where + ": " + what); };
  if (m_shape.num_layers <= 0)
    fail("encoder num_layers expected > 0, got " + std::to_string(m_shape.num_layers));
  if (static_cast<index>(m_shape.output_width.size()) != m_shape.num_layers)
    fail("encoder output_width entries expected " + std::to_string(m_shape.num_layers) + ", got " +
         std::to_string(m_shape.output_width.size()));
  for (std::size_t l = 0; l < m_shape.output_width.size(); ++l)
    if (m_shape.output_width[l] <= 0) fail("encoder output_width[" + std::to_string(l) + "] expected > 0");
  if (m_cfg.bottleneck_size < 0)
    fail("bottleneck_size expected >= 1 (or 0 with a reduction_factor), got " +
         std::to_string(m_cfg.bottleneck_size));
  if (m_cfg.bottleneck_size == 0 && !(m_cfg.reduction_factor > 0 && std::isfinite(m_cfg.reduction_factor)))
    fail("reduction_factor expected > 0 when bottleneck_size is 0, got " +
         std::to_string(m_cfg.reduction_factor));
  if (!std::isfinite(m_cfg.scaling)) fail("scaling expected finite, got " + std::to_string(m_cfg.scaling));
  if (m_cfg.original_ln_before && m_shape.pre_norm)
    fail("original_ln_before expects a post-norm encoder (the BERT family: the block's LayerNorm after the "
         "sub-layer's residual sum); " + m_shape.model_type + " normalises before each sub-layer");
  if (m_cfg.original_ln_before && m_cfg.where != placement::post_dropout)
    fail("original_ln_before expects placement post_dropout (the unit reads the sub-layer output after its "
         "dropout, residual add and LayerNorm), got pre_dropout");
  if (!(m_cfg.init_std >= 0) || !std::isfinite(m_cfg.init_std))
    fail("init_std expected finite and >= 0, got " + std::to_string(m_cfg.init_std));
  if (m_cfg.adapter_name.empty() || m_cfg.adapter_name.find('.') != std::string::npos)
    fail("adapter_name expected a non-empty path segment without '.', got \"" + m_cfg.adapter_name + "\"");
  for (std::size_t i = 0; i < m_cfg.layers.size(); ++i) {
    const index l = m_cfg.layers[i];
    if (l < 0 || l >= m_shape.num_layers)
      fail("layers[" + std::to_string(i) + "] expected in [0, " + std::to_string(m_shape.num_layers) +
           "), got " + std::to_string(l));
    for (std::size_t k = 0; k < i; ++k)
      if (m_cfg.layers[k] == l) fail("layers expected distinct entries, got " + std::to_string(l) + " twice");
  }
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::build(std::uint64_t seed) {
  const index L = m_shape.num_layers;
  m_slot.assign(static_cast<std::size_t>(2 * L), -1);
  std::vector<bool> chosen(static_cast<std::size_t>(L), m_cfg.layers.empty());
  for (index l : m_cfg.layers) chosen[static_cast<std::size_t>(l)] = true;
  rng gen(seed);
  for (index l = 0; l < L; ++l) {
    if (!chosen[static_cast<std::size_t>(l)]) continue;
    for (int si = 0; si < 2; ++si) {
      const bool att = si == 0;
      if (att && m_cfg.location == adapter_location::ffn) continue;
      if (!att && m_cfg.location == adapter_location::attention) continue;
      const index W = width(l), m = resolve_size(W);
      const std::string pre = "encoder.layer." + std::to_string(l) + (att ? ".attention.output" : ".output") +
                              ".adapters." + m_cfg.adapter_name + ".";
      const index first = m_params.add(pre + "adapter_down.0.weight", m, W, param_group::weight);
      if (m_cfg.bias) m_params.add(pre + "adapter_down.0.bias", m, 1, param_group::bias);
      m_params.add(pre + "adapter_up.weight", W, m, param_group::weight);
      if (m_cfg.bias) m_params.add(pre + "adapter_up.bias", W, 1, param_group::bias);
      m_slot[static_cast<std::size_t>(2 * l + si)] = first;
      // Initialise in key order: down weight, then up weight (biases zero).
      for (index which : {index(0), up_w()}) {
        auto v = m_params.value(first + block_offset(which));
        for (index i = 0; i < v.size(); ++i)
          v.data()[i] = static_cast<Scalar>(m_cfg.init == adapter_init::truncated_normal
                                                ? gen.truncated_normal(m_cfg.init_std)
                                                : gen.normal() * m_cfg.init_std);
      }
    }
  }
  m_params.zero_grad();
}

template <typename Scalar>
index bottleneck_adapter<Scalar>::checked_slot(index l, sublayer s, index cols, const char* where) const {
  const index k = slot(l, s);
  if (k < 0)
    throw invalid_argument(std::string(where) + ": layer " + std::to_string(l) + " " +
                           (s == sublayer::ffn ? "ffn" : "attention") + " has no adapter unit");
  if (cols != width(l)) throw invalid_argument(detail::expected_got(where, "input columns", width(l), cols));
  return k;
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::activate(mat& a) const {
  switch (m_cfg.activation) {
    case adapter_activation::identity: break;
    case adapter_activation::relu: ops::activation_forward(activation::relu, a, a); break;
    case adapter_activation::gelu: ops::activation_forward(activation::gelu_erf, a, a); break;
    case adapter_activation::gelu_tanh: ops::activation_forward(activation::gelu_tanh, a, a); break;
    case adapter_activation::swish: a = a.array() / (Scalar(1) + (-a.array()).exp()); break;
  }
}

template <typename Scalar>
void bottleneck_adapter<Scalar>::activate_backward(const mat& u, mat& da) const {
  switch (m_cfg.activation) {
    case adapter_activation::identity: break;
    case adapter_activation::relu: ops::activation_backward(activation::relu, u, da); break;
    case adapter_activation::gelu: ops::activation_backward(activation::gelu_erf, u, da); break;
    case adapter_activation::gelu_tanh: ops::activation_backward(activation::gelu_tanh, u, da); break;
    case adapter_activation::swish: {
      const auto sg = (Scalar(1) / (Scalar(1) + (-u.array()).exp())).eval();
      da.array() *= sg * (Scalar(1) + u.array() * (Scalar(1) - sg));
      break;
    }
  }
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_BOTTLENECK_ADAPTER_HPP
