// SPDX-License-Identifier: Apache-2.0
// peft/text/unicode.hpp: UTF-8, classes, NFD / NFC / NFKC and lower-casing, checked by hand
// and against V8's ICU for every code point (tokenizers_unicode.json from reference_tokenizers).
#include "test_common.hpp"

#include <peft/text/unicode.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>

namespace u = peft::unicode;

namespace {
std::u32string cps(const nlohmann::json& j) {
  std::u32string s;
  for (const auto& c : j) s.push_back(c.get<char32_t>());
  return s;
}
}  // namespace

TEST_CASE("unicode: UTF-8 round trip and strict decoding", "[unicode]") {
  const std::string text = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";  // a é 中 😀
  const std::u32string d = u::decode_utf8(text);
  CHECK(d == std::u32string{U'a', 0xE9, 0x4E2D, 0x1F600});
  CHECK(u::encode_utf8(d) == text);
  CHECK(u::utf16_length(0x1F600) == 2);
  CHECK(u::utf16_length(0xE9) == 1);
  for (const char* bad : {"\x80", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                          "\xF8\x88\x80\x80\x80", "\xC3", "\xE4\xB8", "a\xC3(", "\xFF"}) {
    INFO("bytes: " << bad);
    CHECK_THROWS_AS(u::decode_utf8(bad), peft::invalid_argument);
  }
  try {
    u::decode_utf8("abc\xE4\xB8", "caller::method");
    FAIL("no throw");
  } catch (const peft::invalid_argument& e) {
    CHECK(std::string(e.what()) ==
          "caller::method: valid UTF-8 text expected, got a sequence cut short by the end of the text at "
          "byte offset 3");
  }
}

TEST_CASE("unicode: classes, normalisation and case by hand", "[unicode]") {
  CHECK(u::is_punctuation(U'$'));
  CHECK(u::is_punctuation(U'\u00BF'));        // ¿ Po
  CHECK_FALSE(u::is_punctuation(U'\u20AC'));  // € is Sc
  CHECK(u::is_control(U'\u200B'));
  CHECK(u::is_control(0x0378));  // unassigned
  CHECK_FALSE(u::is_control(U'\t'));
  CHECK(u::is_whitespace(0x3000));
  CHECK_FALSE(u::is_whitespace(0x200B));
  CHECK(u::is_cjk(0x4E2D));
  CHECK_FALSE(u::is_cjk(0x3042));  // hiragana
  CHECK(u::combining_class(0x301) == 230);
  CHECK(u::nfkc(U"\uFB01\u2460\u00BD\uFF76\uFF9E") ==
        U"fi1"
        U"1\u20442\u30AC");
  CHECK(u::nfd(U"\uAC01\u1E69") == U"\u1100\u1161\u11A8s\u0323\u0307");
  CHECK(u::nfc(U"s\u0307\u0323") == U"\u1E69");
  CHECK(u::nfc(U"\u1100\u1161\u11A8") == U"\uAC01");
  CHECK(u::to_lower(U"\u039F\u0394\u039F\u03A3 \u03A3 A\u03A3.") ==
        U"\u03BF\u03B4\u03BF\u03C2 \u03C3 a\u03C2.");
  CHECK(u::to_lower(U"\u0130") == U"i\u0307");
  CHECK(u::strip_accents(U"Cr\u00E8me") == U"Creme");
}

TEST_CASE("unicode: tables agree with V8/ICU on every Unicode 14 code point", "[unicode][reference]") {
  const std::string path = peft_test::reference_dir() + "/tokenizers_unicode.json";
  if (!std::filesystem::exists(path)) {
    FAIL("reference_tokenizers output missing (node not found?)");
  }
  const auto ref = nlohmann::json::parse(peft_test::read_text(path));
  auto assigned = [](char32_t c) { return u::classify(c) != u::char_class::unassigned; };
  std::size_t checked = 0, mismatches = 0;
  for (const auto& e : ref["changes"]) {
    const auto c = e[0].get<char32_t>();
    if (!assigned(c)) continue;
    const std::u32string s(1, c);
    const bool ok = u::nfd(s) == cps(e[1]) && u::nfkc(s) == cps(e[2]) && u::to_lower(s) == cps(e[3]);
    if (!ok && ++mismatches <= 10) {
      FAIL_CHECK("code point U+" << std::hex << static_cast<unsigned>(c));
    }
    ++checked;
  }
  CHECK(checked > 15000);
  CHECK(mismatches == 0);

  // Classes: compare run by run, skipping code points unassigned in Unicode 14.
  const auto& runs = ref["class_runs"];
  std::size_t class_mismatches = 0;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto first = runs[r][0].get<char32_t>();
    const char32_t end = r + 1 < runs.size() ? runs[r + 1][0].get<char32_t>() : 0x110000;
    const auto cls = static_cast<u::char_class>(runs[r][1].get<int>());
    for (char32_t c = first; c < end; ++c) {
      // U+1171E AHOM CONSONANT SIGN MEDIAL RA changed from Mn to Mc in Unicode 15.
      if (!assigned(c) || c == 0x1171E) continue;
      if (u::classify(c) != cls && ++class_mismatches <= 10) {
        FAIL_CHECK("class of U+" << std::hex << static_cast<unsigned>(c) << ": " << int(u::classify(c))
                                 << " vs ICU " << int(cls));
      }
    }
  }
  CHECK(class_mismatches == 0);

  for (const auto& s : ref["sequences"]) {
    const std::u32string in = cps(s[0]);
    INFO("sequence " << s[0].dump());
    CHECK(u::nfd(in) == cps(s[1]));
    CHECK(u::nfc(in) == cps(s[2]));
    CHECK(u::nfkc(in) == cps(s[3]));
    CHECK(u::to_lower(in) == cps(s[4]));
  }
}
