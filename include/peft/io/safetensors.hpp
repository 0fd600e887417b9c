// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_SAFETENSORS_HPP
#define PEFT_IO_SAFETENSORS_HPP

/// @file safetensors.hpp
/// Reader and writer for the safetensors format: an 8-byte little-endian header length `N`,
/// `N` bytes of JSON header, then the raw little-endian tensor bytes. The header maps each
/// tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the
/// end of the header) and may hold a `"__metadata__"` object of string values.
///
/// The reader treats the file as hostile: every field of the header is checked before any
/// tensor is read, and every problem throws `peft::io_error` naming the file and the tensor.
/// Supported dtypes: F16, BF16, F32, F64 (read as float or double), I32, I64 (read as
/// integers) and U8, BOOL (bytes: read with `load_bytes`, as integers, or by `load` as exact
/// float values; U8 holds e.g. bit-packed masks). The file is memory-mapped read-only and a
/// tensor's bytes are converted on demand, so opening a large checkpoint is cheap. Declared
/// sizes are checked against `peft::read_limits` (header bytes, tensor count, JSON depth, the
/// bytes a load would allocate) before anything is allocated for them.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/limits.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"

namespace peft {

/// Element types peft reads from safetensors files.
enum class safetensors_dtype { f16, bf16, f32, f64, i32, i64, u8, boolean };

/// Name as written in the header ("F16", "BF16", "F32", "F64", "I32", "I64", "U8", "BOOL").
inline const char* to_string(safetensors_dtype d) noexcept {
  switch (d) {
    case safetensors_dtype::f16: return "F16";
    case safetensors_dtype::bf16: return "BF16";
    case safetensors_dtype::f32: return "F32";
    case safetensors_dtype::f64: return "F64";
    case safetensors_dtype::i32: return "I32";
    case safetensors_dtype::i64: return "I64";
    case safetensors_dtype::u8: return "U8";
    case safetensors_dtype::boolean: return "BOOL";
  }
  return "?";
}

/// Bytes per element.
inline std::size_t dtype_size(safetensors_dtype d) noexcept {
  switch (d) {
    case safetensors_dtype::f16:
    case safetensors_dtype::bf16: return 2;
    case safetensors_dtype::f32:
    case safetensors_dtype::i32: return 4;
    case safetensors_dtype::f64:
    case safetensors_dtype::i64: return 8;
    case safetensors_dtype::u8:
    case safetensors_dtype::boolean: return 1;
  }
  return 0;
}

/// True for F16, BF16, F32 and F64.
inline bool is_floating(safetensors_dtype d) noexcept {
  return d == safetensors_dtype::f16 || d == safetensors_dtype::bf16 || d == safetensors_dtype::f32 ||
         d == safetensors_dtype::f64;
}

/// True for U8 and BOOL (one byte per element).
inline bool is_byte(safetensors_dtype d) noexcept {
  return d == safetensors_dtype::u8 || d == safetensors_dtype::boolean;
}

/// A byte tensor (U8 or BOOL on disk), row-major.
struct byte_tensor {
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;
};

/// One header entry, validated.
struct tensor_info {
  std::string name;
  safetensors_dtype dtype = safetensors_dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  ///< first byte, relative to the start of the data section
  std::uint64_t end = 0;    ///< one past the last byte

  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::string shape_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

/// An integer tensor (I32 or I64 on disk), row-major.
struct int_tensor {
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> data;
};

namespace detail {

/// Reads an unsigned little-endian integer of type U from @p p, whatever the host order.
template <typename U>
inline U load_le(const unsigned char* p) noexcept {
  static_assert(std::is_unsigned_v<U>, "load_le needs an unsigned type");
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>(v | static_cast<U>(static_cast<U>(p[i]) << (8 * i)));
  return v;
}

/// Appends U's little-endian bytes to @p out.
template <typename U>
inline void store_le(std::string& out, U v) {
  static_assert(std::is_unsigned_v<U>, "store_le needs an unsigned type");
  for (std::size_t i = 0; i < sizeof(U); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

template <typename To, typename From>
inline To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

/// IEEE 754 binary16 to binary32, exact for every input: signed zeros, subnormals
/// (renormalised), infinities and NaNs (payload kept).
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (static_cast<std::uint32_t>(h) >> 10) & 0x1fu;
  std::uint32_t mantissa = static_cast<std::uint32_t>(h) & 0x3ffu;
  std::uint32_t bits = 0;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {
      // value = mantissa * 2^-24; with p the highest set bit, the float exponent is p - 24.
      std::uint32_t p = 9;
      while ((mantissa & (1u << p)) == 0) --p;
      bits = sign | ((p + 103u) << 23) | ((mantissa << (23u - p)) & 0x7fffffu);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  return bit_cast<float>(bits);
}

/// bfloat16 to binary32: the upper half of a float, so the conversion is exact.
inline float bfloat16_to_float(std::uint16_t b) noexcept {
  return bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Parses a dtype string; returns false for anything peft does not read.
inline bool parse_safetensors_dtype(const std::string& s, safetensors_dtype& out) noexcept {
  static const std::pair<const char*, safetensors_dtype> table[] = {
      {"F16", safetensors_dtype::f16}, {"BF16", safetensors_dtype::bf16}, {"F32", safetensors_dtype::f32},
      {"F64", safetensors_dtype::f64}, {"I32", safetensors_dtype::i32},   {"I64", safetensors_dtype::i64},
      {"U8", safetensors_dtype::u8},   {"BOOL", safetensors_dtype::boolean}};
  for (const auto& e : table)
    if (s == e.first) {
      out = e.second;
      return true;
    }
  return false;
}

/// Converts @p n elements of @p dtype at @p src into @p dst (float, double or int64).
template <typename T>
inline void convert_elements(safetensors_dtype dtype, const unsigned char* src, std::size_t n, T* dst) {
  switch (dtype) {
    case safetensors_dtype::f16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(half_to_float(load_le<std::uint16_t>(src + 2 * i)));
      break;
    case safetensors_dtype::bf16:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = static_cast<T>(bfloat16_to_float(load_le<std::uint16_t>(src + 2 * i)));
      break;
    case safetensors_dtype::f32:
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(bit_cast<float>(load_le<std::uint32_t>(src + 4 * i)));
      break;
    case safetensors_dtype::f64:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = static_cast<T>(bit_cast<double>(load_le<std::uint64_t>(src + 8 * i)));
      break;
    case safetensors_dtype::i32:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = static_cast<T>(bit_cast<std::int32_t>(load_le<std::uint32_t>(src + 4 * i)));
      break;
    case safetensors_dtype::i64:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = static_cast<T>(bit_cast<std::int64_t>(load_le<std::uint64_t>(src + 8 * i)));
      break;
    case safetensors_dtype::u8:
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
      break;
    case safetensors_dtype::boolean:
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i] != 0 ? 1 : 0);
      break;
  }
}

/// Reads a non-negative JSON integer; false if @p j is not one.
inline bool json_to_u64(const nlohmann::json& j, std::uint64_t& out) noexcept {
  if (j.is_number_unsigned()) {
    out = j.get<std::uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<std::int64_t>() >= 0) {
    out = static_cast<std::uint64_t>(j.get<std::int64_t>());
    return true;
  }
  return false;
}

}  // namespace detail

/// A validated, open safetensors file, mapped read-only; each `load` converts one tensor's
/// bytes from the mapping.
///
/// Copyable and cheap to copy (copies share the mapping and hold the parsed header).
class safetensors_file {
public:
  /// Maps @p path and validates its header against @p limits.
  /// @throws peft::io_error naming the file and, where one is at fault, the tensor: unreadable
  ///   file; header length over `limits.max_header_bytes` or past the end of the file; header
  ///   not JSON, not an object, nested deeper than `limits.max_json_depth` or with more than
  ///   `limits.max_tensors` entries; an entry without dtype/shape/data_offsets, with an unknown
  ///   dtype, a negative or overflowing shape, offsets out of range, reversed, overlapping or
  ///   leaving bytes uncovered, or a byte size other than numel x dtype size; duplicate names.
  static safetensors_file open(const std::string& path, const read_limits& limits = default_read_limits()) {
    safetensors_file f;
    f.m_path = path;
    f.m_limits = limits;
    const std::string where = "safetensors_file::open: '" + path + "'";
    f.m_map = std::make_shared<const detail::mapped_file>(path, "safetensors_file::open");
    const std::uint64_t file_size = f.m_map->size();
    if (file_size < 8)
      throw io_error(where + ": file size expected at least 8 bytes (header length), got " +
                     std::to_string(file_size));
    const std::uint64_t header_len = detail::load_le<std::uint64_t>(f.m_map->data());
    if (header_len > limits.max_header_bytes)
      throw io_error(where + ": header length expected at most " + std::to_string(limits.max_header_bytes) +
                     " bytes (read_limits::max_header_bytes), got " + std::to_string(header_len) +
                     " (not a safetensors file?)");
    if (header_len > file_size - 8)
      throw io_error(where + ": header length " + std::to_string(header_len) + " exceeds the " +
                     std::to_string(file_size - 8) + " bytes that follow it (truncated file?)");
    if (header_len == 0) throw io_error(where + ": header is empty (length 0)");
    const std::string header(reinterpret_cast<const char*>(f.m_map->data()) + 8, static_cast<std::size_t>(header_len));
    f.m_data_start = 8 + header_len;
    f.parse_header(header, file_size - f.m_data_start, where);
    return f;
  }

  /// Path the file was opened from.
  const std::string& path() const noexcept { return m_path; }

  /// Tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(m_tensors.size());
    for (const auto& kv : m_tensors) out.push_back(kv.first);
    return out;
  }

  /// Number of tensors.
  std::size_t size() const noexcept { return m_tensors.size(); }

  bool contains(const std::string& name) const { return m_tensors.count(name) != 0; }

  /// Header entry of @p name.
  /// @throws peft::io_error naming the file and tensor if there is no such tensor
  const tensor_info& info(const std::string& name) const {
    auto it = m_tensors.find(name);
    if (it == m_tensors.end())
      throw io_error("safetensors_file::info: '" + m_path + "' has no tensor named '" + name + "'");
    return it->second;
  }

  /// The `__metadata__` object (an empty object if the file has none); values are strings.
  const nlohmann::json& metadata() const noexcept { return m_metadata; }

  /// Loads a floating-point tensor, converted to float. U8 and BOOL tensors are accepted
  /// too (their values 0..255 / 0..1 are exact in float).
  /// @throws peft::io_error if the tensor is missing, has an I32/I64 dtype, or cannot be read
  tensor load(const std::string& name) const {
    tensor t;
    const tensor_info& ti = info(name);
    t.shape = ti.shape;
    t.data = is_byte(ti.dtype) ? read_converted<float>(ti) : load_values<float>(name);
    return t;
  }

  /// Loads a U8 or BOOL tensor as bytes (BOOL as 0/1).
  /// @throws peft::io_error if the tensor is missing, has another dtype, or cannot be read
  byte_tensor load_bytes(const std::string& name) const {
    const tensor_info& ti = info(name);
    if (!is_byte(ti.dtype))
      throw io_error("safetensors_file::load_bytes: tensor '" + name + "' in '" + m_path +
                     "' dtype expected U8 or BOOL, got " + to_string(ti.dtype));
    byte_tensor t;
    t.shape = ti.shape;
    t.data = read_converted<std::uint8_t>(ti);
    return t;
  }

  /// Loads a floating-point tensor's values (row-major) converted to @p Scalar (float or
  /// double; F64 read as double is exact).
  /// @throws peft::io_error if the tensor is missing, has an integer dtype, or cannot be read
  template <typename Scalar>
  std::vector<Scalar> load_values(const std::string& name) const {
    static_assert(is_supported_scalar_v<Scalar>, "safetensors_file::load_values: Scalar must be float or double");
    const tensor_info& ti = info(name);
    if (!is_floating(ti.dtype))
      throw io_error("safetensors_file::load: tensor '" + name + "' in '" + m_path +
                     "' dtype expected F16, BF16, F32 or F64, got " + to_string(ti.dtype) +
                     " (use load_integers)");
    return read_converted<Scalar>(ti);
  }

  /// Loads an I32, I64, U8 or BOOL tensor as 64-bit integers.
  /// @throws peft::io_error if the tensor is missing, has a floating dtype, or cannot be read
  int_tensor load_integers(const std::string& name) const {
    const tensor_info& ti = info(name);
    if (is_floating(ti.dtype))
      throw io_error("safetensors_file::load_integers: tensor '" + name + "' in '" + m_path +
                     "' dtype expected I32, I64, U8 or BOOL, got " + to_string(ti.dtype));
    int_tensor t;
    t.shape = ti.shape;
    t.data = read_converted<std::int64_t>(ti);
    return t;
  }

  /// Byte offset of the data section in the file (8 + header length).
  std::uint64_t data_start() const noexcept { return m_data_start; }

private:
  safetensors_file() = default;

  template <typename T>
  std::vector<T> read_converted(const tensor_info& ti) const {
    const auto n = static_cast<std::size_t>(ti.numel());
    // numel <= 2^59 (checked at open), so this cannot overflow.
    const std::uint64_t out_bytes = static_cast<std::uint64_t>(ti.numel()) * sizeof(T);
    if (out_bytes > m_limits.max_tensor_bytes)
      throw io_error("safetensors_file::load: tensor '" + ti.name + "' in '" + m_path + "' (shape " +
                     ti.shape_string() + ") would need " + std::to_string(out_bytes) + " bytes, over the limit of " +
                     std::to_string(m_limits.max_tensor_bytes) + " (read_limits::max_tensor_bytes)");
    std::vector<T> out(n);
    if (ti.end == ti.begin) return out;
    m_map->check_unchanged("safetensors_file::load");
    detail::convert_elements(ti.dtype, m_map->data() + m_data_start + ti.begin, n, out.data());
    return out;
  }

  void parse_header(const std::string& header, std::uint64_t data_size, const std::string& where) {
    using json = nlohmann::json;
    // Duplicate keys are legal JSON but ambiguous; nlohmann keeps the last, so detect them here.
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate, duplicate_parent, current_top;
    const int max_depth = m_limits.max_json_depth;
    auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
      if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
          depth >= max_depth)
        throw io_error(where + ": header JSON nested deeper than " + std::to_string(max_depth) +
                       " levels (read_limits::max_json_depth)");
      if (event == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == json::parse_event_t::object_end) {
        if (!open_objects.empty()) open_objects.pop_back();
      } else if (event == json::parse_event_t::key && !open_objects.empty()) {
        const std::string key = parsed.get<std::string>();
        if (depth == 1) current_top = key;
        if (!open_objects.back().insert(key).second && duplicate.empty()) {
          duplicate = key;
          duplicate_parent = depth == 1 ? std::string() : current_top;
        }
      }
      return true;
    };
    json j;
    try {
      j = json::parse(header.begin(), header.end(), callback);
    } catch (const json::exception& e) {
      throw io_error(where + ": header is not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw io_error(where + ": header expected a JSON object, got " + j.type_name());
    if (j.size() > m_limits.max_tensors + (j.contains("__metadata__") ? 1 : 0))
      throw io_error(where + ": header declares " + std::to_string(j.size()) + " entries, over the limit of " +
                     std::to_string(m_limits.max_tensors) + " tensors (read_limits::max_tensors)");
    if (!duplicate.empty()) {
      if (duplicate_parent.empty()) throw io_error(where + ": duplicate tensor name '" + duplicate + "' in header");
      throw io_error(where + ": duplicate key '" + duplicate + "' in the header entry of '" + duplicate_parent + "'");
    }

    m_metadata = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& name = it.key();
      const json& entry = it.value();
      if (name == "__metadata__") {
        if (!entry.is_object())
          throw io_error(where + ": __metadata__ expected an object, got " + entry.type_name());
        for (auto m = entry.begin(); m != entry.end(); ++m)
          if (!m.value().is_string())
            throw io_error(where + ": __metadata__ value of '" + m.key() + "' expected a string, got " +
                           m.value().type_name());
        m_metadata = entry;
        continue;
      }
      const std::string at = where + ": tensor '" + name + "'";
      if (!entry.is_object()) throw io_error(at + ": entry expected an object, got " + entry.type_name());
      for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(key)) throw io_error(at + ": missing '" + key + "'");

      tensor_info ti;
      ti.name = name;
      const json& dt = entry["dtype"];
      if (!dt.is_string()) throw io_error(at + ": dtype expected a string, got " + dt.type_name());
      if (!detail::parse_safetensors_dtype(dt.get<std::string>(), ti.dtype))
        throw io_error(at + ": dtype expected one of F16, BF16, F32, F64, I32, I64, U8, BOOL, got '" + dt.get<std::string>() +
                       "'");

      const json& sh = entry["shape"];
      if (!sh.is_array()) throw io_error(at + ": shape expected an array, got " + sh.type_name());
      // Cap numel so that numel * 8 bytes can never overflow.
      constexpr std::uint64_t max_numel = std::uint64_t(1) << 59;
      std::uint64_t numel = 1;
      for (std::size_t k = 0; k < sh.size(); ++k) {
        const json& d = sh[k];
        if (d.is_number_integer() && !d.is_number_unsigned() && d.get<std::int64_t>() < 0)
          throw io_error(at + ": shape dimension " + std::to_string(k) + " expected >= 0, got " + d.dump());
        std::uint64_t dim = 0;
        if (!detail::json_to_u64(d, dim))
          throw io_error(at + ": shape dimension " + std::to_string(k) + " expected a non-negative integer, got " +
                         d.dump());
        if (dim > max_numel || (dim != 0 && numel > max_numel / dim))
          throw io_error(at + ": shape " + sh.dump() + " has too many elements (overflow)");
        numel *= dim;
        ti.shape.push_back(static_cast<std::int64_t>(dim));
      }

      const json& off = entry["data_offsets"];
      if (!off.is_array() || off.size() != 2)
        throw io_error(at + ": data_offsets expected an array of 2 integers, got " + off.dump());
      if (!detail::json_to_u64(off[0], ti.begin) || !detail::json_to_u64(off[1], ti.end))
        throw io_error(at + ": data_offsets expected non-negative integers, got " + off.dump());
      if (ti.end < ti.begin)
        throw io_error(at + ": data_offsets end expected >= begin " + std::to_string(ti.begin) + ", got " +
                       std::to_string(ti.end));
      if (ti.end > data_size)
        throw io_error(at + ": data_offsets end expected <= data section size " + std::to_string(data_size) +
                       ", got " + std::to_string(ti.end) + " (out of range)");
      const std::uint64_t expected_bytes = numel * dtype_size(ti.dtype);
      if (ti.end - ti.begin != expected_bytes)
        throw io_error(at + ": byte size expected " + std::to_string(expected_bytes) + " (" + std::to_string(numel) +
                       " x " + to_string(ti.dtype) + " for shape " + ti.shape_string() + "), got " +
                       std::to_string(ti.end - ti.begin));
      m_tensors.emplace(name, std::move(ti));
    }

    // The tensors must tile the data section exactly: no overlaps, no gaps, no trailing bytes.
    std::vector<const tensor_info*> order;
    order.reserve(m_tensors.size());
    for (const auto& kv : m_tensors) order.push_back(&kv.second);
    std::sort(order.begin(), order.end(), [](const tensor_info* a, const tensor_info* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t cursor = 0;
    const tensor_info* previous = nullptr;
    for (const tensor_info* t : order) {
      if (t->begin < cursor)
        throw io_error(where + ": tensor '" + t->name + "' data_offsets [" + std::to_string(t->begin) + ", " +
                       std::to_string(t->end) + "] overlap tensor '" + previous->name + "' [" +
                       std::to_string(previous->begin) + ", " + std::to_string(previous->end) + "]");
      if (t->begin > cursor)
        throw io_error(where + ": data bytes [" + std::to_string(cursor) + ", " + std::to_string(t->begin) +
                       ") before tensor '" + t->name + "' belong to no tensor (gap)");
      cursor = t->end;
      previous = t;
    }
    if (cursor != data_size)
      throw io_error(where + ": data section expected " + std::to_string(cursor) +
                     " bytes (the end of the last tensor), got " + std::to_string(data_size) +
                     (previous ? " (trailing bytes after tensor '" + previous->name + "')" : std::string()));
  }

  std::string m_path;
  std::shared_ptr<const detail::mapped_file> m_map;  // shared by copies
  read_limits m_limits;
  std::uint64_t m_data_start = 0;
  std::map<std::string, tensor_info> m_tensors;
  nlohmann::json m_metadata;
};

/// Builds a safetensors file from tensors added one by one, then writes it atomically.
///
/// Tensors are stored in sorted-name order, as F32, F64, I32, I64 or U8 (little-endian); the
/// header lists `__metadata__` first, then the tensors, and is padded with spaces to a
/// multiple of 8 bytes, as the reference writer does. The writer copies the data it is given.
class safetensors_writer {
public:
  /// Adds an F32 tensor. @throws peft::invalid_argument for a bad name, shape or size
  void add(const std::string& name, const tensor& t) {
    check(name, t.shape, t.data.size(), "add");
    add_raw(name, safetensors_dtype::f32, t.shape, t.data.data(), t.data.size());
  }
  /// Adds an F32 tensor of shape @p shape from @p data (row-major, numel elements).
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& data) {
    check(name, shape, data.size(), "add");
    add_raw(name, safetensors_dtype::f32, shape, data.data(), data.size());
  }
  /// Adds an F64 tensor (double precision preserved).
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<double>& data) {
    check(name, shape, data.size(), "add");
    add_raw(name, safetensors_dtype::f64, shape, data.data(), data.size());
  }
  /// Adds an I64 tensor.
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& data) {
    check(name, shape, data.size(), "add");
    add_raw(name, safetensors_dtype::i64, shape, data.data(), data.size());
  }
  /// Adds an I32 tensor.
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<std::int32_t>& data) {
    check(name, shape, data.size(), "add");
    add_raw(name, safetensors_dtype::i32, shape, data.data(), data.size());
  }
  /// Adds a U8 tensor (one byte per element, e.g. a bit-packed mask).
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<std::uint8_t>& data) {
    check(name, shape, data.size(), "add");
    add_raw(name, safetensors_dtype::u8, shape, data.data(), data.size());
  }

  /// Sets a `__metadata__` entry (string to string).
  void set_metadata(const std::string& key, const std::string& value) { m_metadata[key] = value; }

  bool contains(const std::string& name) const { return m_entries.count(name) != 0; }
  std::size_t size() const noexcept { return m_entries.size(); }

  /// The complete file as bytes.
  std::string serialize() const {
    std::string out = header_with_length();
    for (const auto& kv : m_entries) out += kv.second.bytes;
    return out;
  }

  /// Writes the file atomically: on failure, a previous file at @p path is left unchanged.
  /// @throws peft::io_error naming @p path
  void save(const std::string& path) const {
    atomic_file_writer w(path);
    w.write(header_with_length());
    for (const auto& kv : m_entries) w.write(kv.second.bytes);
    w.commit();
  }

private:
  struct entry {
    safetensors_dtype dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;
  };

  void check(const std::string& name, const std::vector<std::int64_t>& shape, std::size_t size,
             const char* method) const {
    const std::string where = std::string("safetensors_writer::") + method + ": tensor '" + name + "'";
    if (name.empty()) throw invalid_argument(std::string("safetensors_writer::") + method + ": empty tensor name");
    if (name == "__metadata__") throw invalid_argument(where + ": the name is reserved for metadata");
    if (m_entries.count(name)) throw invalid_argument(where + ": duplicate name");
    std::uint64_t n = 1;
    for (std::size_t k = 0; k < shape.size(); ++k) {
      if (shape[k] < 0)
        throw invalid_argument(where + ": shape dimension " + std::to_string(k) + " expected >= 0, got " +
                               std::to_string(shape[k]));
      n *= static_cast<std::uint64_t>(shape[k]);
    }
    if (n != size)
      throw invalid_argument(where + ": data size expected " + std::to_string(n) + " (numel of shape), got " +
                             std::to_string(size));
  }

  template <typename T>
  void add_raw(const std::string& name, safetensors_dtype dtype, const std::vector<std::int64_t>& shape, const T* data,
               std::size_t n) {
    entry e{dtype, shape, std::string()};
    e.bytes.reserve(n * sizeof(T));
    using bits_t = std::conditional_t<sizeof(T) == 1, std::uint8_t,
                                      std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
    for (std::size_t i = 0; i < n; ++i) detail::store_le(e.bytes, detail::bit_cast<bits_t>(data[i]));
    m_entries.emplace(name, std::move(e));
  }

  std::string header_with_length() const {
    using json = nlohmann::json;
    std::string h = "{";
    bool first = true;
    if (!m_metadata.empty()) {
      h += "\"__metadata__\":" + json(m_metadata).dump();
      first = false;
    }
    std::uint64_t offset = 0;
    for (const auto& kv : m_entries) {
      if (!first) h += ",";
      first = false;
      const std::uint64_t end = offset + kv.second.bytes.size();
      h += json(kv.first).dump() + ":{\"dtype\":\"" + to_string(kv.second.dtype) + "\",\"shape\":" +
           json(kv.second.shape).dump() + ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) +
           "]}";
      offset = end;
    }
    h += "}";
    while (h.size() % 8 != 0) h += ' ';
    std::string out;
    detail::store_le<std::uint64_t>(out, h.size());
    return out + h;
  }

  std::map<std::string, entry> m_entries;
  std::map<std::string, std::string> m_metadata;
};

/// Writes @p tensors as F32 (sorted by name) with optional string @p metadata, atomically.
/// @throws peft::invalid_argument for a tensor whose data size does not match its shape;
///   peft::io_error naming @p path if writing fails (the previous file is then unchanged)
inline void save_safetensors(const std::string& path, const std::map<std::string, tensor>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  safetensors_writer w;
  for (const auto& kv : tensors) w.add(kv.first, kv.second);
  for (const auto& kv : metadata) w.set_metadata(kv.first, kv.second);
  w.save(path);
}

}  // namespace peft

#endif  // PEFT_IO_SAFETENSORS_HPP
