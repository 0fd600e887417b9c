// SPDX-License-Identifier: Apache-2.0
// Comparing peft's outputs with a reference's .npy files (PyTorch's float64 math, stored float32),
// and the small BERT folder the torch reference scripts write with its inputs.
#ifndef PEFT_TESTS_REFERENCE_COMPARE_HPP
#define PEFT_TESTS_REFERENCE_COMPARE_HPP

#include <peft/core/batch.hpp>
#include <peft/core/types.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/npy.hpp>
#include <peft/model/encoder.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_common.hpp"

namespace peft_test {

/// A reference array in the precision of the run: `<name>.npy` (float32) for float,
/// `<name>_f64.npy` (float64, the same torch computation) for double.
struct reference_array {
  std::vector<std::size_t> shape;
  std::vector<double> data;
};
template <typename Scalar>
reference_array read_reference(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name + (sizeof(Scalar) == 8 ? "_f64.npy" : ".npy");
  auto c = peft::detail::read_npy_contents(path, "test");
  reference_array r;
  r.shape = c.shape;
  r.data = peft::detail::npy_float_values<double>(c, path);
  return r;
}

/// Largest |ours - theirs| over the real (unpadded) positions of a [B, T, X] reference.
template <typename Scalar>
double max_diff_3d(const peft::matrix<Scalar>& ours, const reference_array& ref, const peft::batch& b) {
  REQUIRE(ref.shape.size() == 3);
  const auto B = static_cast<peft::index>(ref.shape[0]), T = static_cast<peft::index>(ref.shape[1]),
             X = static_cast<peft::index>(ref.shape[2]);
  REQUIRE(B == b.size());
  REQUIRE(T == b.time());
  REQUIRE(ours.rows() == B * T);
  REQUIRE(ours.cols() == X);
  double mx = 0;
  for (peft::index i = 0; i < B; ++i)
    for (peft::index t = 0; t < T; ++t) {
      if (!b.mask(i, t)) continue;
      for (peft::index x = 0; x < X; ++x)
        mx = std::max(mx, std::abs(double(ours(i * T + t, x)) - ref.data[size_t((i * T + t) * X + x)]));
    }
  return mx;
}

inline peft::batch reference_batch(const std::string& dir) {
  peft::batch b;
  b.ids = peft::read_npy_ids(dir + "/inputs_ids.npy");
  b.mask = peft::read_npy_ids(dir + "/inputs_mask.npy");
  b.segments = peft::read_npy_ids(dir + "/token_type_ids.npy");
  return b;
}


/// Largest |ours - reference| over the real tokens of a [B, T, H] reference (.npy, float32).
inline double max_hidden_diff(const peft::matrix<float>& h, const std::string& path, const peft::batch& b) {
  auto c = peft::detail::read_npy_contents(path, "test");
  const auto ref = peft::detail::npy_float_values<double>(c, path);
  REQUIRE(c.shape.size() == 3);
  const auto T = static_cast<peft::index>(c.shape[1]), H = static_cast<peft::index>(c.shape[2]);
  REQUIRE(h.rows() == b.size() * T);
  REQUIRE(h.cols() == H);
  double mx = 0;
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < T; ++t)
      if (b.mask(i, t))
        for (peft::index x = 0; x < H; ++x)
          mx = std::max(mx, std::abs(double(h(i * T + t, x)) - ref[std::size_t((i * T + t) * H + x)]));
  return mx;
}

/// Largest |ours - reference| of a [rows, cols] reference (.npy, float32), e.g. logits.
inline double max_matrix_diff(const peft::matrix<float>& m, const std::string& path) {
  auto c = peft::detail::read_npy_contents(path, "test");
  const auto ref = peft::detail::npy_float_values<double>(c, path);
  REQUIRE(m.size() == static_cast<peft::index>(ref.size()));
  double d = 0;
  for (peft::index i = 0; i < m.rows(); ++i)
    for (peft::index k = 0; k < m.cols(); ++k)
      d = std::max(d, std::abs(double(m(i, k)) - ref[std::size_t(i * m.cols() + k)]));
  return d;
}

/// The BERT folder `<dir>/model` a torch reference script writes (tests/reference/torch_hf_peft.py
/// write_model_folder), as a float encoder, with the batch of its inputs_*.npy.
struct reference_bert {
  std::string dir;
  peft::shared_weights<float> weights;
  peft::encoder<peft::bert, float> enc;
  peft::batch b;
  explicit reference_bert(std::string folder)
      : dir(std::move(folder)), weights(peft::load_hf_encoder<float>(dir + "/model")), enc(weights) {
    b.ids = peft::read_npy_ids(dir + "/model/inputs_ids.npy");
    b.mask = peft::read_npy_ids(dir + "/model/inputs_mask.npy");
    b.segments = peft::read_npy_ids(dir + "/model/token_type_ids.npy");
  }
};

/// Copies reference folder @p src to scratch folder @p name with its adapter_config.json
/// edited by @p edit (a fixture turned into a folder to refuse).
template <typename F>
std::string edited_copy(const std::string& src, const std::string& name, F edit) {
  namespace fs = std::filesystem;
  const std::string dir = scratch_dir(name);
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file())
      fs::copy_file(e.path(), fs::path(dir) / e.path().filename(), fs::copy_options::overwrite_existing);
  nlohmann::json j = nlohmann::json::parse(read_text(src + "/adapter_config.json"));
  edit(j);
  std::ofstream(dir + "/adapter_config.json") << j.dump(2);
  return dir;
}

}  // namespace peft_test

#endif  // PEFT_TESTS_REFERENCE_COMPARE_HPP
