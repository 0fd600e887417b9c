// SPDX-License-Identifier: Apache-2.0
// Trainable task heads: classification over every pooling and the prompt (label-word) head,
// gradients by finite differences in double, and the prompt head against PyTorch's MLM logits.
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/model/encoder.hpp>
#include <peft/model/mlm_head.hpp>
#include <peft/model/pooling.hpp>
#include <peft/task/heads.hpp>

#include "gradcheck.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft_test::check_gradient;
using peft_test::random_matrix;

namespace {
peft::encoder_config cfg(const std::string& type) {
  auto c = peft_test::small_config(type);
  c.num_layers = 1;
  return c;
}
peft::batch batch3() { return peft::make_batch({{2, 5, 7, 9, 3}, {2, 8, 3}, {2, 13, 17, 3}}, 0); }

double loss_of(const peft::matrix<double>& logits, const peft::matrix<double>& R) { return (logits.array() * R.array()).sum(); }

/// A classification head's parameter and input gradients (train mode, dropout on) against
/// finite differences of sum(logits * R).
void check_head_gradients(peft::classification_head<double>& head, const peft::encoder_weights<double>& w,
                          peft::matrix<double>& h, const peft::batch& b) {
  const auto R = random_matrix<double>(b.size(), head.num_classes(), 4);
  auto loss = [&] {
    peft::rng gen(8);
    return loss_of(head.forward(w, h, b, peft::mode::train, &gen, nullptr), R);
  };
  peft::classification_head<double>::cache_type cache;
  peft::rng gen(8);
  head.forward(w, h, b, peft::mode::train, &gen, &cache);
  head.parameters().zero_grad();
  const auto dh = head.backward(w, R, b, cache, h.cols());
  auto& p = head.parameters();
  CHECK(check_gradient(p.values().data(), p.size(), p.grads().data(), loss, 1e-6).max_abs_err < 1e-8);
  CHECK(check_gradient(h.data(), h.size(), dh.data(), loss, 1e-6).max_abs_err < 1e-8);
  CHECK(dh.cwiseAbs().maxCoeff() > 1e-4);
}
}  // namespace

TEST_CASE("classification head gradients match finite differences for every pooling", "[heads][grad]") {
  for (auto kind : {peft::pool_kind::cls, peft::pool_kind::mean, peft::pool_kind::pooler, peft::pool_kind::sentence}) {
    const std::string type = kind == peft::pool_kind::sentence ? "use_lite" : "bert";
    auto w = peft::random_encoder_weights<double>(cfg(type), 5);
    const auto b = batch3();
    peft::matrix<double> h = random_matrix<double>(b.rows(), 16, 9);
    peft::classification_head<double> head(16, 3, kind, 0.2, 1);
    INFO("pooling " << peft::to_string(kind));
    check_head_gradients(head, *w, h, b);
  }
}

TEST_CASE("classification head with a tanh hidden layer: gradients, blocks and the formula", "[heads][grad]") {
  // RoBERTa's classifier / AdapterHub's two-layer head: out_proj(tanh(dense(x))) with dropout
  // before each linear.
  auto w = peft::random_encoder_weights<double>(cfg("bert"), 5);
  const auto b = batch3();
  peft::matrix<double> h = random_matrix<double>(b.rows(), 16, 9);
  peft::classification_head<double> head(16, 3, peft::pool_kind::cls, 0.2, 1, true);
  REQUIRE(head.hidden_layer());
  REQUIRE(head.parameters().num_blocks() == 4);
  CHECK(head.parameters().block(0).name == "classifier.dense.weight");
  CHECK(head.parameters().block(2).name == "classifier.out_proj.weight");
  CHECK(head.num_classes() == 3);
  peft_test::randomise(head.parameters().values(), 0.4, 3);
  check_head_gradients(head, *w, h, b);
  // Eval mode: the formula on token 0 of each sequence, written out.
  const auto logits = head.forward(*w, h, b, peft::mode::eval, nullptr, nullptr);
  const auto& p = head.parameters();
  const peft::matrix<double> Wd = p.value(0), Wo = p.value(2);
  for (peft::index i = 0; i < b.size(); ++i) {
    const Eigen::VectorXd x = h.row(i * b.time()).transpose();
    const Eigen::VectorXd a = (Wd * x + p.value(1).col(0)).array().tanh().matrix();
    const Eigen::VectorXd want = Wo * a + p.value(3).col(0);
    CHECK((logits.row(i).transpose() - want).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("prompt head gradients match finite differences", "[heads][grad]") {
  auto w = peft::random_encoder_weights<double>(cfg("bert"), 5);
  const auto b = batch3();
  peft::matrix<double> h = random_matrix<double>(b.rows(), 16, 9);
  peft::prompt_head<double> head(*w, {4, 11});
  const std::vector<peft::index> pos = {2, 1, 3};
  const auto R = random_matrix<double>(3, 2, 4);
  auto loss = [&] { return loss_of(head.forward(*w, h, b, pos, nullptr), R); };
  peft::prompt_head<double>::cache_type cache;
  head.forward(*w, h, b, pos, &cache);
  head.parameters().zero_grad();
  const auto dh = head.backward(*w, R, b, cache);
  auto& p = head.parameters();
  CHECK(check_gradient(p.values().data(), p.size(), p.grads().data(), loss, 1e-6).max_abs_err < 1e-8);
  CHECK(check_gradient(h.data(), h.size(), dh.data(), loss, 1e-6).max_abs_err < 1e-8);
  CHECK(p.num_blocks() == 5);
  CHECK(head.num_parameters() == 16 * 16 + 16 + 16 + 16 + 2);
}

TEST_CASE("prompt head logits equal PyTorch's masked-LM logits at the mask position", "[heads][parity]") {
  const std::string dir = peft_test::reference_dir() + "/torch/bert";
  auto w = peft::load_hf_encoder<float>(dir);
  peft::encoder<peft::bert, float> enc(w);
  peft::batch b;
  b.ids = peft::read_npy_ids(dir + "/inputs_ids.npy");
  b.mask = peft::read_npy_ids(dir + "/inputs_mask.npy");
  b.segments = peft::read_npy_ids(dir + "/token_type_ids.npy");
  const auto ref = peft::read_npy_tensor(dir + "/mlm_logits.npy");  // [B, T, V]
  const auto V = ref.shape[2], T = ref.shape[1];
  const std::vector<std::int32_t> words = {7, 42, 99};
  peft::prompt_head<float> head(*w, words);
  const std::vector<peft::index> pos = {3, 10, 1};  // a "mask" position inside each sequence
  const auto logits = head.forward(*w, enc.forward(b), b, pos, nullptr);
  double worst = 0;
  for (peft::index i = 0; i < 3; ++i)
    for (size_t c = 0; c < words.size(); ++c)
      worst = std::max(worst, std::abs(double(logits(i, peft::index(c))) -
                                       ref.data[size_t((i * T + pos[size_t(i)]) * V + words[c])]));
  INFO("max abs diff " << worst);
  CHECK(worst < 1e-4);
  CHECK_THROWS_WITH(peft::prompt_head<float>(*w, {7}), Catch::Contains("label words expected >= 2"));
  CHECK_THROWS_WITH(peft::prompt_head<float>(*w, {7, 100}), Catch::Contains("label-word id expected in [0, 100)"));
  CHECK_THROWS_WITH(head.forward(*w, enc.forward(b), b, {3, 10, 11}, nullptr), Catch::Contains("outside its tokens"));
}
