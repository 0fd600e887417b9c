// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_ADAPTER_FUSION_HPP
#define PEFT_POLICIES_ADAPTER_FUSION_HPP

/// @file adapter_fusion.hpp
/// AdapterFusion (Pfeiffer et al., EACL 2021, arXiv 2005.00247): a learned attention over the
/// outputs of N frozen, already-trained bottleneck adapters, per layer at the FFN output,
/// as AdapterHub's `BertFusion` ("dynamic" config; `adapter-hub/adapters:
/// src/adapters/methods/modeling.py`, wired in `methods/bottleneck.py:compose_fuse`):
///
///     up_n = adapter_n branch of h (no residual)            h: the FFN sub-layer output
///     Q    = h Wq^T + bq        K_n = up_n Wk^T + bk        V_n = up_n Wv^T (no bias)
///     s_n  = <Q, K_n>  (no 1/sqrt(d) scaling)   s = Dropout(s)   α = softmax_n(s / T)
///     out  = Σ_n α_n V_n + h
///
/// with `Wq, Wk ~ N(0, 0.02)`, zero biases, and `Wv = I` with off-diagonals 1e-6
/// (`value_initialized`). The regulariser `Σ_layers ‖I − Wv‖²_F` (AdapterHub adds it with
/// weight 0.01, `model_mixin.py:get_fusion_regularization_loss`) is exposed as
/// `regularization_loss()` / `add_regularization_grad(weight)`; it is zero when the fusion
/// has no trainable value matrix (`value = false`, AdapterHub's "static" config).
///
/// The adapters are held as `shared_ptr<const bottleneck_adapter>`: they are frozen and their
/// parameters are not in this policy's store. Fusion runs where the adapters' FFN units run
/// (their placement, every layer they all adapt); every fused adapter must have the same
/// FFN layers and placement and no attention-position units.
///
/// Checkpoint keys: `encoder.layer.{i}.output.adapter_fusion_layer.{a,b,c}.query.weight`,
/// `.query.bias`, `.key.weight`, `.key.bias`, `.value.weight` (AdapterHub names; `{a,b,c}`
/// is the comma-joined adapter names). A saved fusion also carries the fused adapters'
/// tensors under their own keys and their configs under "adapters", so that it reloads on
/// its own and reproduces its outputs exactly.
///
/// The query and the adapters read what the adapters read: the FFN sub-layer output `h`, or,
/// for adapters with `original_ln_before` (AdapterHub's Pfeiffer / seq_bn), `z = LN2(h + x)`
/// through the encoder's `on_residual_norm` hook; the residual added to `Σ α_n V_n` is `h`, or
/// `z` when the adapters have `residual_before_ln = false` (`bottleneck.py:compose_fuse`).
///
/// Departures from AdapterHub: the temperature is a fixed value (AdapterHub's optional 50 → 1
/// annealing mutates state in the forward pass); fusion is only at the FFN position.

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../ops/dropout.hpp"
#include "bottleneck_adapter.hpp"
#include "policy_config.hpp"
#include "policy_tensors.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Hyper-parameters of an AdapterFusion layer (defaults: AdapterHub's "dynamic" config).
struct adapter_fusion_config {
  bool query = true;              ///< learn Wq, bq (else Q = h)
  bool key = true;                ///< learn Wk, bk (else K_n = up_n)
  bool value = true;              ///< learn Wv (else V_n = up_n); the regulariser needs it
  bool value_initialized = true;  ///< Wv = I (off-diagonals 1e-6) instead of N(0, 0.02)
  bool regularization = true;     ///< ‖I − Wv‖² is reported by regularization_loss()
  double regularization_weight = 0.01;  ///< AdapterHub's factor, for callers that want it
  double temperature = 1.0;       ///< softmax temperature T (fixed)
  double dropout = 0.1;           ///< dropout on the attention scores (BERT's attention dropout)
  double init_std = 0.02;         ///< N(0, std) for Wq, Wk (and Wv when not value_initialized)
};

/// AdapterFusion over N frozen bottleneck adapters.
/// @tparam Scalar float or double
template <typename Scalar = float>
class adapter_fusion {
  static_assert(is_supported_scalar_v<Scalar>, "peft::adapter_fusion: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  using adapter_type = bottleneck_adapter<Scalar>;
  using adapter_ptr = std::shared_ptr<const adapter_type>;
  using config_type = adapter_fusion_config;
  static constexpr const char* peft_type = "ADAPTER_FUSION";

  /// Per fused layer: what the backward needs.
  struct layer_record {
    mat h;                    ///< fusion input (FFN sub-layer output)
    std::vector<mat> pre;     ///< per adapter: pre-activation of its branch
    std::vector<mat> up;      ///< per adapter: branch output (keys/values read it)
    mat q;                    ///< query after its projection
    std::vector<mat> k, v;    ///< per adapter: keys and values after their projections
    mat alpha;                ///< [rows x N] attention weights
    mat drop;                 ///< [rows x N] dropout scales on the scores (empty: none)
  };
  struct tape_type {
    std::vector<layer_record> layers;
  };

  /// @param adapters the frozen, trained adapters (at least 2 for a meaningful fusion; 1 is allowed)
  /// @throws peft::invalid_argument for a bad config, a null adapter, adapters built for another
  ///   shape, or adapters with different locations, names repeated, or attention-position units
  adapter_fusion(const encoder_shape& shape, std::vector<adapter_ptr> adapters, const adapter_fusion_config& cfg,
                 std::uint64_t seed)
      : m_shape(shape), m_cfg(cfg), m_adapters(std::move(adapters)) {
    validate();
    build(seed);
  }

  const adapter_fusion_config& config() const noexcept { return m_cfg; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  const std::vector<adapter_ptr>& adapters() const noexcept { return m_adapters; }
  /// "a,b,c": the adapter names joined by commas (the `{a,b,c}` key segment).
  const std::string& fusion_name() const noexcept { return m_name; }
  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  /// Trainable parameters (the fusion layers only; the adapters are frozen).
  index num_parameters() const noexcept { return m_params.size(); }
  double share_of_backbone() const { return backbone_share(*this, m_shape); }
  /// Layers where fusion runs.
  const std::vector<index>& fused_layers() const noexcept { return m_layers; }
  index lowest_layer(index num_layers) const { return m_layers.empty() ? num_layers : m_layers.front(); }

  /// Σ over fused layers of ‖I − Wv‖²_F; 0 without a trainable value matrix or with
  /// `regularization = false`. Multiply by `config().regularization_weight` for AdapterHub's term.
  double regularization_loss() const;
  /// Adds `weight · ∂/∂Wv Σ‖I − Wv‖²` = `2·weight·(Wv − I)` to the value gradients (no-op
  /// when the regulariser does not apply).
  void add_regularization_grad(double weight);

  // --- hooks -----------------------------------------------------------------------------
  void on_sublayer_output(index l, sublayer s, placement p, mat& h, const hook_context& ctx,
                          tape_type& t) const;

  void on_sublayer_output_backward(index l, sublayer s, placement p, mat& dh, const tape_type& t);

  /// True where the fusion reads the normed residual sum (adapters with `original_ln_before`).
  bool reads_residual_norm(index l, sublayer s) const noexcept {
    return s == sublayer::ffn && m_adapters[0]->config().original_ln_before && fused_index(l) >= 0;
  }
  void on_residual_norm(index l, sublayer s, const mat& z, mat& h, const hook_context& ctx, tape_type& t) const;
  void on_residual_norm_backward(index l, sublayer s, mat& dh, mat& dz, const tape_type& t);

  // --- checkpoints -----------------------------------------------------------------------
  nlohmann::json config_json() const;

  /// Rebuilds the fusion and its adapters (values zero until loaded).
  static adapter_fusion from_config(const nlohmann::json& j, const encoder_shape& shape);

  /// The fusion blocks plus every fused adapter's tensors (under the adapter's own keys).
  std::map<std::string, tensor> export_tensors() const {
    auto out = store_tensors(m_params);
    for (const auto& a : m_adapters)
      for (auto& kv : store_tensors(a->parameters())) out.emplace(kv.first, std::move(kv.second));
    return out;
  }
  /// Sets the fusion blocks and replaces the adapters by copies holding the given values.
  void import_tensors(const std::map<std::string, tensor>& tensors);

private:
  bool regularized() const noexcept { return m_cfg.value && m_cfg.regularization; }
  bool after_norm() const noexcept { return m_adapters[0]->config().original_ln_before; }

  /// `Σ_n α_n V_n` of fused layer @p l on input @p z (the query and the adapters' input).
  mat fuse(index l, const mat& z, const hook_context& ctx, tape_type& t) const;
  /// Backward of fuse: parameter gradients from @p dout, input gradient added to @p dz.
  void fuse_backward(index l, const mat& dout, mat& dz, const tape_type& t);

  index fused_index(index l) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    return m_fused[static_cast<std::size_t>(l)];
  }

  /// Block of part `which` (0 q.w, 1 q.b, 2 k.w, 3 k.b, 4 v.w) of fused layer i.
  index block(std::size_t i, int which) const { return m_part[i][static_cast<std::size_t>(which)]; }

  void validate();

  void build(std::uint64_t seed);

  encoder_shape m_shape;
  adapter_fusion_config m_cfg;
  std::vector<adapter_ptr> m_adapters;
  std::string m_name;
  placement m_where = placement::post_dropout;
  std::vector<index> m_fused;  ///< per layer: position in m_layers, or -1
  std::vector<index> m_layers;
  std::vector<std::array<index, 5>> m_part;
  parameter_store<Scalar> m_params;
};

template <typename Scalar>
double adapter_fusion<Scalar>::regularization_loss() const {
  if (!regularized()) return 0.0;
  double s = 0;
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    const auto V = m_params.value(block(i, 4));
    s += (mat::Identity(V.rows(), V.cols()) - V).template cast<double>().squaredNorm();
  }
  return s;
}

template <typename Scalar>
void adapter_fusion<Scalar>::add_regularization_grad(double weight) {
  if (!std::isfinite(weight))
    throw invalid_argument("adapter_fusion::add_regularization_grad: weight expected finite, got " +
                           std::to_string(weight));
  if (!regularized()) return;
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    const index b = block(i, 4);
    const auto V = m_params.value(b);
    m_params.grad(b) += static_cast<Scalar>(2.0 * weight) * (V - mat::Identity(V.rows(), V.cols()));
  }
}

template <typename Scalar>
void adapter_fusion<Scalar>::on_sublayer_output(index l, sublayer s, placement p, mat& h,
                                                const hook_context& ctx, tape_type& t) const {
  if (s != sublayer::ffn || p != m_where || after_norm() || fused_index(l) < 0) return;
  h += fuse(l, h, ctx, t);
}

template <typename Scalar>
void adapter_fusion<Scalar>::on_sublayer_output_backward(index l, sublayer s, placement p, mat& dh,
                                                         const tape_type& t) {
  if (s != sublayer::ffn || p != m_where || after_norm() || fused_index(l) < 0) return;
  const mat dout = dh;  // out = fuse(h) + h: dh keeps the residual path and gains the input's
  fuse_backward(l, dout, dh, t);
}

template <typename Scalar>
void adapter_fusion<Scalar>::on_residual_norm(index l, sublayer s, const mat& z, mat& h, const hook_context& ctx,
                                              tape_type& t) const {
  if (!reads_residual_norm(l, s)) return;
  mat d = fuse(l, z, ctx, t);
  if (m_adapters[0]->config().residual_before_ln) {
    h += d;
  } else {
    h = z + d;
  }
}

template <typename Scalar>
void adapter_fusion<Scalar>::on_residual_norm_backward(index l, sublayer s, mat& dh, mat& dz, const tape_type& t) {
  if (!reads_residual_norm(l, s)) return;
  fuse_backward(l, dh, dz, t);
  if (!m_adapters[0]->config().residual_before_ln) {
    dz += dh;
    dh.setZero();
  }
}

template <typename Scalar>
matrix<Scalar> adapter_fusion<Scalar>::fuse(index l, const mat& h, const hook_context& ctx, tape_type& t) const {
  const index fi = fused_index(l);
  const std::size_t N = m_adapters.size();
  layer_record r;
  if (ctx.record) r.h = h;
  r.pre.resize(N);
  r.up.resize(N);
  r.k.resize(N);
  r.v.resize(N);
  for (std::size_t n = 0; n < N; ++n) r.up[n] = m_adapters[n]->adapter_delta(l, sublayer::ffn, h, &r.pre[n]);
  const auto i = static_cast<std::size_t>(fi);
  if (m_cfg.query) {
    r.q = h * m_params.value(block(i, 0)).transpose();
    r.q.rowwise() += m_params.value(block(i, 1)).col(0).transpose();
  } else {
    r.q = h;
  }
  const index rows = h.rows();
  mat scores(rows, static_cast<index>(N));
  for (std::size_t n = 0; n < N; ++n) {
    if (m_cfg.key) {
      r.k[n] = r.up[n] * m_params.value(block(i, 2)).transpose();
      r.k[n].rowwise() += m_params.value(block(i, 3)).col(0).transpose();
    } else {
      r.k[n] = r.up[n];
    }
    r.v[n] = m_cfg.value ? mat(r.up[n] * m_params.value(block(i, 4)).transpose()) : r.up[n];
    scores.col(static_cast<index>(n)) = (r.q.array() * r.k[n].array()).rowwise().sum().matrix();
  }
  if (ctx.run_mode == mode::train && m_cfg.dropout > 0) {
    if (!ctx.gen)
      throw invalid_argument("adapter_fusion: forward: train mode with dropout needs a random generator");
    ops::make_dropout_mask(rows, static_cast<index>(N), m_cfg.dropout, *ctx.gen, r.drop);
    scores.array() *= r.drop.array();
  }
  scores /= static_cast<Scalar>(m_cfg.temperature);
  r.alpha.resize(rows, static_cast<index>(N));
  for (index row = 0; row < rows; ++row) {
    const Scalar mx = scores.row(row).maxCoeff();
    r.alpha.row(row) = (scores.row(row).array() - mx).exp().matrix();
    r.alpha.row(row) /= r.alpha.row(row).sum();
  }
  mat out = mat::Zero(h.rows(), h.cols());
  for (std::size_t n = 0; n < N; ++n)
    out.array() += r.v[n].array().colwise() * r.alpha.col(static_cast<index>(n)).array();
  if (ctx.record) {
    if (t.layers.size() != m_layers.size()) t.layers.assign(m_layers.size(), layer_record());
    t.layers[i] = std::move(r);
  }
  return out;
}

template <typename Scalar>
void adapter_fusion<Scalar>::fuse_backward(index l, const mat& dout, mat& dz, const tape_type& t) {
  const index fi = fused_index(l);
  const auto i = static_cast<std::size_t>(fi);
  if (fi < 0 || i >= t.layers.size() || t.layers[i].alpha.rows() != dout.rows())
    throw invalid_argument("adapter_fusion: backward: no recorded forward for layer " + std::to_string(l) +
                           " (was forward called with a tape?)");
  const layer_record& r = t.layers[i];
  const std::size_t N = m_adapters.size();
  const index rows = dout.rows();
  // out = Σ α_n V_n; dz (the input's gradient) gains the query's and the adapters' paths
  mat dalpha(rows, static_cast<index>(N));
  for (std::size_t n = 0; n < N; ++n)
    dalpha.col(static_cast<index>(n)) = (dout.array() * r.v[n].array()).rowwise().sum().matrix();
  // softmax: ds = α ⊙ (dα − Σ α dα), then 1/T and the dropout mask
  mat ds = r.alpha.array() *
           (dalpha.colwise() - (r.alpha.array() * dalpha.array()).rowwise().sum().matrix()).array();
  ds /= static_cast<Scalar>(m_cfg.temperature);
  if (r.drop.size() != 0) ds.array() *= r.drop.array();
  mat dq = mat::Zero(rows, r.q.cols());
  std::vector<mat> dup(N);
  for (std::size_t n = 0; n < N; ++n) {
    const auto c = ds.col(static_cast<index>(n)).array();
    dq.array() += r.k[n].array().colwise() * c;
    mat dk = (r.q.array().colwise() * c).matrix();
    mat dv = (dout.array().colwise() * r.alpha.col(static_cast<index>(n)).array()).matrix();
    if (m_cfg.key) {
      m_params.grad(block(i, 2)).noalias() += dk.transpose() * r.up[n];
      m_params.grad(block(i, 3)) += dk.colwise().sum().transpose();
      dup[n] = dk * m_params.value(block(i, 2));
    } else {
      dup[n] = dk;
    }
    if (m_cfg.value) {
      m_params.grad(block(i, 4)).noalias() += dv.transpose() * r.up[n];
      dup[n].noalias() += dv * m_params.value(block(i, 4));
    } else {
      dup[n] += dv;
    }
  }
  if (m_cfg.query) {
    m_params.grad(block(i, 0)).noalias() += dq.transpose() * r.h;
    m_params.grad(block(i, 1)) += dq.colwise().sum().transpose();
    dz.noalias() += dq * m_params.value(block(i, 0));
  } else {
    dz += dq;
  }
  for (std::size_t n = 0; n < N; ++n)
    m_adapters[n]->adapter_delta_backward_input(l, sublayer::ffn, r.pre[n], dup[n], dz);
}

template <typename Scalar>
nlohmann::json adapter_fusion<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["fusion_name"] = m_name;
  j["query"] = m_cfg.query;
  j["key"] = m_cfg.key;
  j["value"] = m_cfg.value;
  j["value_initialized"] = m_cfg.value_initialized;
  j["regularization"] = m_cfg.regularization;
  j["regularization_weight"] = m_cfg.regularization_weight;
  j["temperature"] = m_cfg.temperature;
  j["dropout_prob"] = m_cfg.dropout;
  j["init_std"] = m_cfg.init_std;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& a : m_adapters) list.push_back(a->config_json());
  j["adapters"] = list;
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
adapter_fusion<Scalar> adapter_fusion<Scalar>::from_config(const nlohmann::json& j,
                                                           const encoder_shape& shape) {
  const std::string where = "adapter_fusion::from_config";
  check_config_header(j, peft_type, shape, where);
  adapter_fusion_config c;
  c.query = config_field<bool>(j, "query", where);
  c.key = config_field<bool>(j, "key", where);
  c.value = config_field<bool>(j, "value", where);
  c.value_initialized = config_field<bool>(j, "value_initialized", where);
  c.regularization = config_field<bool>(j, "regularization", where);
  c.regularization_weight = config_field<double>(j, "regularization_weight", where);
  c.temperature = config_field<double>(j, "temperature", where);
  c.dropout = config_field<double>(j, "dropout_prob", where);
  c.init_std = config_field<double>(j, "init_std", where);
  if (!j.contains("adapters") || !j["adapters"].is_array())
    throw invalid_argument(where + ": field 'adapters' expected an array of adapter configs");
  std::vector<adapter_ptr> ads;
  for (const auto& aj : j["adapters"])
    ads.push_back(std::make_shared<const adapter_type>(adapter_type::from_config(aj, shape)));
  adapter_fusion f(shape, std::move(ads), c, 0);
  const auto name = config_field<std::string>(j, "fusion_name", where);
  if (name != f.m_name)
    throw invalid_argument(where + ": field 'fusion_name' expected \"" + f.m_name +
                           "\" (from the adapters), got \"" + name + "\"");
  f.m_params.values().setZero();
  return f;
}

template <typename Scalar>
void adapter_fusion<Scalar>::import_tensors(const std::map<std::string, tensor>& tensors) {
  const std::string where = "adapter_fusion::import_tensors";
  check_tensor_set(export_tensors(), tensors, where);
  auto pick = [&](const parameter_store<Scalar>& s) {
    std::map<std::string, tensor> sub;
    for (const auto& b : s.blocks()) sub.emplace(b.name, tensors.at(b.name));
    return sub;
  };
  load_store_tensors(m_params, pick(m_params), where);
  for (auto& a : m_adapters) {
    auto copy = std::make_shared<adapter_type>(*a);
    load_store_tensors(copy->parameters(), pick(copy->parameters()), where);
    a = std::move(copy);
  }
}

template <typename Scalar>
void adapter_fusion<Scalar>::validate() {
  const std::string where = "adapter_fusion::adapter_fusion";
  auto fail = [&](const std::string& what) { throw invalid_argument(where + ": " + what); };
  if (m_shape.num_layers <= 0 || static_cast<index>(m_shape.output_width.size()) != m_shape.num_layers)
    fail("encoder shape expected num_layers > 0 with one output_width per layer");
  if (m_adapters.empty()) fail("adapters expected at least 1, got 0");
  if (!(m_cfg.temperature > 0) || !std::isfinite(m_cfg.temperature))
    fail("temperature expected > 0, got " + std::to_string(m_cfg.temperature));
  if (!(m_cfg.dropout >= 0 && m_cfg.dropout < 1))
    fail("dropout expected in [0, 1), got " + std::to_string(m_cfg.dropout));
  if (!(m_cfg.init_std >= 0) || !std::isfinite(m_cfg.init_std))
    fail("init_std expected finite and >= 0, got " + std::to_string(m_cfg.init_std));
  if (!std::isfinite(m_cfg.regularization_weight) || m_cfg.regularization_weight < 0)
    fail("regularization_weight expected finite and >= 0, got " +
         std::to_string(m_cfg.regularization_weight));
  for (std::size_t n = 0; n < m_adapters.size(); ++n) {
    const std::string at = "adapters[" + std::to_string(n) + "]";
    if (!m_adapters[n]) fail(at + " expected non-null, got null");
    const auto& a = *m_adapters[n];
    if (a.shape().model_type != m_shape.model_type || a.shape().num_layers != m_shape.num_layers ||
        a.shape().output_width != m_shape.output_width)
      fail(at + " ('" + a.config().adapter_name + "') was built for another encoder shape");
    for (index l = 0; l < m_shape.num_layers; ++l) {
      if (a.adapts(l, sublayer::attention))
        fail(at + " ('" + a.config().adapter_name + "') has an attention-position unit at layer " +
             std::to_string(l) + "; fusion runs at the FFN output only (use location = ffn)");
      if (a.adapts(l, sublayer::ffn) != m_adapters[0]->adapts(l, sublayer::ffn))
        fail(at + " ('" + a.config().adapter_name +
             "') adapts different FFN layers than adapters[0] at layer " + std::to_string(l));
    }
    if (a.config().original_ln_before != m_adapters[0]->config().original_ln_before ||
        a.config().residual_before_ln != m_adapters[0]->config().residual_before_ln)
      fail(at + " ('" + a.config().adapter_name +
           "') original_ln_before / residual_before_ln expected as adapters[0]'s (the fusion reads one input)");
    if (a.config().where != m_adapters[0]->config().where)
      fail(at + " placement expected " + placement_name(m_adapters[0]->config().where) +
           " (as adapters[0]), got " + placement_name(a.config().where));
    for (std::size_t k = 0; k < n; ++k)
      if (m_adapters[k]->config().adapter_name == a.config().adapter_name)
        fail(at + " adapter_name expected distinct names, got \"" + a.config().adapter_name + "\" twice");
  }
}

template <typename Scalar>
void adapter_fusion<Scalar>::build(std::uint64_t seed) {
  m_where = m_adapters[0]->config().where;
  for (std::size_t n = 0; n < m_adapters.size(); ++n)
    m_name += (n ? "," : "") + m_adapters[n]->config().adapter_name;
  m_fused.assign(static_cast<std::size_t>(m_shape.num_layers), -1);
  rng gen(seed);
  for (index l = 0; l < m_shape.num_layers; ++l) {
    if (!m_adapters[0]->adapts(l, sublayer::ffn)) continue;
    m_fused[static_cast<std::size_t>(l)] = static_cast<index>(m_layers.size());
    m_layers.push_back(l);
    const index W = m_shape.output_width[static_cast<std::size_t>(l)];
    const std::string pre =
        "encoder.layer." + std::to_string(l) + ".output.adapter_fusion_layer." + m_name + ".";
    std::array<index, 5> part{-1, -1, -1, -1, -1};
    auto normal = [&](index b) {
      auto v = m_params.value(b);
      for (index k = 0; k < v.size(); ++k) v.data()[k] = static_cast<Scalar>(gen.normal() * m_cfg.init_std);
    };
    if (m_cfg.query) {
      part[0] = m_params.add(pre + "query.weight", W, W, param_group::weight);
      part[1] = m_params.add(pre + "query.bias", W, 1, param_group::bias);
      normal(part[0]);
    }
    if (m_cfg.key) {
      part[2] = m_params.add(pre + "key.weight", W, W, param_group::weight);
      part[3] = m_params.add(pre + "key.bias", W, 1, param_group::bias);
      normal(part[2]);
    }
    if (m_cfg.value) {
      part[4] = m_params.add(pre + "value.weight", W, W, param_group::weight);
      if (m_cfg.value_initialized) {
        m_params.value(part[4]).setConstant(static_cast<Scalar>(1e-6));
        m_params.value(part[4]).diagonal().setOnes();
      } else {
        normal(part[4]);
      }
    }
    m_part.push_back(part);
  }
  m_params.zero_grad();
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_ADAPTER_FUSION
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_ADAPTER_FUSION_HPP
