// SPDX-License-Identifier: Apache-2.0
// Parity of the real pretrained USE-lite encoder with its own TF.js runtime
// (@energetic-ai/embeddings, golden outputs written by tests/reference/use_lite_golden.js):
// tokenizer ids exactly, sentence embeddings to 1e-4 per component.
#include <nlohmann/json.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/model/encoder.hpp>
#include <peft/model/pooling.hpp>
#include <peft/text/unigram.hpp>

#include "test_common.hpp"

namespace {
const nlohmann::json& golden() {
  static const nlohmann::json g =
      nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/use_lite/golden.json"));
  return g;
}
}  // namespace

TEST_CASE("USE-lite sentence embeddings match the TF.js runtime", "[parity][use_lite]") {
  const auto& g = golden();
  const auto sentences = g.at("sentences").get<std::vector<std::string>>();
  const auto ids = g.at("ids").get<std::vector<std::vector<std::int32_t>>>();
  const auto expected = g.at("embeddings").get<std::vector<std::vector<double>>>();
  REQUIRE(sentences.size() >= 30);
  REQUIRE(ids.size() == sentences.size());
  REQUIRE(expected.size() == sentences.size());

  const auto tok = peft::unigram_tokenizer::from_vocab_json(peft_test::use_lite_dir() + "/vocab.json");
  peft::encoder<peft::use_lite, float> enc(peft::load_use_lite<float>(peft_test::use_lite_dir()));

  // Tokenizer: exactly the ids the runtime fed the model.
  std::vector<std::vector<std::int32_t>> ours;
  for (size_t i = 0; i < sentences.size(); ++i) {
    ours.push_back(tok.encode(sentences[i], enc.max_sequence_length()));
    INFO("sentence " << i << ": " << sentences[i]);
    CHECK(ours.back() == ids[i]);
  }

  // Encoder: one padded batch of every sentence.
  const auto b = peft::make_batch(ours, 0);
  const auto h = enc.forward(b);
  const auto e = peft::use_sentence_embedding(enc.weights(), h, b);
  REQUIRE(e.rows() == static_cast<peft::index>(sentences.size()));
  REQUIRE(e.cols() == 512);
  double worst = 0;
  for (size_t i = 0; i < sentences.size(); ++i)
    for (peft::index c = 0; c < 512; ++c)
      worst = std::max(worst, std::abs(double(e(peft::index(i), c)) - expected[i][size_t(c)]));
  std::printf("parity use_lite float sentence embedding max abs diff %.3g over %zu sentences\n", worst,
              sentences.size());
  CHECK(worst <= 1e-4);

  // The same sentences one at a time give the same embeddings (padding is inert).
  for (size_t i : {size_t(0), size_t(5), sentences.size() - 1}) {
    const auto b1 = peft::make_batch({ours[i]}, 0);
    const auto e1 = peft::use_sentence_embedding(enc.weights(), enc.forward(b1), b1);
    CHECK((e1.row(0) - e.row(peft::index(i))).cwiseAbs().maxCoeff() <= 1e-5);
  }
}

TEST_CASE("USE-lite in double precision matches the runtime too", "[parity][use_lite]") {
  const auto& g = golden();
  const auto ids = g.at("ids").get<std::vector<std::vector<std::int32_t>>>();
  const auto expected = g.at("embeddings").get<std::vector<std::vector<double>>>();
  peft::encoder<peft::use_lite, double> enc(peft::load_use_lite<double>(peft_test::use_lite_dir()));
  const auto b = peft::make_batch(ids, 0);
  const auto e = peft::use_sentence_embedding(enc.weights(), enc.forward(b), b);
  double worst = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    for (peft::index c = 0; c < 512; ++c)
      worst = std::max(worst, std::abs(e(peft::index(i), c) - expected[i][size_t(c)]));
  std::printf("parity use_lite double sentence embedding max abs diff %.3g\n", worst);
  CHECK(worst <= 1e-4);
}
