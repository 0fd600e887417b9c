// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_NPY_HPP
#define PEFT_IO_NPY_HPP

/// @file npy.hpp
/// NumPy `.npy` files to and from peft's types. This is the only peft header that includes
/// xtensor (link `peft::npy`); keep it out of umbrella headers.
///
/// The framing (magic, version, header length) and the size of the payload are checked
/// here; the header dictionary is parsed and the data laid out by xtensor's `xnpy`.
/// Fortran-ordered files are converted to row-major. Every failure, including xtensor's own
/// `std::runtime_error`s, is rethrown as `peft::io_error` naming the file.

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../core/types.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"

namespace peft {
namespace detail {

/// A parsed `.npy` file: its descriptor, shape, order and raw payload.
struct npy_contents {
  std::string descr;  ///< e.g. "<f4"
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::string payload;  ///< exactly numel x word size bytes
};

/// NumPy's name for a descriptor ("<f4" -> "float32"), for messages.
inline std::string npy_dtype_name(const std::string& descr) {
  if (descr.size() < 3) return "'" + descr + "'";
  const char kind = descr[1];
  const std::string bytes = descr.substr(2);
  std::string base;
  int bits = 0;
  try {
    bits = std::stoi(bytes) * 8;
  } catch (...) {
    return "'" + descr + "'";
  }
  switch (kind) {
    case 'f': base = "float"; break;
    case 'i': base = "int"; break;
    case 'u': base = "uint"; break;
    case 'b': return "bool";
    case 'c': base = "complex"; break;
    default: return "'" + descr + "'";
  }
  std::string name = base + std::to_string(bits);
  if (descr[0] == '>') name += " (big-endian)";
  return name;
}

inline std::string shape_to_string(const std::vector<std::size_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// Reads and validates a `.npy` file's framing and payload size.
/// @throws peft::io_error naming the file
inline npy_contents read_npy_contents(const std::string& path, const char* where) {
  const std::string at = std::string(where) + ": '" + path + "'";
  const std::string bytes = read_file(path, where);
  const std::size_t magic_len = xt::detail::magic_string_length;
  if (bytes.size() < magic_len + 4 || bytes.compare(0, magic_len, xt::detail::magic_string) != 0)
    throw io_error(at + ": not a .npy file (missing the \\x93NUMPY magic)");
  const auto major = static_cast<unsigned char>(bytes[magic_len]);
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t header_len = 0, pos = 0;
  if (major == 1) {
    header_len = static_cast<std::size_t>(u[magic_len + 2]) | (static_cast<std::size_t>(u[magic_len + 3]) << 8);
    pos = magic_len + 4;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < magic_len + 6) throw io_error(at + ": truncated header length");
    for (std::size_t i = 0; i < 4; ++i) header_len |= static_cast<std::size_t>(u[magic_len + 2 + i]) << (8 * i);
    pos = magic_len + 6;
  } else {
    throw io_error(at + ": format version expected 1, 2 or 3, got " + std::to_string(major));
  }
  if (header_len > bytes.size() - pos)
    throw io_error(at + ": header length " + std::to_string(header_len) + " exceeds the file (" +
                   std::to_string(bytes.size()) + " bytes)");

  npy_contents c;
  try {
    xt::detail::parse_header(bytes.substr(pos, header_len), c.descr, &c.fortran_order, c.shape);
  } catch (const std::exception& e) {
    throw io_error(at + ": malformed header (" + e.what() + ")");
  }
  if (c.descr.size() < 3 || (c.descr[0] != '<' && c.descr[0] != '>' && c.descr[0] != '|'))
    throw io_error(at + ": dtype descriptor '" + c.descr + "' not understood");
  std::size_t word = 0;
  try {
    word = static_cast<std::size_t>(std::stoul(c.descr.substr(2)));
  } catch (...) {
    throw io_error(at + ": dtype descriptor '" + c.descr + "' not understood");
  }
  // Big-endian multi-byte data would be misread on a little-endian host.
  if (c.descr[0] == '>' && word > 1) throw io_error(at + ": big-endian data (" + c.descr + ") is not supported");

  const std::size_t limit = std::numeric_limits<std::size_t>::max() / 16;
  std::size_t numel = 1;
  for (auto d : c.shape) {
    if (d > limit || (d != 0 && numel > limit / d))
      throw io_error(at + ": shape " + shape_to_string(c.shape) + " overflows");
    numel *= d;
  }
  const std::size_t expected = numel * word;
  const std::size_t have = bytes.size() - pos - header_len;
  if (have != expected)
    throw io_error(at + ": payload expected " + std::to_string(expected) + " bytes (" + std::to_string(numel) + " x " +
                   npy_dtype_name(c.descr) + " for shape " + shape_to_string(c.shape) + "), got " +
                   std::to_string(have) + (have < expected ? " (truncated file)" : " (trailing bytes)"));
  c.payload = bytes.substr(pos + header_len);
  return c;
}

/// Elements of @p c converted to T in row-major order, through xtensor's layout handling.
/// FileT is the element type on disk.
template <typename FileT, typename T>
inline std::vector<T> npy_row_major(npy_contents& c) {
  std::vector<std::size_t> shape = c.shape;
  xt::detail::npy_file file(shape, c.fortran_order, c.descr);
  if (!c.payload.empty()) std::memcpy(file.ptr(), c.payload.data(), c.payload.size());
  xt::xarray<FileT, xt::layout_type::row_major> a = std::move(file).cast<FileT>(false);
  std::vector<T> out(a.size());
  const FileT* p = a.data();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(p[i]);
  return out;
}

/// Values of a float32/float64 file as T.
template <typename T>
inline std::vector<T> npy_float_values(npy_contents& c, const std::string& at) {
  if (c.descr == "<f4") return npy_row_major<float, T>(c);
  if (c.descr == "<f8") return npy_row_major<double, T>(c);
  throw io_error(at + ": dtype expected float32 or float64, got " + npy_dtype_name(c.descr));
}

/// Wraps xtensor failures that escape the checks above.
template <typename F>
inline auto npy_guard(const std::string& at, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const peft::error&) {
    throw;
  } catch (const std::exception& e) {
    throw io_error(at + ": " + e.what());
  }
}

}  // namespace detail

/// Reads a 2-D int32 or int64 array of token ids or 0/1 masks, `[batch x time]`.
/// @throws peft::io_error naming the file if it is malformed, not 2-D, not int32/int64, or
///   holds a value outside the int32 range (naming its row and column)
inline id_matrix read_npy_ids(const std::string& path) {
  const std::string at = "read_npy_ids: '" + path + "'";
  return detail::npy_guard(at, [&] {
    detail::npy_contents c = detail::read_npy_contents(path, "read_npy_ids");
    if (c.shape.size() != 2)
      throw io_error(at + ": rank expected 2, got " + std::to_string(c.shape.size()) + " (shape " +
                     detail::shape_to_string(c.shape) + ")");
    std::vector<std::int64_t> v;
    if (c.descr == "<i4")
      v = detail::npy_row_major<std::int32_t, std::int64_t>(c);
    else if (c.descr == "<i8")
      v = detail::npy_row_major<std::int64_t, std::int64_t>(c);
    else
      throw io_error(at + ": dtype expected int32 or int64, got " + detail::npy_dtype_name(c.descr));
    const auto rows = static_cast<index>(c.shape[0]), cols = static_cast<index>(c.shape[1]);
    id_matrix m(rows, cols);
    for (index r = 0; r < rows; ++r)
      for (index k = 0; k < cols; ++k) {
        const std::int64_t x = v[static_cast<std::size_t>(r * cols + k)];
        if (x < std::numeric_limits<std::int32_t>::min() || x > std::numeric_limits<std::int32_t>::max())
          throw io_error(at + ": value at [" + std::to_string(r) + ", " + std::to_string(k) +
                         "] expected to fit in int32, got " + std::to_string(x));
        m(r, k) = static_cast<std::int32_t>(x);
      }
    return m;
  });
}

/// Reads a 2-D float32 or float64 array into a row-major matrix.
/// @tparam Scalar float or double
/// @throws peft::io_error naming the file if it is malformed, not 2-D or not float32/float64
template <typename Scalar>
matrix<Scalar> read_npy_matrix(const std::string& path) {
  static_assert(is_supported_scalar_v<Scalar>, "read_npy_matrix: Scalar must be float or double");
  const std::string at = "read_npy_matrix: '" + path + "'";
  return detail::npy_guard(at, [&] {
    detail::npy_contents c = detail::read_npy_contents(path, "read_npy_matrix");
    if (c.shape.size() != 2)
      throw io_error(at + ": rank expected 2, got " + std::to_string(c.shape.size()) + " (shape " +
                     detail::shape_to_string(c.shape) + ")");
    std::vector<Scalar> v = detail::npy_float_values<Scalar>(c, at);
    return matrix<Scalar>(const_matrix_map<Scalar>(v.data(), static_cast<index>(c.shape[0]),
                                                   static_cast<index>(c.shape[1])));
  });
}

/// Reads a float32 or float64 array of any rank as a float tensor.
/// @throws peft::io_error naming the file if it is malformed or not float32/float64
inline tensor read_npy_tensor(const std::string& path) {
  const std::string at = "read_npy_tensor: '" + path + "'";
  return detail::npy_guard(at, [&] {
    detail::npy_contents c = detail::read_npy_contents(path, "read_npy_tensor");
    tensor t;
    for (auto d : c.shape) t.shape.push_back(static_cast<std::int64_t>(d));
    t.data = detail::npy_float_values<float>(c, at);
    return t;
  });
}

/// Writes a tensor as a float32 `.npy` file, atomically.
/// @throws peft::invalid_argument if the data size does not match the shape;
///   peft::io_error naming the file if writing fails (a previous file is then unchanged)
inline void write_npy(const std::string& path, const tensor& t) {
  const std::string at = "write_npy: '" + path + "'";
  std::vector<std::size_t> shape;
  for (std::size_t k = 0; k < t.shape.size(); ++k) {
    if (t.shape[k] < 0)
      throw invalid_argument(at + ": shape dimension " + std::to_string(k) + " expected >= 0, got " +
                             std::to_string(t.shape[k]));
    shape.push_back(static_cast<std::size_t>(t.shape[k]));
  }
  if (static_cast<std::int64_t>(t.data.size()) != t.numel())
    throw invalid_argument(at + ": data size expected " + std::to_string(t.numel()) + " (numel of " +
                           t.shape_string() + "), got " + std::to_string(t.data.size()));
  const std::string bytes =
      detail::npy_guard(at, [&] { return xt::dump_npy(xt::adapt(t.data.data(), t.data.size(), xt::no_ownership(), shape)); });
  atomic_write(path, bytes);
}

/// Writes a matrix as a 2-D `.npy` file (float32 for float, float64 for double), atomically.
/// @throws peft::io_error naming the file if writing fails
template <typename Scalar>
void write_npy(const std::string& path, const matrix<Scalar>& m) {
  static_assert(is_supported_scalar_v<Scalar>, "write_npy: Scalar must be float or double");
  const std::string at = "write_npy: '" + path + "'";
  const std::vector<std::size_t> shape{static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
  const std::string bytes = detail::npy_guard(
      at, [&] { return xt::dump_npy(xt::adapt(m.data(), static_cast<std::size_t>(m.size()), xt::no_ownership(), shape)); });
  atomic_write(path, bytes);
}

/// Writes token ids or masks as a 2-D int64 `.npy` file (NumPy's default integer), atomically.
/// @throws peft::io_error naming the file if writing fails
inline void write_npy(const std::string& path, const id_matrix& ids) {
  const std::string at = "write_npy: '" + path + "'";
  std::vector<std::int64_t> v(ids.data(), ids.data() + ids.size());
  const std::vector<std::size_t> shape{static_cast<std::size_t>(ids.rows()), static_cast<std::size_t>(ids.cols())};
  const std::string bytes =
      detail::npy_guard(at, [&] { return xt::dump_npy(xt::adapt(v.data(), v.size(), xt::no_ownership(), shape)); });
  atomic_write(path, bytes);
}

}  // namespace peft

#endif  // PEFT_IO_NPY_HPP
