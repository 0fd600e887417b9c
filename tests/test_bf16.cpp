// SPDX-License-Identifier: Apache-2.0
// bf16 frozen weights (peft::to_bf16) and the oneDNN GEMM path. This file is built twice:
// as test_bf16 (portable path: Eigen on widened weights) and, when oneDNN is installed, as
// test_bf16_dnnl with PEFT_DNNL (oneDNN's float and bf16 matmul). Both must pass the same
// bounds: the rounding is the same, only the order of the float accumulation differs.
//
// References are independent of the code under test: products in double precision of the
// rounded operands, PyTorch's float hidden states (tests/reference/torch_bert.py), and the
// TF.js runtime's USE-lite embeddings.
#include <nlohmann/json.hpp>
#include <peft/core/bf16.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/model/pooling.hpp>
#include <peft/optim/adam.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/text/unigram.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "test_common.hpp"

namespace {

#if defined(PEFT_DNNL)
constexpr const char* path_name = "oneDNN";
#else
constexpr const char* path_name = "portable";
#endif

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

peft::matrix<float> random_matrix(peft::index r, peft::index c, std::uint64_t seed, double scale = 1.0) {
  peft::rng gen(seed);
  peft::matrix<float> m(r, c);
  for (peft::index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(scale * gen.normal());
  return m;
}

/// Every entry rounded to bf16 and widened to double: the operands a bf16 product really multiplies.
Eigen::MatrixXd rounded(const peft::matrix<float>& m) {
  Eigen::MatrixXd d(m.rows(), m.cols());
  for (peft::index i = 0; i < m.rows(); ++i)
    for (peft::index j = 0; j < m.cols(); ++j) d(i, j) = peft::bf16_to_float(peft::float_to_bf16(m(i, j)));
  return d;
}

/// Largest |a - b| relative to the largest |b|.
double rel_max(const peft::matrix<float>& a, const Eigen::MatrixXd& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  return (a.cast<double>() - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

std::string torch_dir(const std::string& model) { return peft_test::reference_dir() + "/torch/" + model; }

peft::batch reference_batch(const std::string& dir) {
  peft::batch b;
  b.ids = peft::read_npy_ids(dir + "/inputs_ids.npy");
  b.mask = peft::read_npy_ids(dir + "/inputs_mask.npy");
  b.segments = peft::read_npy_ids(dir + "/token_type_ids.npy");
  return b;
}

/// Largest |ours - ref| over real tokens, and the largest |ref| there.
std::pair<double, double> diff_on_real_tokens(const peft::matrix<float>& ours, const peft::tensor& ref,
                                              const peft::batch& b) {
  REQUIRE(ref.shape.size() == 3);
  const auto T = ref.shape[1], X = ref.shape[2];
  REQUIRE(ours.rows() == ref.shape[0] * T);
  REQUIRE(ours.cols() == X);
  double mx = 0, scale = 0;
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < T; ++t) {
      if (!b.mask(i, t)) continue;
      for (peft::index x = 0; x < X; ++x) {
        const double r = ref.data[size_t((i * T + t) * X + x)];
        mx = std::max(mx, std::abs(double(ours(i * T + t, x)) - r));
        scale = std::max(scale, std::abs(r));
      }
    }
  return {mx, scale};
}

}  // namespace

TEST_CASE("float_to_bf16 rounds to nearest even and keeps NaN and infinities", "[bf16]") {
  CHECK(peft::float_to_bf16(1.0f) == 0x3f80);
  CHECK(peft::float_to_bf16(-2.0f) == 0xc000);
  CHECK(peft::float_to_bf16(0.0f) == 0x0000);
  CHECK(peft::float_to_bf16(-0.0f) == 0x8000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  CHECK(peft::float_to_bf16(from_bits(0x3f808000u)) == 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
  CHECK(peft::float_to_bf16(from_bits(0x3f818000u)) == 0x3f82);
  // Just above and below the halfway point.
  CHECK(peft::float_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
  CHECK(peft::float_to_bf16(from_bits(0x3f807fffu)) == 0x3f80);
  CHECK(peft::float_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(peft::float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  // The largest float rounds past the largest bf16 to infinity, as IEEE rounding does.
  CHECK(peft::float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  const peft::bf16_bits nan = peft::float_to_bf16(std::numeric_limits<float>::quiet_NaN());
  CHECK(std::isnan(peft::bf16_to_float(nan)));
  // A signalling NaN whose payload sits in the low half must not become infinity.
  CHECK(std::isnan(peft::bf16_to_float(peft::float_to_bf16(from_bits(0x7f800001u)))));
  // Widening is exact, and every bf16 value survives a round trip.
  for (std::uint32_t h = 0; h < 0x10000u; h += 7) {
    const float f = from_bits(h << 16);
    if (std::isnan(f)) continue;
    CHECK(peft::float_to_bf16(f) == h);
    CHECK(bits(peft::bf16_to_float(static_cast<peft::bf16_bits>(h))) == (h << 16));
  }
  // The relative rounding error is at most the unit roundoff of 8 significant bits, 2^-8.
  const auto m = random_matrix(50, 40, 1, 100.0);
  const peft::bf16_matrix b(m);
  REQUIRE(b.rows() == 50);
  REQUIRE(b.cols() == 40);
  CHECK(b.bytes() == 50 * 40 * 2);
  const auto back = b.to_float();
  CHECK(((back - m).cwiseAbs().array() <= m.cwiseAbs().array() * (1.0f / 256)).all());
}

TEST_CASE("bf16 linear forward and input-gradient equal the double product of the rounded operands", "[bf16]") {
  std::printf("bf16 GEMM path: %s\n", path_name);
  struct shape {
    peft::index rows, in, out;
  };
  for (const shape s : {shape{37, 64, 96}, shape{256, 384, 1536}, shape{5, 3, 2}}) {
    const auto x = random_matrix(s.rows, s.in, 2);
    const auto w = random_matrix(s.out, s.in, 3, 0.05);
    peft::vector<float> bias = random_matrix(s.out, 1, 4).col(0);
    const peft::bf16_matrix w16(w);
    // Forward: x W^T + b.
    peft::matrix<float> y;
    peft::ops::linear_forward(x, w16, bias, y);
    Eigen::MatrixXd ref = rounded(x) * rounded(w).transpose();
    ref.rowwise() += bias.cast<double>().transpose();
    INFO(s.rows << "x" << s.in << "x" << s.out);
    CHECK(rel_max(y, ref) < 1e-5);
    // Input gradient: dy W, then accumulated on top of what dx holds.
    const auto dy = random_matrix(s.rows, s.out, 5);
    peft::matrix<float> dx;
    peft::ops::linear_backward_input(dy, w16, dx);
    const Eigen::MatrixXd dref = rounded(dy) * rounded(w);
    CHECK(rel_max(dx, dref) < 1e-5);
    peft::matrix<float> acc = random_matrix(s.rows, s.in, 6);
    const Eigen::MatrixXd acc0 = acc.cast<double>();
    peft::ops::linear_backward_input(dy, w16, acc, true);
    CHECK(rel_max(acc, acc0 + dref) < 1e-5);
    // Against the unrounded float product the difference is the bf16 rounding, not more.
    const Eigen::MatrixXd exact = x.cast<double>() * w.cast<double>().transpose();
    const double drift = (y.cast<double>() - exact).rowwise().operator-(bias.cast<double>().transpose()).cwiseAbs().maxCoeff();
    CHECK(drift < 4.0 * std::sqrt(double(s.in)) * (1.0 / 256) * x.cwiseAbs().maxCoeff() * w.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("float linear pieces agree with double products on every GEMM path", "[bf16][gemm]") {
  // With PEFT_DNNL these go through oneDNN's float matmul (transposed operands as strides,
  // accumulation as a sum post-op); otherwise through Eigen.
  const auto x = random_matrix(70, 48, 7);
  const auto w = random_matrix(33, 48, 8);
  const peft::vector<float> bias = random_matrix(33, 1, 9).col(0);
  peft::matrix<float> y;
  peft::ops::linear_forward(x, w, bias, y);
  Eigen::MatrixXd ref = x.cast<double>() * w.cast<double>().transpose();
  ref.rowwise() += bias.cast<double>().transpose();
  CHECK(rel_max(y, ref) < 1e-5);
  const auto dy = random_matrix(70, 33, 10);
  peft::matrix<float> dx;
  peft::ops::linear_backward_input(dy, w, dx);
  CHECK(rel_max(dx, dy.cast<double>() * w.cast<double>()) < 1e-5);
  peft::matrix<float> dx2 = random_matrix(70, 48, 11);
  const Eigen::MatrixXd dx0 = dx2.cast<double>();
  peft::ops::linear_backward_input(dy, w, dx2, true);
  CHECK(rel_max(dx2, dx0 + dy.cast<double>() * w.cast<double>()) < 1e-5);
  peft::matrix<float> dw = random_matrix(33, 48, 12);
  const Eigen::MatrixXd dw0 = dw.cast<double>();
  peft::vector<float> db = peft::vector<float>::Zero(33);
  peft::ops::linear_backward_weight(x, dy, dw, &db);
  CHECK(rel_max(dw, dw0 + dy.cast<double>().transpose() * x.cast<double>()) < 1e-5);
  // Shapes met again reuse the cached primitive and still give the right answer.
  peft::matrix<float> y2;
  peft::ops::linear_forward(x, w, bias, y2);
  CHECK(y2 == y);
}

TEST_CASE("a bf16 backbone holds half the layer-weight memory and drifts little from PyTorch's float outputs",
          "[bf16][parity][torch]") {
  const std::string dir = torch_dir("bert");
  const auto w32 = peft::load_hf_encoder<float>(dir);
  const auto w16 = peft::to_bf16(w32);
  REQUIRE(w16->is_bf16());
  REQUIRE_FALSE(w32->is_bf16());
  CHECK(w16->num_parameters() == w32->num_parameters());
  std::size_t linear_values = 0;
  for (const auto& L : w32->layers)
    for (const auto* l : {&L.query, &L.key, &L.value, &L.attn_out, &L.ffn_in, &L.ffn_out})
      linear_values += std::size_t(l->weight.size());
  CHECK(w32->bytes() - w16->bytes() == linear_values * 2);
  CHECK(w16->layers[0].query.weight.size() == 0);

  peft::encoder<peft::bert, float> e32(w32), e16(w16);
  const auto b = reference_batch(dir);
  const auto ref = peft::read_npy_tensor(dir + "/hidden.npy");
  const auto h32 = e32.forward(b);
  const auto h16 = e16.forward(b);
  const auto [d32, scale] = diff_on_real_tokens(h32, ref, b);
  const auto [d16, scale16] = diff_on_real_tokens(h16, ref, b);
  std::printf("bf16 drift (%s): BERT hidden states max abs diff from PyTorch float %.3g (float weights %.3g, "
              "largest |h| %.3g)\n",
              path_name, d16, d32, scale);
  CHECK(d32 <= 1e-4);
  // LayerNorm outputs of order 1: bf16 weights (8 significant bits) keep every value within 5e-2.
  CHECK(d16 <= 5e-2);
  CHECK(d16 > d32);  // the weights really are rounded
  // Row by row the hidden states keep their direction.
  double worst_cos = 1;
  for (peft::index r = 0; r < h32.rows(); ++r) {
    if (!b.mask(r / b.time(), r % b.time())) continue;
    const double c = h16.row(r).cast<double>().dot(h32.row(r).cast<double>()) /
                     (h16.row(r).cast<double>().norm() * h32.row(r).cast<double>().norm());
    worst_cos = std::min(worst_cos, c);
  }
  std::printf("bf16 drift (%s): worst cosine between bf16 and float hidden states %.6f\n", path_name, worst_cos);
  CHECK(worst_cos > 0.999);
}

TEST_CASE("the real USE-lite encoder with bf16 weights stays close to the TF.js runtime", "[bf16][use_lite]") {
  const auto g =
      nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/use_lite/golden.json"));
  const auto ids = g.at("ids").get<std::vector<std::vector<std::int32_t>>>();
  const auto expected = g.at("embeddings").get<std::vector<std::vector<double>>>();
  const auto w32 = peft::load_use_lite<float>(peft_test::use_lite_dir());
  const auto w16 = peft::to_bf16(w32);
  CHECK(double(w16->bytes()) < 0.75 * double(w32->bytes()));
  peft::encoder<peft::use_lite, float> enc(w16);
  const auto b = peft::make_batch(ids, 0);
  const auto e = peft::use_sentence_embedding(enc.weights(), enc.forward(b), b);
  double worst_cos = 1, worst_abs = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    Eigen::VectorXd ref(512);
    for (peft::index c = 0; c < 512; ++c) ref(c) = expected[i][size_t(c)];
    const Eigen::VectorXd ours = e.row(peft::index(i)).cast<double>().transpose();
    worst_cos = std::min(worst_cos, ours.dot(ref) / (ours.norm() * ref.norm()));
    worst_abs = std::max(worst_abs, (ours - ref).cwiseAbs().maxCoeff());
  }
  std::printf("bf16 drift (%s): USE-lite sentence embeddings over %zu sentences: worst cosine %.6f, max abs diff "
              "%.3g\n",
              path_name, ids.size(), worst_cos, worst_abs);
  CHECK(worst_cos > 0.999);
  CHECK(worst_abs < 2e-2);
}

TEST_CASE("adapter gradients over a bf16 backbone stay close to the float ones and training still learns",
          "[bf16][train]") {
  const std::string dir = torch_dir("bert");
  const auto w32 = peft::load_hf_encoder<float>(dir);
  peft::encoder<peft::bert, float> e32(w32), e16(peft::to_bf16(w32));
  const auto b = reference_batch(dir);
  peft::bottleneck_adapter<float> a(e32.shape(), peft::bottleneck_config::houlsby(8), 3);
  // Non-zero up-projections so the gradients flow through every adapter.
  peft::rng gen(5);
  for (peft::index i = 0; i < a.parameters().values().size(); ++i)
    a.parameters().values()[i] += static_cast<float>(0.05 * gen.normal());
  const auto R = random_matrix(b.rows(), e32.hidden_size(), 6);
  auto grads = [&](const peft::encoder<peft::bert, float>& enc) {
    a.parameters().zero_grad();
    peft::encoder_tape<float, peft::bottleneck_adapter<float>> t;
    enc.forward(b, a, peft::mode::eval, &t);
    enc.backward(R, a, t);
    return Eigen::VectorXd(a.parameters().grads().cast<double>());
  };
  const Eigen::VectorXd g32 = grads(e32), g16 = grads(e16);
  const double rel = (g16 - g32).norm() / g32.norm();
  std::printf("bf16 drift (%s): Houlsby adapter gradient relative L2 difference %.3g\n", path_name, rel);
  CHECK(g32.norm() > 0);
  CHECK(rel < 2e-2);

  // Fit the adapters to a fixed target through the bf16 backbone: the loss falls as it does
  // with float weights.
  const auto target = random_matrix(b.rows(), e32.hidden_size(), 7, 0.1);
  auto fit = [&](const peft::encoder<peft::bert, float>& enc) {
    peft::bottleneck_adapter<float> p(enc.shape(), peft::bottleneck_config::houlsby(8), 3);
    peft::adam_hyper hyper;
    hyper.lr = 1e-2;
    peft::adam<float> opt(hyper);
    peft::parameter_set<float> set(p.parameters());
    opt.init(set);
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      p.parameters().zero_grad();
      peft::encoder_tape<float, peft::bottleneck_adapter<float>> t;
      const auto h = enc.forward(b, p, peft::mode::eval, &t);
      const peft::matrix<float> d = h - target - enc.forward(b);
      const double loss = 0.5 * d.squaredNorm();
      (step == 0 ? first : last) = loss;
      enc.backward(d, p, t);
      opt.step(set);
    }
    return std::make_pair(first, last);
  };
  const auto [f32_first, f32_last] = fit(e32);
  const auto [f16_first, f16_last] = fit(e16);
  std::printf("bf16 drift (%s): adapter fit loss float %.4g -> %.4g, bf16 %.4g -> %.4g\n", path_name, f32_first,
              f32_last, f16_first, f16_last);
  CHECK(f16_last < 0.5 * f16_first);
  CHECK(std::abs(f16_last - f32_last) < 0.1 * f32_last);
}

TEST_CASE("what needs float weights refuses a bf16 backbone by name", "[bf16][errors]") {
  const auto w32 = peft::load_hf_encoder<float>(torch_dir("bert"));
  const auto w16 = peft::to_bf16(w32);
  CHECK_THROWS_AS(peft::to_bf16(w16), peft::invalid_argument);
  CHECK_THROWS_AS(peft::to_bf16(peft::shared_weights<float>{}), peft::invalid_argument);
  peft::encoder<peft::bert, float> enc(w16);
  const auto b = reference_batch(torch_dir("bert"));
  // mask-tuning rewrites W through on_weight.
  peft::mask_tuning<float> mt(enc.shape(), peft::mask_tuning_config{}, 1);
  try {
    enc.forward(b, mt);
    FAIL("mask-tuning over bf16 weights did not throw");
  } catch (const peft::invalid_argument& e) {
    const std::string m = e.what();
    CHECK(m.find("bf16") != std::string::npos);
    CHECK(m.find("float") != std::string::npos);
  }
  peft::full_finetune<float> ft(enc.shape());
  CHECK_THROWS_AS(enc.forward(b, ft), peft::invalid_argument);
  // A LoRA merge writes into W.
  peft::lora<float> lo(enc.shape(), peft::lora_config{}, 1);
  try {
    (void)lo.merge(*w16);
    FAIL("lora::merge over bf16 weights did not throw");
  } catch (const peft::invalid_argument& e) {
    CHECK(std::string(e.what()).find("bf16") != std::string::npos);
  }
  // LoRA as a side path works: it never touches W.
  CHECK_NOTHROW(enc.forward(b, lo));
  CHECK_THROWS_AS(peft::save_hf_encoder(peft_test::scratch_dir("bf16_save"), *w16), peft::invalid_argument);
  // A double encoder cannot hold bf16 weights.
  auto wd = std::make_shared<peft::encoder_weights<double>>(*peft::load_hf_encoder<double>(torch_dir("bert")));
  wd->layers[0].query.weight_bf16 = peft::bf16_matrix(w32->layers[0].query.weight);
  CHECK_THROWS_AS((peft::encoder<peft::bert, double>(wd)), peft::invalid_argument);
}
