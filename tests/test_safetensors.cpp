// SPDX-License-Identifier: Apache-2.0
// safetensors reader/writer: round trips, dtype conversion (F16/BF16 edge cases included),
// every way a hostile header can be wrong, and crash-safe saving.
#include "test_common.hpp"

#include <peft/core/file_util.hpp>
#include <peft/io/safetensors.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

/// Little-endian bytes of an unsigned value.
template <typename U>
std::string le(U v) {
  std::string s;
  for (std::size_t i = 0; i < sizeof(U); ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
  return s;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  std::string s;
  for (const T& x : v) {
    if constexpr (sizeof(T) == 2) {
      std::uint16_t u;
      std::memcpy(&u, &x, 2);
      s += le(u);
    } else if constexpr (sizeof(T) == 4) {
      std::uint32_t u;
      std::memcpy(&u, &x, 4);
      s += le(u);
    } else {
      std::uint64_t u;
      std::memcpy(&u, &x, 8);
      s += le(u);
    }
  }
  return s;
}

/// A safetensors file from a literal header and data section (no validation at all).
std::string raw_file(const std::string& header, const std::string& data = std::string()) {
  return le<std::uint64_t>(header.size()) + header + data;
}

/// The test's own tiny writer: entries are {name, dtype, shape, bytes}, laid out in order.
struct entry {
  std::string name, dtype, shape;
  std::string bytes;
};
std::string tiny_file(const std::vector<entry>& entries) {
  std::string header = "{", data;
  for (const auto& e : entries) {
    if (header.size() > 1) header += ",";
    header += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":" + e.shape + ",\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + e.bytes.size()) + "]}";
    data += e.bytes;
  }
  header += "}";
  return raw_file(header, data);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// Writes @p bytes to a scratch file and tries to open it; returns the error message.
std::string open_error(const std::string& bytes) {
  static int counter = 0;
  const std::string path = peft_test::scratch_dir("st_bad") + "/bad" + std::to_string(counter++) + ".safetensors";
  write_bytes(path, bytes);
  try {
    peft::safetensors_file::open(path);
  } catch (const peft::io_error& e) {
    return e.what();
  }
  FAIL("no io_error for a corrupt file");
  return {};
}


float ldexpf_exact(int mant, int exp) { return std::ldexp(static_cast<float>(mant), exp); }

}  // namespace

TEST_CASE("half_to_float is exact for all 65536 inputs", "[safetensors][dtype]") {
  using peft::detail::half_to_float;
  // Edge cases by name.
  CHECK(half_to_float(0x0000) == 0.0f);
  CHECK_FALSE(std::signbit(half_to_float(0x0000)));
  CHECK(half_to_float(0x8000) == 0.0f);
  CHECK(std::signbit(half_to_float(0x8000)));
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(half_to_float(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(half_to_float(0x03ff) == ldexpf_exact(1023, -24));  // largest subnormal
  CHECK(half_to_float(0x0200) == std::ldexp(1.0f, -15));
  CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(half_to_float(0x3c00) == 1.0f);
  CHECK(half_to_float(0x3c01) == 1.0f + std::ldexp(1.0f, -10));
  CHECK(half_to_float(0xc000) == -2.0f);
  CHECK(half_to_float(0x3555) == ldexpf_exact(0x555 | 0x400, -12));  // ~0.333
  CHECK(half_to_float(0x7bff) == 65504.0f);                          // largest finite
  CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7e00)));
  CHECK(std::isnan(half_to_float(0x7c01)));  // signalling NaN stays NaN, not inf
  CHECK(std::isnan(half_to_float(0xfe00)));
  // Every value against the textbook formula, evaluated in double.
  int mismatches = 0;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const int sign = (h & 0x8000u) ? -1 : 1;
    const int exponent = static_cast<int>((h >> 10) & 0x1fu);
    const int mantissa = static_cast<int>(h & 0x3ffu);
    const float got = half_to_float(static_cast<std::uint16_t>(h));
    if (exponent == 31) {
      if (mantissa == 0 ? !(std::isinf(got) && (got < 0) == (sign < 0)) : !std::isnan(got)) ++mismatches;
      continue;
    }
    const double expected = exponent == 0 ? sign * std::ldexp(static_cast<double>(mantissa), -24)
                                          : sign * std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
    if (static_cast<double>(got) != expected || std::signbit(got) != (sign < 0)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("bfloat16_to_float keeps subnormals, infinities and NaN", "[safetensors][dtype]") {
  using peft::detail::bfloat16_to_float;
  CHECK(bfloat16_to_float(0x3f80) == 1.0f);
  CHECK(bfloat16_to_float(0xc040) == -3.0f);
  CHECK(bfloat16_to_float(0x3eab) == 0.333984375f);
  CHECK(bfloat16_to_float(0x0001) == std::ldexp(1.0f, -133));  // float subnormal
  CHECK(bfloat16_to_float(0x0040) == std::ldexp(1.0f, -127));
  CHECK(bfloat16_to_float(0x0080) == std::ldexp(1.0f, -126));  // smallest normal
  CHECK(std::signbit(bfloat16_to_float(0x8000)));
  CHECK(bfloat16_to_float(0x7f7f) == std::ldexp(255.0f, 120));  // largest finite
  CHECK(bfloat16_to_float(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(bfloat16_to_float(0xff80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bfloat16_to_float(0x7fc0)));
  CHECK(std::isnan(bfloat16_to_float(0x7f81)));
}

TEST_CASE("F32 round trip through save_safetensors", "[safetensors]") {
  const std::string dir = peft_test::scratch_dir("st_roundtrip");
  const std::string path = dir + "/a.safetensors";
  std::map<std::string, peft::tensor> tensors;
  tensors["w.weight"] = {{2, 3}, {1.f, 2.f, 3.f, 4.f, 5.f, -6.5f}};
  tensors["b"] = {{3}, {0.25f, -0.f, 1e-30f}};
  tensors["scalar"] = {{}, {42.f}};
  tensors["empty"] = {{0, 4}, {}};
  tensors["x.3d"] = {{2, 1, 2}, {std::numeric_limits<float>::denorm_min(), 7.f, 8.f, 9.f}};
  peft::save_safetensors(path, tensors, {{"format", "pt"}, {"note", "quote\" and \\ back"}});

  // Header layout as the reference writer makes it: 8-byte aligned, padded with spaces.
  const std::string bytes = peft_test::read_text(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == '{');
  CHECK(bytes.compare(8, 16, "{\"__metadata__\":") == 0);
  const std::string header = bytes.substr(8, n);
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));
  CHECK(header.find("\"dtype\":\"F32\"") != std::string::npos);

  const auto f = peft::safetensors_file::open(path);
  CHECK(f.names() == std::vector<std::string>{"b", "empty", "scalar", "w.weight", "x.3d"});
  CHECK(f.contains("b"));
  CHECK_FALSE(f.contains("c"));
  CHECK(f.metadata()["format"] == "pt");
  CHECK(f.metadata()["note"] == "quote\" and \\ back");
  for (const auto& kv : tensors) {
    const peft::tensor t = f.load(kv.first);
    CHECK(t.shape == kv.second.shape);
    CHECK(t.data == kv.second.data);
    CHECK(f.info(kv.first).dtype == peft::safetensors_dtype::f32);
  }
  CHECK(std::signbit(f.load("b").data[1]));
  CHECK(f.info("w.weight").shape_string() == "[2, 3]");
  // Data in sorted-name order, contiguous.
  CHECK(f.info("b").begin == 0);
  CHECK(f.info("empty").begin == 12);
  CHECK(f.info("x.3d").end == 12 + 0 + 4 + 24 + 16);
  CHECK_THROWS_MSG(f.info("nope"), peft::io_error, Contains("no tensor named 'nope'") && Contains(path));
}

TEST_CASE("safetensors_writer F64 and integer tensors round trip exactly", "[safetensors]") {
  const std::string path = peft_test::scratch_dir("st_f64") + "/d.safetensors";
  peft::safetensors_writer w;
  const std::vector<double> d{0.1, -1.0 / 3.0, 1e-310, 1e300, 2.0, 3.0};
  w.add("d", {3, 2}, d);
  w.add("i64", {2}, std::vector<std::int64_t>{-(std::int64_t(1) << 40), 7});
  w.add("i32", {1, 3}, std::vector<std::int32_t>{-5, 0, 2147483647});
  w.add("f", {1}, std::vector<float>{1.5f});
  w.save(path);
  const auto f = peft::safetensors_file::open(path);
  CHECK(f.info("d").dtype == peft::safetensors_dtype::f64);
  CHECK(f.load_values<double>("d") == d);
  const auto as_float = f.load_values<float>("d");
  CHECK(as_float[0] == 0.1f);
  CHECK(as_float[3] == std::numeric_limits<float>::infinity());  // 1e300 overflows float
  CHECK(f.load_integers("i64").data == std::vector<std::int64_t>{-(std::int64_t(1) << 40), 7});
  CHECK(f.load_integers("i32").data == std::vector<std::int64_t>{-5, 0, 2147483647});
  CHECK(f.load_integers("i32").shape == std::vector<std::int64_t>{1, 3});
  CHECK_THROWS_MSG(f.load("i64"), peft::io_error, Contains("'i64'") && Contains("got I64"));
  CHECK_THROWS_MSG(f.load_integers("d"), peft::io_error, Contains("'d'") && Contains("got F64"));

  SECTION("writer rejects bad input") {
    peft::safetensors_writer bad;
    REQUIRE_THROWS_AS(bad.add("x", {2, 2}, std::vector<float>{1.f}), peft::invalid_argument);
    REQUIRE_THROWS_AS(bad.add("x", {-1}, std::vector<float>{}), peft::invalid_argument);
    REQUIRE_THROWS_AS(bad.add("__metadata__", {1}, std::vector<float>{1.f}), peft::invalid_argument);
    REQUIRE_THROWS_AS(bad.add("", {1}, std::vector<float>{1.f}), peft::invalid_argument);
    bad.add("x", {1}, std::vector<float>{1.f});
    CHECK_THROWS_MSG(bad.add("x", {1}, std::vector<float>{1.f}), peft::invalid_argument, Contains("duplicate"));
  }
}

TEST_CASE("F16, BF16, F64, I32, I64 written by another writer are converted", "[safetensors][dtype]") {
  const std::string path = peft_test::scratch_dir("st_dtypes") + "/m.safetensors";
  const std::vector<std::uint16_t> f16{0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555};
  const std::vector<std::uint16_t> bf16{0x3f80, 0xc040, 0x0001, 0x7f80, 0x7fc0, 0x3eab};
  const std::vector<double> f64{1.0 / 3.0, -2.5, 1e-300, 4.0};
  const std::vector<std::int32_t> i32{-1, 2, 300000};
  const std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), 0, 5, 6};
  write_bytes(path, tiny_file({{"half", "F16", "[2,5]", raw_bytes(f16)},
                               {"bf", "BF16", "[3,2]", raw_bytes(bf16)},
                               {"dbl", "F64", "[2,2]", raw_bytes(f64)},
                               {"i32", "I32", "[3]", raw_bytes(i32)},
                               {"i64", "I64", "[2,2]", raw_bytes(i64)}}));
  const auto f = peft::safetensors_file::open(path);
  CHECK(f.size() == 5);

  const peft::tensor h = f.load("half");
  REQUIRE(h.shape == std::vector<std::int64_t>{2, 5});
  CHECK(h.data[0] == 1.0f);
  CHECK(h.data[1] == -2.0f);
  CHECK(h.data[2] == std::ldexp(1.0f, -24));
  CHECK(h.data[3] == ldexpf_exact(1023, -24));
  CHECK(h.data[4] == 65504.0f);
  CHECK(std::isinf(h.data[5]));
  CHECK(h.data[5] > 0);
  CHECK(std::isinf(h.data[6]));
  CHECK(h.data[6] < 0);
  CHECK(std::isnan(h.data[7]));
  CHECK(std::signbit(h.data[8]));
  CHECK(f.load_values<double>("half")[9] == static_cast<double>(ldexpf_exact(0x555 | 0x400, -12)));

  const peft::tensor b = f.load("bf");
  CHECK(b.data[0] == 1.0f);
  CHECK(b.data[1] == -3.0f);
  CHECK(b.data[2] == std::ldexp(1.0f, -133));
  CHECK(std::isinf(b.data[3]));
  CHECK(std::isnan(b.data[4]));
  CHECK(b.data[5] == 0.333984375f);

  CHECK(f.load_values<double>("dbl") == f64);
  CHECK(f.load("dbl").data[0] == static_cast<float>(1.0 / 3.0));
  CHECK(f.load("dbl").data[2] == 0.0f);  // 1e-300 underflows float
  CHECK(f.load_integers("i32").data == std::vector<std::int64_t>{-1, 2, 300000});
  CHECK(f.load_integers("i64").data == i64);
  CHECK(f.info("i64").dtype == peft::safetensors_dtype::i64);
  CHECK(peft::dtype_size(f.info("bf").dtype) == 2);
}

TEST_CASE("hostile safetensors files are rejected with a message naming the problem", "[safetensors][errors]") {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');

  SECTION("unreadable and truncated files") {
    CHECK_THROWS_MSG(peft::safetensors_file::open("/nonexistent/x.safetensors"), peft::io_error,
                           Contains("/nonexistent/x.safetensors") && Contains("cannot open"));
    CHECK_THAT(open_error("abc"), Contains("at least 8 bytes") && Contains("got 3"));
    CHECK_THAT(open_error(le<std::uint64_t>(0)), Contains("header is empty"));
    CHECK_THAT(open_error(le<std::uint64_t>(100) + "{}"), Contains("header length 100 exceeds the 2 bytes"));
    CHECK_THAT(open_error(le<std::uint64_t>(std::uint64_t(1) << 40) + "{}"), Contains("at most 100000000"));
    CHECK_THAT(open_error(le<std::uint64_t>(100000001) + "{}"), Contains("at most 100000000"));
  }
  SECTION("header is not a JSON object") {
    CHECK_THAT(open_error(raw_file("{\"a\": ")), Contains("not valid JSON"));
    CHECK_THAT(open_error(raw_file("not json")), Contains("not valid JSON"));
    CHECK_THAT(open_error(raw_file("[1,2]")), Contains("expected a JSON object, got array"));
    CHECK_THAT(open_error(raw_file("\"s\"")), Contains("expected a JSON object, got string"));
  }
  SECTION("entries with missing or mistyped fields") {
    CHECK_THAT(open_error(raw_file(R"({"a":[1]})")), Contains("tensor 'a'") && Contains("expected an object"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'a'") && Contains("missing 'dtype'"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", eight)),
               Contains("tensor 'a'") && Contains("missing 'shape'"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", eight)),
               Contains("tensor 'a'") && Contains("missing 'data_offsets'"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'a'") && Contains("dtype expected a string"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'a'") && Contains("shape expected an array"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight)),
               Contains("tensor 'a'") && Contains("data_offsets expected an array of 2"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", eight)),
               Contains("tensor 'a'") && Contains("non-negative integers"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", eight)),
               Contains("tensor 'a'") && Contains("non-negative integers"));
    CHECK_THAT(open_error(raw_file(R"({"__metadata__":{"k":1},)" + ok_entry + "}", eight)),
               Contains("__metadata__ value of 'k' expected a string"));
    CHECK_THAT(open_error(raw_file(R"({"__metadata__":[],)" + ok_entry + "}", eight)),
               Contains("__metadata__ expected an object"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(open_error(raw_file(R"({"q":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'q'") && Contains("dtype expected one of") && Contains("'F8_E4M3'"));
    CHECK_THAT(open_error(raw_file(R"({"q":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'q'") && Contains("'f32'"));
  }
  SECTION("bad shapes") {
    CHECK_THAT(open_error(raw_file(R"({"n":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'n'") && Contains("dimension 1 expected >= 0, got -2"));
    CHECK_THAT(open_error(raw_file(R"({"n":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'n'") && Contains("non-negative integer, got 2.5"));
    CHECK_THAT(open_error(raw_file(
                   R"({"n":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'n'") && Contains("overflow"));
    CHECK_THAT(open_error(raw_file(
                   R"({"n":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'n'") && Contains("overflow"));
    CHECK_THAT(open_error(raw_file(R"({"n":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)),
               Contains("tensor 'n'") && Contains("byte size expected 12") && Contains("got 8"));
    CHECK_THAT(open_error(raw_file(R"({"n":{"dtype":"F16","shape":[2,2],"data_offsets":[0,4]}})", std::string(4, 'x'))),
               Contains("tensor 'n'") && Contains("byte size expected 8"));
  }
  SECTION("offsets out of range, reversed, overlapping, leaving gaps or trailing bytes") {
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, 'x'))),
               Contains("tensor 'a'") && Contains("out of range"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight)),
               Contains("tensor 'a'") && Contains("end expected >= begin 8, got 0"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(12, 'x'))),
               Contains("tensor 'b'") && Contains("overlap tensor 'a'"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                   eight)),
               Contains("overlap"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                   std::string(12, 'x'))),
               Contains("bytes [4, 8) before tensor 'b'") && Contains("gap"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)),
               Contains("bytes [0, 4)") && Contains("gap"));
    CHECK_THAT(open_error(raw_file("{" + ok_entry + "}", std::string(9, 'x'))),
               Contains("data section expected 8 bytes") && Contains("got 9") && Contains("after tensor 'a'"));
    CHECK_THAT(open_error(raw_file("{}", "xx")), Contains("data section expected 0 bytes"));
  }
  SECTION("duplicate names") {
    CHECK_THAT(open_error(raw_file("{" + ok_entry + "," + ok_entry + "}", eight)),
               Contains("duplicate tensor name 'a'"));
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", eight)),
               Contains("duplicate key 'dtype'") && Contains("'a'"));
  }
  SECTION("well-formed edge cases are accepted") {
    // An empty file body, a zero-size tensor, a header with trailing spaces.
    const std::string dir = peft_test::scratch_dir("st_edge");
    write_bytes(dir + "/e.safetensors", raw_file("{}       "));
    CHECK(peft::safetensors_file::open(dir + "/e.safetensors").size() == 0);
    write_bytes(dir + "/z.safetensors",
                raw_file(R"({"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)" + ok_entry + "}", eight));
    const auto f = peft::safetensors_file::open(dir + "/z.safetensors");
    CHECK(f.load("z").data.empty());
    CHECK(f.load("z").shape == std::vector<std::int64_t>{0, 3});
  }
}

TEST_CASE("read_limits bound what a header may make the reader allocate", "[safetensors][limits]") {
  const std::string eight(8, '\0');
  const std::string dir = peft_test::scratch_dir("st_limits");
  SECTION("header length over the limit, and the limit is configurable") {
    const std::string path = dir + "/h.safetensors";
    const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    write_bytes(path, raw_file(header, eight));
    peft::read_limits small;
    small.max_header_bytes = 16;
    CHECK_THROWS_MSG(peft::safetensors_file::open(path, small), peft::io_error,
                     Contains("max_header_bytes") && Contains(std::to_string(header.size())));
    CHECK(peft::safetensors_file::open(path).size() == 1);
    // A declared length of 2^63 is refused before anything is allocated for it.
    CHECK_THAT(open_error(le<std::uint64_t>(std::uint64_t(1) << 63) + "{}"), Contains("expected at most"));
  }
  SECTION("more tensors than the limit") {
    const std::string path = dir + "/n.safetensors";
    write_bytes(path, tiny_file({{"a", "F32", "[1]", std::string(4, '\0')},
                                 {"b", "F32", "[1]", std::string(4, '\0')},
                                 {"c", "F32", "[1]", std::string(4, '\0')}}));
    peft::read_limits two;
    two.max_tensors = 2;
    CHECK_THROWS_MSG(peft::safetensors_file::open(path, two), peft::io_error,
                     Contains("3 entries") && Contains("max_tensors"));
    two.max_tensors = 3;
    CHECK(peft::safetensors_file::open(path, two).size() == 3);
  }
  SECTION("a load that would allocate more than max_tensor_bytes") {
    // 4 F16 values = 8 bytes on disk, 32 bytes as double.
    const std::string path = dir + "/t.safetensors";
    write_bytes(path, tiny_file({{"h", "F16", "[4]", eight}}));
    peft::read_limits lim;
    lim.max_tensor_bytes = 16;
    const auto f = peft::safetensors_file::open(path, lim);
    CHECK(f.load("h").data.size() == 4);  // 16 bytes as float: at the limit
    CHECK_THROWS_MSG(f.load_values<double>("h"), peft::io_error,
                     Contains("'h'") && Contains("32 bytes") && Contains("max_tensor_bytes"));
  }
  SECTION("JSON nested past max_json_depth is refused, however deep") {
    const std::string deep = std::string(200000, '[') + std::string(200000, ']');
    CHECK_THAT(open_error(raw_file(R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,0]}})")),
               Contains("nested deeper than 128"));
    CHECK_THAT(open_error(raw_file(R"({"__metadata__":{"x":)" + deep + "}}")), Contains("nested deeper"));
  }
  SECTION("a file that changes after open is detected before its bytes are read") {
    const std::string path = dir + "/c.safetensors";
    write_bytes(path, tiny_file({{"a", "F32", "[2]", eight}}));
    const auto f = peft::safetensors_file::open(path);
    // Truncated in place (same inode): reading the mapping past the new end would fault.
    fs::resize_file(path, 8);
    CHECK_THROWS_MSG(f.load("a"), peft::io_error, Contains("changed since it was opened"));
  }
}

TEST_CASE("a failed save leaves the previous file intact", "[safetensors][atomic]") {
  const std::string dir = peft_test::scratch_dir("st_atomic");
  const std::string path = dir + "/model.safetensors";
  peft::save_safetensors(path, {{"w", {{2, 2}, {1.f, 2.f, 3.f, 4.f}}}});
  const std::string before = peft_test::read_text(path);
  const std::map<std::string, peft::tensor> other{{"v", {{3}, {5.f, 6.f, 7.f}}}};

  SECTION("temporary file cannot be created") {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    fs::create_directory(tmp);  // a folder where the temporary file would go
    CHECK_THROWS_MSG(peft::save_safetensors(path, other), peft::io_error, Contains(tmp));
    CHECK(peft_test::read_text(path) == before);
    fs::remove(tmp);
  }
  SECTION("target folder does not exist") {
    CHECK_THROWS_MSG(peft::save_safetensors(dir + "/missing/model.safetensors", other), peft::io_error,
                           Contains(dir + "/missing/model.safetensors"));
    CHECK_FALSE(fs::exists(dir + "/missing"));
  }
  SECTION("rename fails: the target is a folder; the temporary file is cleaned up") {
    fs::create_directory(dir + "/folder");
    CHECK_THROWS_MSG(peft::atomic_write(dir + "/folder", std::string("data")), peft::io_error,
                           Contains("cannot rename"));
    CHECK(fs::is_directory(dir + "/folder"));
  }
  SECTION("invalid tensors throw before anything is written") {
    REQUIRE_THROWS_AS(peft::save_safetensors(path, {{"bad", {{2, 2}, {1.f}}}}), peft::invalid_argument);
    CHECK(peft_test::read_text(path) == before);
  }
  SECTION("a writer abandoned before commit removes its temporary file") {
    {
      peft::atomic_file_writer w(path);
      w.write(std::string("partial"));
      CHECK(fs::exists(w.temporary_path()));
    }
    CHECK(peft_test::read_text(path) == before);
  }
  SECTION("a successful save replaces the file") {
    peft::save_safetensors(path, other);
    CHECK(peft::safetensors_file::open(path).names() == std::vector<std::string>{"v"});
  }
  // No temporary files are ever left behind.
  for (const auto& e : fs::directory_iterator(dir))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  CHECK(peft::detail::read_file(path).size() > 8);
  CHECK_THROWS_MSG(peft::detail::read_file(dir + "/nope"), peft::io_error, Contains(dir + "/nope"));
}
