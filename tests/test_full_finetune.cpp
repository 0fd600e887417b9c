// SPDX-License-Identifier: Apache-2.0
// The full fine-tuning baseline policy: gradients of every linear's update by finite
// differences, zero init leaves the model unchanged, frozen weights untouched.
#include <peft/model/encoder.hpp>
#include <peft/policies/full_finetune.hpp>

#include "gradcheck.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

namespace {
template <typename Arch>
void check(const std::string& type) {
  peft::encoder<Arch, double> enc(peft::random_encoder_weights<double>(peft_test::small_config(type), 3));
  const auto before = enc.weights();
  peft::full_finetune<double> p(enc.shape());
  const auto b = peft::make_batch({{2, 5, 7, 9, 3}, {2, 8, 3}}, 0);
  CHECK((enc.forward(b) - enc.forward(b, p)).cwiseAbs().maxCoeff() == 0.0);  // zero init
  peft::rng init(4);
  for (peft::index i = 0; i < p.parameters().size(); ++i) p.parameters().values()[i] = 0.05 * init.normal();
  const auto R = peft_test::random_matrix<double>(b.rows(), 16, 2);
  auto loss = [&] {
    peft::rng gen(6);
    return peft_test::dot_loss(enc.forward(b, p, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, peft::full_finetune<double>> tape;
  peft::rng gen(6);
  enc.forward(b, p, peft::mode::train, &tape, &gen);
  p.parameters().zero_grad();
  enc.backward(R, p, tape);
  auto& s = p.parameters();
  auto r = peft_test::check_gradient(s.values().data(), s.size(), s.grads().data(), loss, 1e-6, 300);
  INFO(type << " max abs err " << r.max_abs_err);
  CHECK(r.max_abs_err < 1e-7);
  CHECK(enc.weights().layers[0].query.weight == before.layers[0].query.weight);
  // Every linear of every layer, weight and bias.
  CHECK(s.num_blocks() == 2 * 6 * 2);
}
}  // namespace

TEST_CASE("full fine-tuning policy gradients match finite differences", "[full][grad]") {
  check<peft::bert>("bert");
  check<peft::use_lite>("use_lite");
}
