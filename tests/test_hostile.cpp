// SPDX-License-Identifier: Apache-2.0
// Hostile files beyond safetensors: every JSON reader refuses nesting past
// read_limits::max_json_depth (nlohmann::json copies and prints recursively, so a deep
// document would otherwise overflow the stack on its first copy), a config.json cannot
// declare a model no machine could hold, and invalid UTF-8 in vocabularies is rejected.
#include "test_common.hpp"

#include <peft/core/limits.hpp>
#include <peft/data/label_map.hpp>
#include <peft/data/readers.hpp>
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/mpmp_library.hpp>
#include <peft/io/tfjs.hpp>
#include <peft/policies/policy_config.hpp>
#include <peft/text/prompt.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/wordpiece.hpp>

#include <filesystem>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// `levels` nested arrays around a 0.
std::string nested(std::size_t levels) { return std::string(levels, '[') + "0" + std::string(levels, ']'); }


}  // namespace

TEST_CASE("parse_json_limited accepts the limit and refuses one level more", "[hostile][json]") {
  peft::read_limits lim;
  lim.max_json_depth = 4;
  CHECK(peft::detail::parse_json_limited(nested(4), "t", lim).is_array());
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::detail::parse_json_limited(nested(5), "t", lim); }),
             Contains("t: JSON nested deeper than 4 levels"));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::detail::parse_json_limited(R"({"a":{"b":{"c":{"d":{}}}}})", "t", lim); }),
             Contains("deeper than 4"));
  lim.max_json_bytes = 3;
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::detail::parse_json_limited("[1,2]", "t", lim); }),
             Contains("5 bytes") && Contains("max_json_bytes"));
  // Syntax errors stay nlohmann's, for each caller to word with its own file name.
  CHECK_THROWS_AS(peft::detail::parse_json_limited("[1,", "t"), nlohmann::json::exception);
}

TEST_CASE("every JSON file reader refuses a document nested a million levels deep", "[hostile][json]") {
  const std::string dir = peft_test::scratch_dir("hostile_json");
  const std::string deep = nested(1000000);
  const auto deeper = Contains("nested deeper than 128");

  write_file(dir + "/config.json", R"({"model_type":"bert","hidden_size":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_hf_config(dir + "/config.json"); }),
             deeper && Contains(dir + "/config.json"));

  fs::create_directories(dir + "/adapter");
  write_file(dir + "/adapter/adapter_config.json", R"({"peft_type":"LORA","r":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_adapter_config(dir + "/adapter"); }),
             deeper && Contains("adapter_config.json"));

  fs::create_directories(dir + "/tfjs");
  write_file(dir + "/tfjs/model.json", R"({"modelTopology":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::tfjs_model::load(dir + "/tfjs"); }), deeper && Contains("model.json"));

  write_file(dir + "/tokenizer.json", R"({"model":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json"); }),
             deeper && Contains("tokenizer.json"));

  write_file(dir + "/vocab.json", deep);
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::unigram_tokenizer::from_vocab_json(dir + "/vocab.json"); }),
             deeper && Contains("vocab.json"));

  write_file(dir + "/labels.json", R"({"labels":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::label_map::load(dir + "/labels.json"); }), deeper && Contains("labels.json"));

  write_file(dir + "/data.jsonl", "{\"text\": \"fine\", \"label\": \"a\"}\n{\"text\": " + deep + "}\n");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_jsonl(dir + "/data.jsonl"); }),
             deeper && Contains("data.jsonl line 2"));

  write_file(dir + "/data.json", deep);
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_dataset(dir + "/data.json"); }), deeper && Contains("data.json"));

  fs::create_directories(dir + "/library");
  write_file(dir + "/library/library.json", R"({"tasks":)" + deep + "}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_mpmp_library_info(dir + "/library"); }),
             deeper && Contains("library.json"));
}

TEST_CASE("a config.json declaring an impossibly large encoder is refused before loading", "[hostile][limits]") {
  const std::string dir = peft_test::scratch_dir("hostile_config");
  const auto config = [&](long long hidden, long long layers) {
    write_file(dir + "/config.json", R"({"model_type":"bert","vocab_size":30522,"hidden_size":)" +
                                         std::to_string(hidden) + R"(,"num_hidden_layers":)" + std::to_string(layers) +
                                         R"(,"num_attention_heads":1,"intermediate_size":3072,)"
                                         R"("max_position_embeddings":512})");
    return dir + "/config.json";
  };
  // BERT-large's sizes pass.
  CHECK(peft::read_hf_config(config(1024, 24)).hidden_size == 1024);
  // A hidden size of 2^40 would need ~10^27 parameters: refused, naming the limit.
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_hf_config(config(1LL << 40, 12)); }),
             Contains("max_model_parameters") && Contains("config.json"));
  // The limit is configurable: a tiny one refuses BERT-large too.
  peft::read_limits& lim = peft::default_read_limits();
  const peft::read_limits saved = lim;
  lim.max_model_parameters = 1000000;
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_hf_config(config(1024, 24)); }), Contains("max_model_parameters"));
  lim = saved;
}

TEST_CASE("vocabularies with invalid UTF-8 are rejected naming the file", "[hostile][utf8]") {
  const std::string dir = peft_test::scratch_dir("hostile_utf8");
  // A unigram vocabulary is JSON: the bytes C3 28 are not UTF-8.
  write_file(dir + "/vocab.json", "[[\"<pad>\", 0.0], [\"bad\xC3\x28\", -1.0]]");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::unigram_tokenizer::from_vocab_json(dir + "/vocab.json"); }),
             Contains("vocab.json"));
  write_file(dir + "/tokenizer.json", "{\"model\": {\"vocab\": {\"\xED\xA0\x80\": 0}}}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json"); }),
             Contains("tokenizer.json"));
}

TEST_CASE("integers read from files are range-checked before any conversion", "[hostile][json]") {
  // The found-by-fuzzing class of bug: nlohmann's get<int>() on 1e300 is a float-to-int
  // conversion out of range (undefined behaviour), and on 2^40 a silent truncation.
  using nlohmann::json;
  std::int32_t i32 = 7;
  CHECK(peft::detail::json_to_integer(json(2147483647), i32));
  CHECK(i32 == 2147483647);
  CHECK(peft::detail::json_to_integer(json(-2147483648LL), i32));
  CHECK(i32 == std::numeric_limits<std::int32_t>::min());
  i32 = 7;
  CHECK_FALSE(peft::detail::json_to_integer(json(2147483648LL), i32));
  CHECK_FALSE(peft::detail::json_to_integer(json(-2147483649LL), i32));
  CHECK_FALSE(peft::detail::json_to_integer(json(1e300), i32));
  CHECK_FALSE(peft::detail::json_to_integer(json(3.0), i32));  // a float, even a whole one
  CHECK_FALSE(peft::detail::json_to_integer(json("3"), i32));
  CHECK(i32 == 7);  // untouched on failure
  std::int64_t i64 = 0;
  CHECK_FALSE(peft::detail::json_to_integer(json::parse("18446744073709551615"), i64));
  CHECK(peft::detail::json_to_integer(json::parse("9223372036854775807"), i64));
  CHECK(i64 == std::numeric_limits<std::int64_t>::max());
  std::uint32_t u32 = 0;
  CHECK_FALSE(peft::detail::json_to_integer(json(-1), u32));
  CHECK(peft::detail::json_to_integer(json(4294967295LL), u32));
  CHECK(u32 == 4294967295u);

  // A policy config's integer arrays and fields.
  const json cfg = json::parse(R"({"layers": [0, 1e300], "size": 18446744073709551615, "ok": [1, 2]})");
  CHECK_THROWS_AS(peft::config_field<std::vector<peft::index>>(cfg, "layers", "cfg"), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::config_field<std::vector<peft::index>>(cfg, "layers", "cfg"),
                    Contains("field 'layers'") && Contains("1e+300"));
  CHECK_THROWS_AS(peft::config_field<peft::index>(cfg, "size", "cfg"), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::config_field<peft::index>(cfg, "size", "cfg"),
                    Contains("field 'size'") && Contains("out of range"));
  CHECK(peft::config_field<std::vector<peft::index>>(cfg, "ok", "cfg") == std::vector<peft::index>{1, 2});

  // A verbalizer's stored ids (the fuzz input tests/data/fuzz/prompt/crash-verbalizer-id-float-cast).
  const peft::wordpiece_tokenizer tok({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "terrible"});
  CHECK(peft::verbalizer::from_json(tok, json::parse(R"({"words": ["great", "terrible"], "ids": [5, 6]})")).ids() ==
        std::vector<std::int32_t>{5, 6});
  const json bad_ids = json::parse(R"({"words": ["great", "terrible"], "ids": [5, 6.9e22]})");
  CHECK_THROWS_AS(peft::verbalizer::from_json(tok, bad_ids), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::verbalizer::from_json(tok, bad_ids), Contains("\"ids\" expected an array of 32-bit integers"));
}
