// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_MODULAR_PROMPT_HPP
#define PEFT_POLICIES_MODULAR_PROMPT_HPP

/// @file modular_prompt.hpp
/// Deep (and shallow) modular prompts with per-task routers: MPMP / MP², Sun et al.,
/// "Multitask Pre-training of Modular Prompt for Chinese Few-Shot Learning", arXiv
/// 2210.07565 (Hzfinfdu/MPMP `Deep/modeling_bert.py:BertEncoder`, `Shallow/modeling_bert.py`).
///
/// **Math** (deep; `S = L` slots, one per layer; shallow: `S = 1`, the slot of layer 0).
/// For slot `s` with input width `H_s` (the layer's input width: 256 for USE-lite's layer 0),
/// `M` modules, `n` prompt tokens, intrinsic dimension `d` and the selected task `t`:
///
///     r_k  = sigmoid(R[t,s,k])                                    eval mode
///     r_k  = sigmoid((R[t,s,k] + log u_k - log(1 - u_k)) / tau)   train mode, u_k ~ U(0,1)
///     r^_k = r_k / (sum_j r_j + 1e-12)
///     P_{s,k} = z_{s,k} A_s            [1 x d][d x n*H_s], viewed row-major as [n x H_s]
///     p_s  = sum_k r^_k P_{s,k}        (computed as (sum_k r^_k z_{s,k}) A_s)
///     h[b*T + 1 + i, :] += p_s[i, :]   for every sequence b and i = 0..n-1
///
/// The train-mode weights are a relaxed-Bernoulli (binary Concrete) sample with temperature
/// `tau`, one sample per forward call shared by the whole batch, as the reference's
/// `RelaxedBernoulli(tau, logits=R[t]).rsample()`. The prompt is **added** to the residual
/// stream before layer `s` (deep) or before layer 0 only (shallow; the same as adding it to
/// the embedding output); the `[CLS]` row and every row after position `n` are untouched.
///
/// **Input contract.** The caller reserves positions `1..n` of every sequence for the prompt:
/// `[CLS]`, then `n` placeholder tokens (the reference uses ids 1000..1049), then the text.
/// The placeholders' own embeddings stay in the residual stream (the prompt is added to
/// them). A batch whose time axis is shorter than `n + 1`, or a sequence whose positions
/// `1..n` are not all real (mask 1) tokens, throws `peft::invalid_argument`.
///
/// **Parameters** live in three separate stores so that training phases are explicit:
///  - `router_parameters()`: block `router`, `[T x S*M]` (row = task, column `s*M + k`),
///    init U(-1e-3, 1e-3);
///  - `prompt_parameters()`: block `z`, `[S*M x d]` (row `s*M + k`), init U(-1e-3, 1e-3); after
///    `materialize()` instead blocks `prompt.{s}`, `[M x n*H_s]` = `z_s A_s`;
///  - `projection_parameters()`: blocks `A.{s}`, `[d x n*H_s]`, init U(-1/sqrt(n*H_s),
///    1/sqrt(n*H_s)); empty after `materialize()`.
///
/// `stores()` lists only the non-empty stores selected by `set_trainable()` (default: all),
/// so a trainer built on it (`add_policy_parameters`) sees exactly those; e.g.
/// `modular_prompt_parts::router_only()` exposes the `T*S*M` router logits alone. The
/// backward pass accumulates gradients only into the selected stores.
///
/// **Saved form** (`export_tensors()`, F32): `router` `[T, L, M]` (shallow `[T, M]`), `z`
/// `[L, M, d]` (shallow `[M, d]`) and `A.{s}` `[d, n*H_s]` as the reference checkpoint's
/// `router`, `z`, `A` (split per layer, since USE-lite's widths differ), or `prompt.{s}`
/// `[M, n*H_s]` once materialised.
///
/// Departures from the reference: `A` is one block per layer (per-layer widths); the
/// optional `sample_router = false` keeps the deterministic sigmoid in train mode (the
/// reference's downstream stage gets this by running the whole model in `eval()`).
///
/// Call order: the backward assumes the forward was called with `ctx.record` and the same
/// parameter values and task.
/// @tparam Scalar float or double

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../core/batch.hpp"
#include "linear_targets.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// First placeholder token id of the reserved prompt positions (the reference's inputs hold
/// ids 1000..1049 there; see `insert_prompt_placeholders` in `task/prompt_placeholders.hpp`).
inline constexpr std::int32_t mpmp_placeholder_id = 1000;

/// Hyper-parameters of `modular_prompt` (defaults: the reference code's).
struct modular_prompt_config {
  index num_modules = 8;         ///< M, prompt modules per layer (`n_prompts`)
  index num_prompt_tokens = 50;  ///< n, reserved positions 1..n after [CLS] (`n_prompt_tokens`)
  index intrinsic_dim = 300;     ///< d, width of each module's intrinsic vector z (`intrinsic_dim`)
  index num_tasks = 1;           ///< T, one router per task (upstream tasks; 1 downstream)
  bool deep = true;              ///< prompts before every layer; false: before layer 0 only
  double temperature = 1.0;      ///< tau of the relaxed-Bernoulli router samples (train mode)
  bool sample_router = true;     ///< false: deterministic sigmoid routing in train mode too
};

/// Which of the three stores of a `modular_prompt` are trainable (seen by `stores()`).
struct modular_prompt_parts {
  bool router = true;      ///< router logits R
  bool prompts = true;     ///< intrinsic vectors z (the materialised prompts after `materialize()`)
  bool projection = true;  ///< projections A (absent after `materialize()`)

  /// Everything (multi-task pre-training).
  static modular_prompt_parts all() { return {true, true, true}; }
  /// Stage 1 downstream: the router logits only.
  static modular_prompt_parts router_only() { return {true, false, false}; }
  /// Stage 2 downstream: the prompts only (z, or the materialised prompts), router frozen.
  static modular_prompt_parts prompts_only() { return {false, true, false}; }
  /// Nothing (black-box tuning sets values directly).
  static modular_prompt_parts none() { return {false, false, false}; }
};

/// Routed modular prompts over a frozen encoder (MPMP deep / shallow).
/// @tparam Scalar float or double
template <typename Scalar = float>
class modular_prompt {
  static_assert(is_supported_scalar_v<Scalar>, "peft::modular_prompt: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  using vec = vector<Scalar>;
  using rvec = row_vector<Scalar>;
  using config_type = modular_prompt_config;
  static constexpr const char* peft_type = "MODULAR_PROMPT";

  /// Block and tensor names.
  static constexpr const char* router_block = "router";
  static constexpr const char* intrinsic_block = "z";
  static std::string projection_block(index s) { return "A." + std::to_string(s); }
  static std::string prompt_block(index s) { return "prompt." + std::to_string(s); }

  /// Added to the sum of the routing weights before normalising (as the reference).
  static constexpr double normalise_eps = 1e-12;
  /// Half-width of the uniform initialisation of router logits and intrinsic vectors.
  static constexpr double init_range = 1e-3;

  /// What a recorded forward keeps per slot for the backward.
  struct tape_type {
    index batch_size = 0;
    index time = 0;
    index task = 0;
    bool sampled = false;      ///< relaxed-Bernoulli samples (train mode) rather than sigmoid(R)
    std::vector<vec> noise;    ///< per slot: log u - log(1 - u) (empty unless sampled)
    std::vector<vec> weights;  ///< per slot: r before normalisation (empty when not recorded)
  };

  /// @param shape encoder sizes (per-layer input widths)
  /// @param config hyper-parameters
  /// @param seed initialisation seed (router, then z, then A in slot order)
  /// @throws peft::invalid_argument naming the field for a bad config or encoder shape
  modular_prompt(const encoder_shape& shape, const modular_prompt_config& config, std::uint64_t seed = 0);

  const modular_prompt_config& config() const noexcept { return m_cfg; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  bool deep() const noexcept { return m_cfg.deep; }
  /// Number of prompt slots: L (deep) or 1 (shallow).
  index num_slots() const noexcept { return m_cfg.deep ? m_shape.num_layers : 1; }
  /// Hidden width H_s of slot @p s (the input width of its layer).
  index slot_width(index s) const {
    return m_shape.input_width.at(su(check_slot(s, "modular_prompt::slot_width")));
  }
  /// Encoder layer whose input slot @p s is added to (s for deep, 0 for shallow).
  index slot_layer(index s) const { return check_slot(s, "modular_prompt::slot_layer"); }
  /// True once `materialize()` replaced z and A by the prompts they produce.
  bool materialized() const noexcept { return m_materialized; }

  // --- tasks and routers --------------------------------------------------------------------

  index num_tasks() const noexcept { return m_cfg.num_tasks; }
  /// The task whose router row the forward pass uses.
  index task() const noexcept { return m_task; }
  /// @throws peft::invalid_argument when @p t is outside [0, num_tasks)
  void set_task(index t) {
    if (t < 0 || t >= m_cfg.num_tasks)
      throw invalid_argument("modular_prompt::set_task: task expected in [0, " +
                             std::to_string(m_cfg.num_tasks) + "), got " + std::to_string(t));
    m_task = t;
  }
  /// Replaces the router by a fresh one for @p num_tasks tasks (init U(-1e-3, 1e-3)) and
  /// selects task 0, keeping z and A (or the materialised prompts): the downstream start,
  /// where the pre-trained routers are not reused.
  /// @throws peft::invalid_argument when num_tasks < 1
  void reset_router(index num_tasks = 1, std::uint64_t seed = 0);

  /// Normalised evaluation-mode routing weights r^ of slot @p s for the selected task, [M].
  vec routing_weights(index s) const {
    check_slot(s, "modular_prompt::routing_weights");
    vec r = sigmoid(router_row(m_task, s).transpose());
    return r / (r.sum() + static_cast<Scalar>(normalise_eps));
  }

  // --- phases and parameters ----------------------------------------------------------------

  /// Selects the trainable stores (see `stores()`); the backward skips the others.
  void set_trainable(const modular_prompt_parts& parts) noexcept { m_parts = parts; }
  const modular_prompt_parts& trainable() const noexcept { return m_parts; }

  parameter_store<Scalar>& router_parameters() noexcept { return m_router; }
  const parameter_store<Scalar>& router_parameters() const noexcept { return m_router; }
  /// z (`[S*M x d]`), or the materialised prompts after `materialize()`.
  parameter_store<Scalar>& prompt_parameters() noexcept { return m_prompts; }
  const parameter_store<Scalar>& prompt_parameters() const noexcept { return m_prompts; }
  /// The projections A (empty after `materialize()`).
  parameter_store<Scalar>& projection_parameters() noexcept { return m_projection; }
  const parameter_store<Scalar>& projection_parameters() const noexcept { return m_projection; }

  /// The trainable, non-empty stores in the order router, prompts, projection.
  std::vector<parameter_store<Scalar>*> stores() {
    std::vector<parameter_store<Scalar>*> out;
    if (m_parts.router && m_router.size() > 0) out.push_back(&m_router);
    if (m_parts.prompts && m_prompts.size() > 0) out.push_back(&m_prompts);
    if (m_parts.projection && m_projection.size() > 0) out.push_back(&m_projection);
    return out;
  }
  /// A parameter_set over `stores()`; do not let it outlive this policy.
  parameter_set<Scalar> parameters() {
    parameter_set<Scalar> set;
    for (auto* s : stores()) set.add(*s);
    return set;
  }
  /// Parameters currently trainable (the size of `parameters()`).
  index num_parameters() const noexcept {
    index n = 0;
    if (m_parts.router) n += m_router.size();
    if (m_parts.prompts) n += m_prompts.size();
    if (m_parts.projection) n += m_projection.size();
    return n;
  }
  /// Every parameter, trainable or not.
  index total_parameters() const noexcept { return m_router.size() + m_prompts.size() + m_projection.size(); }
  /// Zeroes the gradients of all three stores.
  void zero_grad() {
    m_router.zero_grad();
    m_prompts.zero_grad();
    m_projection.zero_grad();
  }

  // --- intrinsic vectors and prompts --------------------------------------------------------

  /// The intrinsic vectors of slot @p s, `[M x d]`.
  /// @throws peft::invalid_argument after `materialize()` or for a bad slot
  mat intrinsic(index s) const {
    check_slot(s, "modular_prompt::intrinsic");
    require_intrinsic("modular_prompt::intrinsic");
    return z_slot(s);
  }
  /// Router-weighted composition `sum_k r^_k z_{s,k}` with the evaluation-mode weights: the
  /// initial CMA-ES mean of the reference's black-box stage 2.
  rvec mixed_intrinsic(index s) const {
    check_slot(s, "modular_prompt::mixed_intrinsic");
    require_intrinsic("modular_prompt::mixed_intrinsic");
    return routing_weights(s).transpose() * z_slot(s);
  }
  /// Sets all M modules of slot @p s to the same intrinsic vector @p z (the reference's
  /// `param.tile(8, 1)` in black-box tuning); the slot's prompt is then `z A_s` whatever the
  /// router (up to the 1e-12 of the normalisation).
  /// @throws peft::invalid_argument for a bad slot, a size other than d, a non-finite value,
  ///   or after `materialize()`
  void set_intrinsic(index s, const Eigen::Ref<const vec>& z);

  /// The M module prompts of slot @p s, `[M x n*H_s]` (row k = `z_{s,k} A_s`, each a row-major
  /// `[n x H_s]` prompt).
  mat module_prompts(index s) const {
    check_slot(s, "modular_prompt::module_prompts");
    if (m_materialized) return m_prompts.value(s);
    return z_slot(s) * m_projection.value(s);
  }
  /// The evaluation-mode routed prompt of slot @p s for the selected task, `[n x H_s]`.
  mat prompt(index s) const {
    check_slot(s, "modular_prompt::prompt");
    const rvec p = routed_prompt(s, routing_weights(s));
    return Eigen::Map<const mat>(p.data(), m_cfg.num_prompt_tokens, slot_width(s));
  }

  /// Replaces z and A by the module prompts they produce, `prompt.{s}` = `z_s A_s`, as the
  /// trainable prompt store (downstream step 1 of the reference: the prompts are then tuned
  /// directly). The projection store becomes empty; router and trainable flags are kept.
  /// The outputs do not change beyond rounding. No-op when already materialised.
  void materialize();

  /// Lowest layer with a prompt: 0 for both variants.
  index lowest_layer(index /*num_layers*/) const noexcept { return 0; }

  // --- hooks --------------------------------------------------------------------------------

  /// Adds the routed prompt of layer @p l's slot to rows `b*T + 1 .. b*T + n` of @p h.
  /// Train mode draws M uniforms per slot from `ctx.gen` (unless `sample_router` is false).
  /// @throws peft::invalid_argument for a width other than H_s, a context that does not
  ///   describe @p h, a sequence shorter than n + 1 real tokens, or train mode without a
  ///   generator
  void on_layer_input(index l, mat& h, const hook_context& ctx, tape_type& t) const;

  /// Accumulates the gradients of the trainable stores from @p dh, the gradient of layer
  /// @p l's input; @p dh itself passes through unchanged (the prompt is added).
  /// @throws peft::invalid_argument when the tape holds no recorded forward for this slot
  void on_layer_input_backward(index l, mat& dh, const tape_type& t);

  // --- checkpoints --------------------------------------------------------------------------

  /// The hyper-parameters, the selected task, whether materialised, and the encoder shape.
  nlohmann::json config_json() const;

  /// Rebuilds a policy (values zero until loaded; materialised when the config says so) from
  /// `config_json()` output.
  /// @throws peft::invalid_argument naming the field when the method, encoder shape or a
  ///   value is wrong
  static modular_prompt from_config(const nlohmann::json& j, const encoder_shape& shape);

  /// The saved form (F32): `router`, then `z` and `A.{s}`, or `prompt.{s}` once materialised.
  std::map<std::string, tensor> export_tensors() const;

  /// Sets every value from a saved form of the same layout (materialised or not, as this
  /// policy is); gradients are zeroed.
  /// @throws peft::invalid_argument for a missing, unexpected or mis-shaped tensor or a
  ///   non-finite value (nothing is changed then)
  void import_tensors(const std::map<std::string, tensor>& tensors);

private:
  static std::size_t su(index i) noexcept { return static_cast<std::size_t>(i); }

  static void validate_config(const modular_prompt_config& c, const std::string& where);

  void build(std::uint64_t seed);

  template <typename Mat>
  static void fill_uniform(Mat&& m, double bound, rng& gen) {
    for (index k = 0; k < m.size(); ++k)
      m.data()[k] = static_cast<Scalar>((2.0 * gen.uniform() - 1.0) * bound);
  }

  static Scalar sigmoid_scalar(Scalar x) { return Scalar(1) / (Scalar(1) + std::exp(-x)); }
  template <typename V>
  static vec sigmoid(const V& x) {
    vec r(x.size());
    for (index k = 0; k < x.size(); ++k) r[k] = sigmoid_scalar(x[k]);
    return r;
  }

  /// Slot of layer @p l, or -1 when the layer gets no prompt.
  index slot_of(index l) const noexcept {
    if (l < 0 || l >= m_shape.num_layers) return -1;
    if (m_cfg.deep) return l;
    return l == 0 ? 0 : -1;
  }
  index check_slot(index s, const char* where) const {
    if (s < 0 || s >= num_slots())
      throw invalid_argument(std::string(where) + ": slot expected in [0, " + std::to_string(num_slots()) +
                             "), got " + std::to_string(s) + (m_cfg.deep ? "" : " (shallow: slot 0 only)"));
    return s;
  }
  void require_intrinsic(const char* where) const {
    if (m_materialized)
      throw invalid_argument(
          std::string(where) +
          ": the intrinsic vectors were replaced by materialize(); expected a policy with z and A");
  }

  /// Router logits of task @p task, slot @p s, `[1 x M]` (a copy: views of the store's
  /// temporary maps must not outlive the statement).
  rvec router_row(index task, index s) const {
    return m_router.value(0).row(task).segment(s * m_cfg.num_modules, m_cfg.num_modules);
  }
  /// z of slot @p s, `[M x d]` (a copy).
  mat z_slot(index s) const {
    return m_prompts.value(0).middleRows(s * m_cfg.num_modules, m_cfg.num_modules);
  }

  /// `sum_k rh_k P_{s,k}` as one [1 x n*H_s] row.
  rvec routed_prompt(index s, const vec& rh) const {
    if (m_materialized) return rh.transpose() * m_prompts.value(s);
    const rvec zbar = rh.transpose() * z_slot(s);
    return zbar * m_projection.value(s);
  }

  /// Checks that the hook context describes @p h and that positions 1..n are real tokens.
  void check_positions(const mat& h, const hook_context& ctx, const char* where) const;

  std::vector<std::int64_t> router_shape() const {
    if (m_cfg.deep) return {i64(m_cfg.num_tasks), i64(m_shape.num_layers), i64(m_cfg.num_modules)};
    return {i64(m_cfg.num_tasks), i64(m_cfg.num_modules)};
  }
  std::vector<std::int64_t> intrinsic_shape() const {
    if (m_cfg.deep) return {i64(m_shape.num_layers), i64(m_cfg.num_modules), i64(m_cfg.intrinsic_dim)};
    return {i64(m_cfg.num_modules), i64(m_cfg.intrinsic_dim)};
  }
  static std::int64_t i64(index v) noexcept { return static_cast<std::int64_t>(v); }
  template <typename Mat>
  static tensor to_tensor(const Mat& m, std::vector<std::int64_t> shape);
  template <typename Mat>
  static void from_tensor(const tensor& t, Mat&& m) {
    for (index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<Scalar>(t.data[su(k)]);
  }

  encoder_shape m_shape;
  modular_prompt_config m_cfg;
  modular_prompt_parts m_parts;
  index m_task = 0;
  bool m_materialized = false;
  parameter_store<Scalar> m_router;      ///< "router" [T x S*M]
  parameter_store<Scalar> m_prompts;     ///< "z" [S*M x d], or "prompt.{s}" [M x n*H_s]
  parameter_store<Scalar> m_projection;  ///< "A.{s}" [d x n*H_s]
};

template <typename Scalar>
modular_prompt<Scalar>::modular_prompt(const encoder_shape& shape, const modular_prompt_config& config,
                                       std::uint64_t seed)
    : m_shape(shape), m_cfg(config) {
  const std::string where = "modular_prompt::modular_prompt";
  detail::check_encoder_shape(shape, where);
  validate_config(config, where);
  for (std::size_t l = 0; l < shape.input_width.size(); ++l)
    if (shape.input_width[l] <= 0)
      throw invalid_argument(where + ": encoder input_width[" + std::to_string(l) + "] expected > 0, got " +
                             std::to_string(shape.input_width[l]));
  build(seed);
}

template <typename Scalar>
void modular_prompt<Scalar>::reset_router(index num_tasks, std::uint64_t seed) {
  if (num_tasks < 1)
    throw invalid_argument("modular_prompt::reset_router: num_tasks expected >= 1, got " +
                           std::to_string(num_tasks));
  m_cfg.num_tasks = num_tasks;
  m_task = 0;
  rng gen(seed);
  m_router = parameter_store<Scalar>();
  fill_uniform(m_router.value(m_router.add(router_block, num_tasks, num_slots() * m_cfg.num_modules,
                                           param_group::weight)),
               init_range, gen);
}

template <typename Scalar>
void modular_prompt<Scalar>::set_intrinsic(index s, const Eigen::Ref<const vec>& z) {
  const char* where = "modular_prompt::set_intrinsic";
  check_slot(s, where);
  require_intrinsic(where);
  if (z.size() != m_cfg.intrinsic_dim)
    throw invalid_argument(
        detail::expected_got(where, "intrinsic vector size", m_cfg.intrinsic_dim, z.size()));
  if (!z.allFinite())
    throw invalid_argument(std::string(where) + ": intrinsic vector expected finite values");
  auto Z = m_prompts.value(0);
  for (index k = 0; k < m_cfg.num_modules; ++k) Z.row(s * m_cfg.num_modules + k) = z.transpose();
}

template <typename Scalar>
void modular_prompt<Scalar>::materialize() {
  if (m_materialized) return;
  parameter_store<Scalar> P;
  for (index s = 0; s < num_slots(); ++s) {
    const index b = P.add(prompt_block(s), m_cfg.num_modules, m_cfg.num_prompt_tokens * slot_width(s),
                          param_group::weight);
    P.value(b) = z_slot(s) * m_projection.value(s);
  }
  m_prompts = std::move(P);
  m_projection = parameter_store<Scalar>();
  m_materialized = true;
}

template <typename Scalar>
void modular_prompt<Scalar>::on_layer_input(index l, mat& h, const hook_context& ctx, tape_type& t) const {
  const index s = slot_of(l);
  if (s < 0) return;
  const char* where = "modular_prompt::on_layer_input";
  const index n = m_cfg.num_prompt_tokens, H = slot_width(s), M = m_cfg.num_modules;
  if (h.cols() != H)
    throw invalid_argument(std::string(where) + ": hidden width of layer " + std::to_string(l) +
                           " expected " + std::to_string(H) + ", got " + std::to_string(h.cols()));
  check_positions(h, ctx, where);
  const bool sample = ctx.run_mode == mode::train && m_cfg.sample_router;
  const auto logits = router_row(m_task, s);
  vec r(M), g;
  if (sample) {
    if (!ctx.gen)
      throw invalid_argument(std::string(where) +
                             ": train mode samples the router and needs a random generator (got null)");
    g.resize(M);
    const Scalar inv_tau = static_cast<Scalar>(1.0 / m_cfg.temperature);
    for (index k = 0; k < M; ++k) {
      double u;
      do {
        u = ctx.gen->uniform();
      } while (u <= 0.0);
      g[k] = static_cast<Scalar>(std::log(u) - std::log1p(-u));
      r[k] = sigmoid_scalar((logits[k] + g[k]) * inv_tau);
    }
  } else {
    r = sigmoid(logits.transpose());
  }
  const vec rh = r / (r.sum() + static_cast<Scalar>(normalise_eps));
  const rvec p = routed_prompt(s, rh);
  const Eigen::Map<const mat> P(p.data(), n, H);
  const index T = ctx.time;
  for (index b = 0; b < ctx.batch_size; ++b) h.block(b * T + 1, 0, n, H) += P;
  if (ctx.record) {
    const auto S = su(num_slots());
    if (t.weights.size() != S) {
      t.weights.assign(S, vec());
      t.noise.assign(S, vec());
    }
    t.batch_size = ctx.batch_size;
    t.time = T;
    t.task = m_task;
    t.sampled = sample;
    t.weights[su(s)] = std::move(r);
    t.noise[su(s)] = std::move(g);
  }
}

template <typename Scalar>
void modular_prompt<Scalar>::on_layer_input_backward(index l, mat& dh, const tape_type& t) {
  const index s = slot_of(l);
  if (s < 0) return;
  const char* where = "modular_prompt::on_layer_input_backward";
  const index n = m_cfg.num_prompt_tokens, H = slot_width(s), M = m_cfg.num_modules;
  if (su(s) >= t.weights.size() || t.weights[su(s)].size() != M || t.batch_size * t.time != dh.rows() ||
      dh.cols() != H)
    throw invalid_argument(std::string(where) + ": no recorded forward for layer " + std::to_string(l) +
                           " matching a gradient of shape [" + std::to_string(dh.rows()) + ", " +
                           std::to_string(dh.cols()) + "] (was forward called with a tape?)");
  if (t.task < 0 || t.task >= m_cfg.num_tasks)
    throw invalid_argument(std::string(where) + ": recorded task " + std::to_string(t.task) +
                           " is outside the router's " + std::to_string(m_cfg.num_tasks) + " tasks");
  const bool want_router = m_parts.router, want_prompts = m_parts.prompts;
  const bool want_proj = m_parts.projection && !m_materialized;
  if (!want_router && !want_prompts && !want_proj) return;

  // dp = sum over sequences of the gradient at the prompt rows, as one [1 x n*H] row.
  mat dP = mat::Zero(n, H);
  for (index b = 0; b < t.batch_size; ++b) dP += dh.block(b * t.time + 1, 0, n, H);
  const Eigen::Map<const rvec> dp(dP.data(), n * H);

  const vec& r = t.weights[su(s)];
  const Scalar sum = r.sum() + static_cast<Scalar>(normalise_eps);
  const vec rh = r / sum;
  vec drh;  // gradient of the normalised weights
  if (m_materialized) {
    const auto P = m_prompts.value(s);
    if (want_prompts) m_prompts.grad(s).noalias() += rh * dp;
    if (want_router) drh = P * dp.transpose();
  } else {
    const auto A = m_projection.value(s);
    const auto Z = z_slot(s);
    if (want_proj) {
      const rvec zbar = rh.transpose() * Z;
      m_projection.grad(s).noalias() += zbar.transpose() * dp;
    }
    if (want_prompts || want_router) {
      const vec q = A * dp.transpose();  // [d]
      if (want_prompts) m_prompts.grad(0).middleRows(s * M, M).noalias() += rh * q.transpose();
      if (want_router) drh = Z * q;
    }
  }
  if (want_router) {
    // r^ = r / (sum r + eps):  dr_j = (dr^_j - sum_k dr^_k r^_k) / (sum r + eps)
    const vec dr = (drh.array() - drh.dot(rh)) / sum;
    // r = sigmoid(x), x = R (eval) or (R + noise) / tau (sampled)
    vec dx = dr.array() * r.array() * (Scalar(1) - r.array());
    if (t.sampled) dx /= static_cast<Scalar>(m_cfg.temperature);
    m_router.grad(0).row(t.task).segment(s * M, M) += dx.transpose();
  }
}

template <typename Scalar>
nlohmann::json modular_prompt<Scalar>::config_json() const {
  nlohmann::json j;
  j["peft_type"] = peft_type;
  j["num_modules"] = m_cfg.num_modules;
  j["num_prompt_tokens"] = m_cfg.num_prompt_tokens;
  j["intrinsic_dim"] = m_cfg.intrinsic_dim;
  j["num_tasks"] = m_cfg.num_tasks;
  j["task"] = m_task;
  j["deep"] = m_cfg.deep;
  j["temperature"] = m_cfg.temperature;
  j["sample_router"] = m_cfg.sample_router;
  j["materialized"] = m_materialized;
  j["prompt_positions"] = "1..num_prompt_tokens (after [CLS]), added to the layer input";
  write_shape_fields(j, m_shape);
  return j;
}

template <typename Scalar>
modular_prompt<Scalar> modular_prompt<Scalar>::from_config(const nlohmann::json& j,
                                                           const encoder_shape& shape) {
  const std::string where = "modular_prompt::from_config";
  check_config_header(j, peft_type, shape, where);
  modular_prompt_config c;
  c.num_modules = config_field<index>(j, "num_modules", where);
  c.num_prompt_tokens = config_field<index>(j, "num_prompt_tokens", where);
  c.intrinsic_dim = config_field<index>(j, "intrinsic_dim", where);
  c.num_tasks = config_field<index>(j, "num_tasks", where);
  c.deep = config_field<bool>(j, "deep", where);
  c.temperature = config_field<double>(j, "temperature", where);
  c.sample_router = config_field<bool>(j, "sample_router", where);
  validate_config(c, where);
  const auto task = config_field<index>(j, "task", where);
  if (task < 0 || task >= c.num_tasks)
    throw invalid_argument(where + ": field 'task' expected in [0, " + std::to_string(c.num_tasks) +
                           "), got " + std::to_string(task));
  modular_prompt p(shape, c, 0);
  if (config_field<bool>(j, "materialized", where)) p.materialize();
  p.m_router.values().setZero();
  p.m_prompts.values().setZero();
  p.m_projection.values().setZero();
  p.m_task = task;
  return p;
}

template <typename Scalar>
std::map<std::string, tensor> modular_prompt<Scalar>::export_tensors() const {
  std::map<std::string, tensor> out;
  out.emplace(router_block, to_tensor(m_router.value(0), router_shape()));
  if (m_materialized) {
    for (index s = 0; s < num_slots(); ++s) {
      const auto P = m_prompts.value(s);
      out.emplace(prompt_block(s), to_tensor(P, {i64(P.rows()), i64(P.cols())}));
    }
  } else {
    out.emplace(intrinsic_block, to_tensor(m_prompts.value(0), intrinsic_shape()));
    for (index s = 0; s < num_slots(); ++s) {
      const auto A = m_projection.value(s);
      out.emplace(projection_block(s), to_tensor(A, {i64(A.rows()), i64(A.cols())}));
    }
  }
  return out;
}

template <typename Scalar>
void modular_prompt<Scalar>::import_tensors(const std::map<std::string, tensor>& tensors) {
  const std::string where = "modular_prompt::import_tensors";
  const auto want = export_tensors();
  for (const auto& kv : want) {
    auto it = tensors.find(kv.first);
    if (it == tensors.end())
      throw invalid_argument(where + ": missing tensor '" + kv.first + "' (shape " +
                             kv.second.shape_string() +
                             (m_materialized ? ", a materialised policy)" : ", a policy with z and A)"));
    if (it->second.shape != kv.second.shape ||
        static_cast<std::int64_t>(it->second.data.size()) != kv.second.numel())
      throw invalid_argument(where + ": tensor '" + kv.first + "' shape expected " +
                             kv.second.shape_string() + ", got " + it->second.shape_string());
    for (std::size_t k = 0; k < it->second.data.size(); ++k)
      if (!std::isfinite(it->second.data[k]))
        throw invalid_argument(where + ": tensor '" + kv.first + "' value expected finite, got " +
                               std::to_string(it->second.data[k]) + " at element " + std::to_string(k));
  }
  for (const auto& kv : tensors)
    if (!want.count(kv.first))
      throw invalid_argument(where + ": unexpected tensor '" + kv.first + "'" +
                             (m_materialized ? " (this policy is materialised)" : ""));
  from_tensor(tensors.at(router_block), m_router.value(0));
  if (m_materialized) {
    for (index s = 0; s < num_slots(); ++s) from_tensor(tensors.at(prompt_block(s)), m_prompts.value(s));
  } else {
    from_tensor(tensors.at(intrinsic_block), m_prompts.value(0));
    for (index s = 0; s < num_slots(); ++s)
      from_tensor(tensors.at(projection_block(s)), m_projection.value(s));
  }
  zero_grad();
}

template <typename Scalar>
void modular_prompt<Scalar>::validate_config(const modular_prompt_config& c, const std::string& where) {
  auto positive = [&](const char* field, index v) {
    if (v < 1) throw invalid_argument(where + ": " + field + " expected >= 1, got " + std::to_string(v));
  };
  positive("num_modules", c.num_modules);
  positive("num_prompt_tokens", c.num_prompt_tokens);
  positive("intrinsic_dim", c.intrinsic_dim);
  positive("num_tasks", c.num_tasks);
  if (!(c.temperature > 0) || !std::isfinite(c.temperature))
    throw invalid_argument(where + ": temperature expected finite and > 0, got " +
                           std::to_string(c.temperature));
}

template <typename Scalar>
void modular_prompt<Scalar>::build(std::uint64_t seed) {
  rng gen(seed);
  const index S = num_slots(), M = m_cfg.num_modules, d = m_cfg.intrinsic_dim, n = m_cfg.num_prompt_tokens;
  fill_uniform(m_router.value(m_router.add(router_block, m_cfg.num_tasks, S * M, param_group::weight)),
               init_range, gen);
  fill_uniform(m_prompts.value(m_prompts.add(intrinsic_block, S * M, d, param_group::weight)), init_range,
               gen);
  for (index s = 0; s < S; ++s) {
    const index w = n * slot_width(s);
    const index b = m_projection.add(projection_block(s), d, w, param_group::weight);
    fill_uniform(m_projection.value(b), 1.0 / std::sqrt(static_cast<double>(w)), gen);
  }
}

template <typename Scalar>
void modular_prompt<Scalar>::check_positions(const mat& h, const hook_context& ctx, const char* where) const {
  const index n = m_cfg.num_prompt_tokens, T = ctx.time, B = ctx.batch_size;
  if (T <= 0 || B <= 0 || B * T != h.rows())
    throw invalid_argument(std::string(where) + ": hook context batch_size x time expected to cover the " +
                           std::to_string(h.rows()) + " hidden rows, got " + std::to_string(B) + " x " +
                           std::to_string(T));
  if (T < n + 1)
    throw invalid_argument(std::string(where) + ": sequence length expected >= " + std::to_string(n + 1) +
                           " ([CLS] + " + std::to_string(n) + " prompt placeholders), got " +
                           std::to_string(T));
  const batch* in = ctx.input;
  if (!in || in->mask.rows() != B || in->mask.cols() != T) return;
  for (index b = 0; b < B; ++b)
    for (index i = 1; i <= n; ++i)
      if (in->mask(b, i) == 0)
        throw invalid_argument(
            std::string(where) + ": sequence " + std::to_string(b) + " has " + std::to_string(in->length(b)) +
            " real tokens, expected >= " + std::to_string(n + 1) + " ([CLS] + " + std::to_string(n) +
            " prompt placeholders at positions 1.." + std::to_string(n) + ")");
}

template <typename Scalar>
template <typename Mat>
tensor modular_prompt<Scalar>::to_tensor(const Mat& m, std::vector<std::int64_t> shape) {
  tensor t;
  t.shape = std::move(shape);
  t.data.resize(static_cast<std::size_t>(m.size()));
  for (index k = 0; k < m.size(); ++k) t.data[su(k)] = static_cast<float>(m.data()[k]);
  return t;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_MODULAR_PROMPT
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_MODULAR_PROMPT_HPP
