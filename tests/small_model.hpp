// SPDX-License-Identifier: Apache-2.0
// Small random encoders, batches and loss weights shared by the encoder, policy and head tests.
#ifndef PEFT_TESTS_SMALL_MODEL_HPP
#define PEFT_TESTS_SMALL_MODEL_HPP

#include <peft/model/encoder.hpp>
#include <peft/model/random_weights.hpp>
#include <peft/train/trainer.hpp>

#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "test_common.hpp"

namespace peft_test {

/// Small encoder configs: 2 layers, hidden 16 (embedding 8 for USE-lite), vocab 30.
inline peft::encoder_config small_config(const std::string& type, double dropout = 0.2) {
  peft::encoder_config c;
  c.model_type = type;
  c.vocab_size = 30;
  c.hidden_size = 16;
  c.embedding_size = type == "use_lite" ? 8 : 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.intermediate_size = 24;
  c.max_positions = 16;
  c.type_vocab_size = type == "use_lite" ? 0 : 2;
  c.pad_token_id = type == "roberta" ? 1 : 0;
  c.layer_norm_eps = type == "use_lite" ? 1e-6 : 1e-12;
  c.hidden_act = type == "use_lite" ? peft::activation::relu : peft::activation::gelu_erf;
  c.hidden_dropout = dropout;
  c.attention_dropout = dropout;
  return c;
}

inline peft::batch small_batch(std::int32_t pad, bool segments) {
  std::vector<std::vector<std::int32_t>> ids = {{2, 5, 7, 9, 11, 3}, {2, 8, 3}, {2, 13, 17, 19, 3}};
  std::vector<std::vector<std::int32_t>> seg = {{0, 0, 0, 1, 1, 1}, {0, 0, 1}, {0, 0, 0, 1, 1}};
  return peft::make_batch(ids, pad, segments ? &seg : nullptr);
}

/// Loss weights with padded rows zeroed.
template <typename Scalar>
peft::matrix<Scalar> loss_weights(const peft::batch& b, peft::index cols, std::uint64_t seed) {
  peft::matrix<Scalar> R = random_matrix<Scalar>(b.rows(), cols, seed);
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < b.time(); ++t)
      if (!b.mask(i, t)) R.row(i * b.time() + t).setZero();
  return R;
}

template <typename Arch, typename Scalar = double>
struct small_model {
  std::string type;
  peft::encoder<Arch, Scalar> enc;
  peft::batch b;
  explicit small_model(const std::string& t, std::uint64_t seed = 42)
      : type(t),
        enc(peft::random_encoder_weights<Scalar>(small_config(t), seed)),
        b(small_batch(t == "roberta" ? 1 : 0, t != "use_lite")) {}
};

/// Result of a parameter + input finite-difference check of a policy inside the encoder.
struct policy_grad_result {
  grad_report params, input;
  double max_param_grad = 0, max_input_grad = 0;
};

/// FD-checks the gradients of `p`'s parameters (through `values`) and of the embedding
/// output, in train mode with a fixed dropout seed per call.
template <typename Enc, typename P>
policy_grad_result check_policy_in_encoder(const Enc& enc, const peft::batch& b, P& p, peft::vector<double>& values,
                                           peft::vector<double>& grads, int count = 250) {
  using mat = peft::matrix<double>;
  const auto R = loss_weights<double>(b, enc.hidden_size(), 11);
  peft::rng g0(3);
  mat h0 = enc.embed(b, peft::mode::eval, &g0);
  auto loss = [&] {
    peft::rng gen(123);
    return dot_loss(enc.forward_embedded(h0, b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, P> tape;
  peft::rng gen(123);
  enc.forward_embedded(h0, b, p, peft::mode::train, &tape, &gen);
  grads.setZero();
  mat dh0 = enc.backward(R, p, tape, 0);
  policy_grad_result r;
  const peft::vector<double> analytic = grads;
  r.params = check_gradient(values.data(), values.size(), analytic.data(), loss, 1e-6, count);
  r.input = check_gradient(h0.data(), h0.size(), dh0.data(), loss, 1e-6, count, 9);
  r.max_param_grad = analytic.cwiseAbs().maxCoeff();
  r.max_input_grad = dh0.cwiseAbs().maxCoeff();
  return r;
}

/// FD-checks the gradients of `p`'s parameters through the whole forward pass from the ids
/// (embedding dropout and LayerNorm included), for a policy that supplies input embeddings
/// (prompt tuning), which `forward_embedded` never reaches. Train mode, fixed dropout seed.
template <typename Enc, typename P>
policy_grad_result check_policy_from_ids(const Enc& enc, const peft::batch& b, P& p, peft::vector<double>& values,
                                         peft::vector<double>& grads, int count = 250) {
  const auto R = loss_weights<double>(b, enc.hidden_size(), 11);
  auto loss = [&] {
    peft::rng gen(123);
    return dot_loss(enc.forward(b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, P> tape;
  peft::rng gen(123);
  enc.forward(b, p, peft::mode::train, &tape, &gen);
  grads.setZero();
  enc.backward(R, p, tape, 0);
  policy_grad_result r;
  const peft::vector<double> analytic = grads;
  r.params = check_gradient(values.data(), values.size(), analytic.data(), loss, 1e-6, count);
  r.max_param_grad = analytic.cwiseAbs().maxCoeff();
  return r;
}

/// `n` labelled sequences for the small vocabulary: [CLS]=2 ... [SEP]=3 with 1..7 random ids
/// in 4..29 between, labels in {0, 1, 2}.
inline std::vector<peft::encoded_example> toy_examples(std::size_t n, std::uint64_t seed) {
  peft::rng gen(seed);
  std::vector<peft::encoded_example> out;
  for (std::size_t i = 0; i < n; ++i) {
    peft::encoded_example e;
    const auto len = 3 + gen.below(7);
    e.ids.push_back(2);
    for (std::uint64_t t = 1; t + 1 < len; ++t) e.ids.push_back(static_cast<std::int32_t>(4 + gen.below(26)));
    e.ids.push_back(3);
    e.label = static_cast<int>(gen.below(3));
    out.push_back(std::move(e));
  }
  return out;
}

/// Fills `values` with N(0, scale) so that FD checks exercise every path.
inline void randomise(peft::vector<double>& values, double scale, std::uint64_t seed) {
  peft::rng g(seed);
  for (peft::index i = 0; i < values.size(); ++i) values[i] = g.normal() * scale;
}

/// Every frozen tensor of two weight sets is bitwise equal.
template <typename Scalar>
bool same_weights(const peft::encoder_weights<Scalar>& a, const peft::encoder_weights<Scalar>& b) {
  if (a.word_embeddings != b.word_embeddings || a.position_embeddings != b.position_embeddings) return false;
  if (a.layers.size() != b.layers.size()) return false;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const auto& x = a.layers[l];
    const auto& y = b.layers[l];
    for (auto pr : {std::make_pair(&x.query, &y.query), std::make_pair(&x.key, &y.key),
                    std::make_pair(&x.value, &y.value), std::make_pair(&x.attn_out, &y.attn_out),
                    std::make_pair(&x.ffn_in, &y.ffn_in), std::make_pair(&x.ffn_out, &y.ffn_out)})
      if (pr.first->weight != pr.second->weight || pr.first->bias != pr.second->bias) return false;
    if (x.attn_norm.gamma != y.attn_norm.gamma || x.ffn_norm.gamma != y.ffn_norm.gamma) return false;
    if (x.attn_norm.beta != y.attn_norm.beta || x.ffn_norm.beta != y.ffn_norm.beta) return false;
  }
  return true;
}

/// The BERT-base encoder shape built by hand (no weights needed): 12 layers, 768 wide.
inline peft::encoder_shape bert_base_shape() {
  peft::encoder_shape s;
  s.model_type = "bert";
  s.num_layers = 12;
  s.num_heads = 12;
  s.embedding_size = 768;
  s.hidden_size = 768;
  s.intermediate_size = 3072;
  s.input_width.assign(12, 768);
  s.attention_width.assign(12, 768);
  s.output_width.assign(12, 768);
  s.backbone_parameters = 109482240;
  return s;
}

/// The first and the last loss of `sgd_steps`.
struct sgd_losses {
  double first = 0, last = 0;
};

/// `steps` plain gradient-descent steps of policy `p` alone, inside `enc`, on the dot loss
/// against `R` (train mode, dropout drawn from the step's seed); `extra(p)` runs after each
/// backward (a regulariser adding to the gradients). The frozen-weights tests of every method
/// train this way.
template <typename Enc, typename P, typename Extra>
sgd_losses sgd_steps(const Enc& enc, const peft::batch& b, P& p, const peft::matrix<double>& R, int steps, double lr,
                     Extra extra) {
  sgd_losses out;
  for (int step = 0; step < steps; ++step) {
    peft::encoder_tape<double, P> tape;
    peft::rng gen(static_cast<std::uint64_t>(step));
    const double l = dot_loss(enc.forward(b, p, peft::mode::train, &tape, &gen), R);
    if (step == 0) out.first = l;
    out.last = l;
    p.parameters().zero_grad();
    enc.backward(R, p, tape);
    extra(p);
    p.parameters().values() -= lr * p.parameters().grads();
  }
  return out;
}

template <typename Enc, typename P>
sgd_losses sgd_steps(const Enc& enc, const peft::batch& b, P& p, const peft::matrix<double>& R, int steps, double lr) {
  return sgd_steps(enc, b, p, R, steps, lr, [](P&) {});
}

}  // namespace peft_test

#endif
