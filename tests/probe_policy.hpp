// SPDX-License-Identifier: Apache-2.0
// A test-only policy that implements every hook with a few parameters of its own, so the
// encoder's hook plumbing (forward and backward) can be checked by finite differences.
#ifndef PEFT_TESTS_PROBE_POLICY_HPP
#define PEFT_TESTS_PROBE_POLICY_HPP

#include <cmath>
#include <vector>

#include <peft/core/encoder_shape.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>
#include <peft/policies/policy_traits.hpp>

namespace peft_test {

/// Every hook, each a small differentiable map:
///  - embeddings / layer input: h += bias row
///  - K/V prefix: `prefix` rows per layer, used directly
///  - on_weight (query): W_eff = W .* (1 + S)
///  - on_linear (value): y += x A^T
///  - sub-layer output: h += h .* m (pre- and post-dropout, attention and FFN)
///  - encoder output: h = h + h0 C^T (a side path from the embeddings)
template <typename Scalar>
class probe_policy {
public:
  using scalar_type = Scalar;
  using mat = peft::matrix<Scalar>;

  struct tape_type {
    std::vector<mat> value_in;   ///< per layer: input of the value projection
    std::vector<mat> sub_in[2][2];  ///< [sublayer][placement] per layer
    mat h0;
  };

  probe_policy(peft::index layers, peft::index emb, const std::vector<peft::index>& widths_in,
               const std::vector<peft::index>& widths_att, peft::index hidden, peft::index prefix, std::uint64_t seed)
      : m_layers(layers), m_emb(emb), m_in(widths_in), m_att(widths_att), m_hidden(hidden), m_prefix(prefix) {
    peft::index n = emb;  // embeddings bias
    for (peft::index l = 0; l < layers; ++l) {
      const auto in = m_in[size_t(l)], att = m_att[size_t(l)];
      n += in;                   // layer-input bias
      n += 2 * prefix * att;     // prefix K, V
      n += att * in;             // query weight scale S
      n += att * in;             // value low-rank A (full here)
      n += 4 * hidden;           // sub-layer gains (attention output is `hidden` wide)
    }
    n += hidden * emb;  // side path C
    peft::rng gen(seed);
    m_theta.resize(n);
    for (peft::index i = 0; i < n; ++i) m_theta[i] = static_cast<Scalar>(0.05 * gen.normal());
    m_grad = peft::vector<Scalar>::Zero(n);
  }

  peft::vector<Scalar>& theta() { return m_theta; }
  peft::vector<Scalar>& grad() { return m_grad; }
  /// Which hooks are on (all by default); switch some off to isolate a hook.
  bool use_weight = true, use_linear = true, use_prefix = true;

  // --- hooks ---------------------------------------------------------------------------
  void on_embeddings(mat& h, const peft::hook_context&, tape_type&) const {
    h.rowwise() += seg(0, m_emb).transpose();
  }
  void on_embeddings_backward(mat& dh, const tape_type&) { gseg(0, m_emb) += dh.colwise().sum().transpose(); }

  void on_layer_input(peft::index l, mat& h, const peft::hook_context&, tape_type&) const {
    h.rowwise() += seg(off_input(l), m_in[size_t(l)]).transpose();
  }
  void on_layer_input_backward(peft::index l, mat& dh, const tape_type&) {
    gseg(off_input(l), m_in[size_t(l)]) += dh.colwise().sum().transpose();
  }

  peft::index kv_prefix_length(peft::index) const { return use_prefix ? m_prefix : 0; }
  void kv_prefix(peft::index l, mat& pk, mat& pv, const peft::hook_context&, tape_type&) const {
    const auto att = m_att[size_t(l)];
    pk = Eigen::Map<const mat>(m_theta.data() + off_prefix(l), m_prefix, att);
    pv = Eigen::Map<const mat>(m_theta.data() + off_prefix(l) + m_prefix * att, m_prefix, att);
  }
  void kv_prefix_backward(peft::index l, const mat& dpk, const mat& dpv, const tape_type&) {
    const auto att = m_att[size_t(l)];
    Eigen::Map<mat>(m_grad.data() + off_prefix(l), m_prefix, att) += dpk;
    Eigen::Map<mat>(m_grad.data() + off_prefix(l) + m_prefix * att, m_prefix, att) += dpv;
  }

  bool transforms_weight(peft::index, peft::linear_id w) const { return use_weight && w == peft::linear_id::query; }
  void on_weight(peft::index l, peft::linear_id, const mat& W, mat& W_eff, tape_type&) const {
    Eigen::Map<const mat> S(m_theta.data() + off_scale(l), W.rows(), W.cols());
    W_eff = W.array() * (Scalar(1) + S.array());
  }
  void on_weight_backward(peft::index l, peft::linear_id, const mat& W, const mat& dW, const tape_type&) {
    Eigen::Map<mat>(m_grad.data() + off_scale(l), W.rows(), W.cols()).array() += dW.array() * W.array();
  }

  void on_linear(peft::index l, peft::linear_id w, const mat& x, mat& y, const peft::hook_context& ctx,
                 tape_type& t) const {
    if (!use_linear || w != peft::linear_id::value) return;
    if (ctx.record) {
      t.value_in.resize(size_t(m_layers));
      t.value_in[size_t(l)] = x;
    }
    y.noalias() += x * A(l).transpose();
  }
  void on_linear_backward(peft::index l, peft::linear_id w, const mat& dy, mat& dx, const tape_type& t) {
    if (!use_linear || w != peft::linear_id::value) return;
    const auto att = m_att[size_t(l)], in = m_in[size_t(l)];
    Eigen::Map<mat>(m_grad.data() + off_lowrank(l), att, in).noalias() += dy.transpose() * t.value_in[size_t(l)];
    dx.noalias() += dy * A(l);
  }

  void on_sublayer_output(peft::index l, peft::sublayer s, peft::placement p, mat& h, const peft::hook_context& ctx,
                          tape_type& t) const {
    if (ctx.record) {
      auto& v = t.sub_in[int(s)][int(p)];
      v.resize(size_t(m_layers));
      v[size_t(l)] = h;
    }
    h.array().rowwise() *= (Scalar(1) + gain(l, s, p).array()).transpose();
  }
  void on_sublayer_output_backward(peft::index l, peft::sublayer s, peft::placement p, mat& dh, const tape_type& t) {
    const mat& hin = t.sub_in[int(s)][int(p)][size_t(l)];
    gseg(off_gain(l, s, p), m_hidden) += (dh.array() * hin.array()).colwise().sum().transpose().matrix();
    dh.array().rowwise() *= (Scalar(1) + gain(l, s, p).array()).transpose();
  }

  void on_encoder_output(const mat& h0, mat& h, const peft::hook_context& ctx, tape_type& t) const {
    if (ctx.record) t.h0 = h0;
    h.noalias() += h0 * C().transpose();
  }
  void on_encoder_output_backward(mat& dh, const tape_type& t) {
    // The side path reads the embeddings; its gradient with respect to them is not passed
    // back (as in side-tuning), only C's.
    Eigen::Map<mat>(m_grad.data() + m_theta.size() - m_hidden * m_emb, m_hidden, m_emb).noalias() +=
        dh.transpose() * t.h0;
  }

private:
  peft::index off_input(peft::index l) const { return offset(l, 0); }
  peft::index off_prefix(peft::index l) const { return offset(l, 1); }
  peft::index off_scale(peft::index l) const { return offset(l, 2); }
  peft::index off_lowrank(peft::index l) const { return offset(l, 3); }
  peft::index off_gain(peft::index l, peft::sublayer s, peft::placement p) const {
    return offset(l, 4) + (2 * int(s) + int(p)) * m_hidden;
  }
  peft::index offset(peft::index layer, int part) const {
    peft::index o = m_emb;
    for (peft::index l = 0; l <= layer; ++l) {
      const auto in = m_in[size_t(l)], att = m_att[size_t(l)];
      const peft::index sizes[5] = {in, 2 * m_prefix * att, att * in, att * in, 4 * m_hidden};
      for (int k = 0; k < 5; ++k) {
        if (l == layer && k == part) return o;
        o += sizes[k];
      }
    }
    return o;
  }
  Eigen::Map<const peft::vector<Scalar>> seg(peft::index o, peft::index n) const {
    return {m_theta.data() + o, n};
  }
  Eigen::Map<peft::vector<Scalar>> gseg(peft::index o, peft::index n) { return {m_grad.data() + o, n}; }
  Eigen::Map<const mat> A(peft::index l) const {
    return {m_theta.data() + off_lowrank(l), m_att[size_t(l)], m_in[size_t(l)]};
  }
  Eigen::Map<const mat> C() const { return {m_theta.data() + m_theta.size() - m_hidden * m_emb, m_hidden, m_emb}; }
  Eigen::Map<const peft::vector<Scalar>> gain(peft::index l, peft::sublayer s, peft::placement p) const {
    return seg(off_gain(l, s, p), m_hidden);
  }

  peft::index m_layers, m_emb;
  std::vector<peft::index> m_in, m_att;
  peft::index m_hidden, m_prefix;
  peft::vector<Scalar> m_theta, m_grad;
};

/// A probe fitted to an encoder of shape `s`, with `prefix` prefix keys/values per layer.
template <typename Scalar>
probe_policy<Scalar> make_probe(const peft::encoder_shape& s, peft::index prefix, std::uint64_t seed) {
  return probe_policy<Scalar>(s.num_layers, s.embedding_size, s.input_width, s.attention_width, s.hidden_size, prefix,
                              seed);
}

}  // namespace peft_test

#endif
