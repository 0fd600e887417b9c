// SPDX-License-Identifier: Apache-2.0
// .npy reading and writing: non-square round trips, Fortran order, int32/int64 ids, dtype
// and rank errors, corrupt files, and the files written by NumPy for the torch reference.
#include "test_common.hpp"

#include <peft/io/npy.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {


/// A hand-made .npy file (format 1.0) with the given header dictionary and payload.
std::string npy_bytes(const std::string& dict, const std::string& payload, unsigned char major = 1) {
  std::string header = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const std::size_t n = header.size();
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  if (major != 1) {
    out.push_back('\0');
    out.push_back('\0');
  }
  return out + header + payload;
}

template <typename T>
std::string payload(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(&s[0], v.data(), s.size());
  return s;
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

}  // namespace

TEST_CASE("write_npy / read_npy_tensor round trip a non-square 3-D tensor", "[npy]") {
  const std::string dir = peft_test::scratch_dir("npy_rt");
  peft::tensor t;
  t.shape = {2, 3, 4};
  for (int i = 0; i < 24; ++i) t.data.push_back(static_cast<float>(i) * 0.5f - 3.0f);
  peft::write_npy(dir + "/t.npy", t);
  const std::string bytes = peft_test::read_text(dir + "/t.npy");
  CHECK(bytes.find("'descr': '<f4'") != std::string::npos);
  CHECK(bytes.find("'fortran_order': False") != std::string::npos);
  CHECK(bytes.find("'shape': (2, 3, 4)") != std::string::npos);
  const peft::tensor u = peft::read_npy_tensor(dir + "/t.npy");
  CHECK(u.shape == t.shape);
  CHECK(u.data == t.data);

  SECTION("as a matrix, 2-D only") {
    peft::tensor m{{2, 3}, {0.f, 1.f, 2.f, 10.f, 11.f, 12.f}};
    peft::write_npy(dir + "/m.npy", m);
    const auto a = peft::read_npy_matrix<float>(dir + "/m.npy");
    REQUIRE(a.rows() == 2);
    REQUIRE(a.cols() == 3);
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) CHECK(a(r, c) == static_cast<float>(10 * r + c));
    const auto d = peft::read_npy_matrix<double>(dir + "/m.npy");
    CHECK(d(1, 2) == 12.0);
    CHECK_THROWS_MSG(peft::read_npy_matrix<float>(dir + "/t.npy"), peft::io_error,
                     Contains(dir + "/t.npy") && Contains("rank expected 2, got 3") && Contains("[2, 3, 4]"));
  }
  SECTION("scalars and empty arrays") {
    peft::write_npy(dir + "/s.npy", peft::tensor{{}, {7.f}});
    CHECK(peft::read_npy_tensor(dir + "/s.npy").data == std::vector<float>{7.f});
    CHECK(peft::read_npy_tensor(dir + "/s.npy").shape.empty());
    peft::write_npy(dir + "/e.npy", peft::tensor{{0, 5}, {}});
    CHECK(peft::read_npy_tensor(dir + "/e.npy").shape == std::vector<std::int64_t>{0, 5});
  }
  SECTION("bad tensors are rejected before writing") {
    CHECK_THROWS_MSG(peft::write_npy(dir + "/t.npy", peft::tensor{{2, 2}, {1.f}}), peft::invalid_argument,
                     Contains("data size expected 4"));
    CHECK(peft::read_npy_tensor(dir + "/t.npy").data == t.data);
  }
}

TEST_CASE("matrices and ids written from Eigen round trip", "[npy]") {
  const std::string dir = peft_test::scratch_dir("npy_eigen");
  peft::matrix<double> m(3, 2);
  m << 1.0 / 3.0, 2.0, 3.0, 4.0, 5.0, 1e-300;
  peft::write_npy(dir + "/m.npy", m);
  CHECK(peft_test::read_text(dir + "/m.npy").find("'<f8'") != std::string::npos);
  CHECK(peft::read_npy_matrix<double>(dir + "/m.npy") == m);
  CHECK(peft::read_npy_matrix<float>(dir + "/m.npy")(0, 0) == static_cast<float>(1.0 / 3.0));

  peft::id_matrix ids(2, 5);
  ids << 101, 2003, 2017, 102, 0, 101, 7, 8, 9, 102;
  peft::write_npy(dir + "/ids.npy", ids);
  CHECK(peft_test::read_text(dir + "/ids.npy").find("'<i8'") != std::string::npos);
  const peft::id_matrix back = peft::read_npy_ids(dir + "/ids.npy");
  CHECK(back == ids);
  CHECK(back(0, 1) == 2003);
  CHECK(back(1, 4) == 102);
}

TEST_CASE("hand-made .npy files: Fortran order, int32/int64, format 2.0", "[npy]") {
  const std::string dir = peft_test::scratch_dir("npy_hand");
  // 2 x 3 matrix [[0,1,2],[10,11,12]] stored column-major.
  const auto fortran = write_file(dir, "f.npy",
                                  npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                                            payload<float>({0, 10, 1, 11, 2, 12})));
  const auto a = peft::read_npy_matrix<float>(fortran);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) CHECK(a(r, c) == static_cast<float>(10 * r + c));
  const peft::tensor t = peft::read_npy_tensor(fortran);
  CHECK(t.data == std::vector<float>{0, 1, 2, 10, 11, 12});

  const auto i32 = write_file(dir, "i32.npy",
                              npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }",
                                        payload<std::int32_t>({1, -2, 3, 4, 5, 2147483647})));
  const peft::id_matrix ids = peft::read_npy_ids(i32);
  CHECK(ids.rows() == 2);
  CHECK(ids(0, 1) == -2);
  CHECK(ids(1, 2) == 2147483647);

  const auto i64f = write_file(dir, "i64f.npy",
                               npy_bytes("{'descr': '<i8', 'fortran_order': True, 'shape': (3, 2), }",
                                         payload<std::int64_t>({0, 1, 2, 10, 11, 12})));
  const peft::id_matrix idf = peft::read_npy_ids(i64f);
  CHECK(idf(2, 0) == 2);
  CHECK(idf(0, 1) == 10);

  const auto v2 = write_file(dir, "v2.npy",
                             npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
                                       payload<double>({0.5, -0.25}), 2));
  CHECK(peft::read_npy_matrix<double>(v2)(0, 1) == -0.25);
}

TEST_CASE("npy dtype, rank and corruption errors name the file and what was found", "[npy][errors]") {
  const std::string dir = peft_test::scratch_dir("npy_bad");
  const auto f32 = write_file(dir, "f32.npy",
                              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                                        payload<float>({1, 2, 3, 4})));
  CHECK_THROWS_MSG(peft::read_npy_ids(f32), peft::io_error,
                   Contains(f32) && Contains("dtype expected int32 or int64, got float32"));
  const auto i8 = write_file(dir, "i8.npy",
                             npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
                                       payload<std::int64_t>({1, 2, 3, 4})));
  CHECK_THROWS_MSG(peft::read_npy_ids(i8), peft::io_error, Contains(i8) && Contains("rank expected 2, got 1"));
  CHECK_THROWS_MSG(peft::read_npy_tensor(i8), peft::io_error, Contains("dtype expected float32 or float64, got int64"));
  const auto big = write_file(dir, "big.npy",
                              npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
                                        payload<std::int64_t>({1, std::int64_t(1) << 40})));
  CHECK_THROWS_MSG(peft::read_npy_ids(big), peft::io_error,
                   Contains(big) && Contains("[0, 1]") && Contains("int32") && Contains("1099511627776"));
  const auto boolean = write_file(dir, "b.npy",
                                  npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }",
                                            std::string("\x01\x00", 2)));
  CHECK_THROWS_MSG(peft::read_npy_ids(boolean), peft::io_error, Contains("got bool"));
  const auto be = write_file(dir, "be.npy",
                             npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }",
                                       std::string(4, '\0')));
  CHECK_THROWS_MSG(peft::read_npy_tensor(be), peft::io_error, Contains(be) && Contains("big-endian"));
  const auto trunc = write_file(dir, "trunc.npy",
                                npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }",
                                          payload<float>({1, 2, 3})));
  CHECK_THROWS_MSG(peft::read_npy_tensor(trunc), peft::io_error,
                   Contains(trunc) && Contains("payload expected 60 bytes") && Contains("truncated"));
  const auto extra = write_file(dir, "extra.npy",
                                npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                          payload<float>({1, 2})));
  CHECK_THROWS_MSG(peft::read_npy_tensor(extra), peft::io_error, Contains("trailing bytes"));
  const auto huge = write_file(dir, "huge.npy",
                               npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                         "'shape': (4294967296, 4294967296, 4294967296), }",
                                         payload<float>({1})));
  CHECK_THROWS_MSG(peft::read_npy_tensor(huge), peft::io_error, Contains(huge) && Contains("overflows"));
  const auto magic = write_file(dir, "magic.npy", "PK\x03\x04 this is a zip file");
  CHECK_THROWS_MSG(peft::read_npy_tensor(magic), peft::io_error, Contains(magic) && Contains("magic"));
  const auto nodict = write_file(dir, "nodict.npy", npy_bytes("{'descr': '<f4', 'shape': (1,), }", payload<float>({1})));
  CHECK_THROWS_MSG(peft::read_npy_tensor(nodict), peft::io_error, Contains(nodict) && Contains("malformed header"));
  const auto version = write_file(dir, "v9.npy", npy_bytes("{}", "", 9));
  CHECK_THROWS_MSG(peft::read_npy_tensor(version), peft::io_error, Contains("version expected 1, 2 or 3, got 9"));
  CHECK_THROWS_MSG(peft::read_npy_tensor(dir + "/missing.npy"), peft::io_error,
                   Contains(dir + "/missing.npy") && Contains("cannot open"));
}

TEST_CASE("a failed write_npy leaves the previous file intact", "[npy][atomic]") {
  const std::string dir = peft_test::scratch_dir("npy_atomic");
  const std::string path = dir + "/x.npy";
  peft::write_npy(path, peft::tensor{{1, 2}, {1.f, 2.f}});
  const std::string before = peft_test::read_text(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp);
  CHECK_THROWS_MSG(peft::write_npy(path, peft::tensor{{3}, {4.f, 5.f, 6.f}}), peft::io_error, Contains(tmp));
  CHECK(peft_test::read_text(path) == before);
  fs::remove(tmp);
  CHECK_THROWS_AS(peft::write_npy(dir + "/no/such/dir.npy", peft::tensor{{1}, {1.f}}), peft::io_error);
}

TEST_CASE("NumPy-written reference files load with the right shapes", "[npy][reference]") {
  const std::string dir = peft_test::reference_dir() + "/torch/bert";
  const peft::id_matrix ids = peft::read_npy_ids(dir + "/inputs_ids.npy");
  const peft::id_matrix mask = peft::read_npy_ids(dir + "/inputs_mask.npy");
  REQUIRE(ids.rows() == 3);
  REQUIRE(ids.cols() == 12);
  CHECK(mask.row(0).sum() == 7);
  CHECK(mask.row(1).sum() == 12);
  CHECK(mask.row(2).sum() == 4);
  CHECK(ids(2, 5) == 0);  // BERT pad id
  const peft::tensor hidden = peft::read_npy_tensor(dir + "/hidden.npy");
  CHECK(hidden.shape == std::vector<std::int64_t>{3, 12, 64});
  const peft::tensor hidden64 = peft::read_npy_tensor(dir + "/hidden_f64.npy");
  REQUIRE(hidden64.data.size() == hidden.data.size());
  for (std::size_t i = 0; i < hidden.data.size(); i += 97) CHECK(hidden64.data[i] == hidden.data[i]);
  const auto w = peft::read_npy_matrix<float>(dir + "/word_embeddings.npy");
  CHECK(w.rows() == 100);
  CHECK(w.cols() == 64);
}
