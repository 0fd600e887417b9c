// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TRAIN_TRAIN_STATE_HPP
#define PEFT_TRAIN_TRAIN_STATE_HPP

/// @file train_state.hpp
/// Everything `fit` needs to continue a run exactly where it stopped: parameter values,
/// optimizer state, step, both generators, the data order and position, early-stopping
/// bookkeeping and the training curve so far. Values are stored bit for bit (no text
/// round trip), so a resumed run ends with the same parameters as one never interrupted.
///
/// File layout: the magic `PEFTTRN1`, then length-prefixed little-endian fields, then a
/// 64-bit FNV-1a checksum of everything before it. Writes are atomic (`atomic_write`): a
/// failed or killed save leaves the previous state file as it was.

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"
#include "../optim/optimizer.hpp"

namespace peft {

/// The state of one `fit` run after `step` optimizer steps.
template <typename Scalar>
struct train_state {
  // What the run was started with; a resume with other settings is refused.
  std::uint64_t seed = 0;
  std::int64_t total_steps = 0;
  std::int64_t global_batch = 0;
  std::int64_t train_size = 0;
  // Where it is.
  std::int64_t step = 0;
  std::int64_t position = 0;  ///< next row of `order` to read
  double loss = 0;
  std::int64_t stale = 0;
  std::int64_t best_step = 0;
  /// The best evaluation: its score (the accuracy for classification; the first metric of the
  /// task's kind otherwise, task/kinds.hpp) and, for classification, its macro-F1.
  double best_accuracy = 0, best_macro_f1 = 0;
  std::int64_t best_examples = 0;
  std::vector<std::uint64_t> order;
  std::string order_rng, dropout_rng;  ///< `std::mt19937_64` states as the standard prints them
  vector<Scalar> params, best_params;
  optimizer_state<Scalar> optimizer;
  std::string csv;  ///< the training curve written so far
};

namespace detail {

inline std::uint64_t fnv1a(const char* p, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ULL;
  return h;
}

class state_writer {
public:
  template <typename T>
  void pod(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    m_out.append(b, sizeof(T));
  }
  void str(const std::string& s) {
    pod<std::uint64_t>(s.size());
    m_out += s;
  }
  template <typename T>
  void array(const T* p, std::size_t n) {
    pod<std::uint64_t>(n);
    m_out.append(reinterpret_cast<const char*>(p), n * sizeof(T));
  }
  std::string& bytes() noexcept { return m_out; }

private:
  std::string m_out;
};

/// Reads fields from `size` bytes at `data` (not copied; they must outlive the reader).
class state_reader {
public:
  state_reader(const char* data, std::size_t size, std::string path) : m_in(data), m_size(size), m_path(std::move(path)) {}
  template <typename T>
  T pod(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, m_in + m_pos, sizeof(T));
    m_pos += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const auto n = pod<std::uint64_t>(what);
    need(n, what);
    std::string s(m_in + m_pos, static_cast<std::size_t>(n));
    m_pos += static_cast<std::size_t>(n);
    return s;
  }
  template <typename T>
  std::vector<T> array(const char* what) {
    const auto n = pod<std::uint64_t>(what);
    if (n > (m_size - m_pos) / sizeof(T)) fail(what, "its length " + std::to_string(n) + " runs past the end");
    std::vector<T> v(static_cast<std::size_t>(n));
    if (n) std::memcpy(v.data(), m_in + m_pos, static_cast<std::size_t>(n) * sizeof(T));
    m_pos += static_cast<std::size_t>(n) * sizeof(T);
    return v;
  }
  bool at_end() const noexcept { return m_pos == m_size; }
  [[noreturn]] void fail(const char* what, const std::string& why) const {
    throw io_error("load_train_state: '" + m_path + "': field '" + what + "': " + why);
  }

private:
  void need(std::uint64_t n, const char* what) const {
    if (n > m_size - m_pos)
      fail(what, "expected " + std::to_string(n) + " more bytes, found " + std::to_string(m_size - m_pos) +
                     " (truncated file)");
  }
  const char* m_in;
  std::size_t m_size;
  std::string m_path;
  std::size_t m_pos = 0;
};

inline constexpr char train_state_magic[9] = "PEFTTRN1";

}  // namespace detail

/// Prints a generator's state the way the standard defines (exact, portable text).
inline std::string rng_state(const rng& g) {
  std::ostringstream os;
  os << g.engine();
  return os.str();
}

/// Restores a state printed by `rng_state`.
/// @throws invalid_argument if @p text is not a generator state
inline void set_rng_state(rng& g, const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 e;
  is >> e;
  if (!is) throw invalid_argument("set_rng_state: a std::mt19937_64 state expected, got unreadable text");
  g.engine() = e;
}

/// Writes @p st to @p path atomically.
/// @throws io_error naming @p path; the previous file is then unchanged
template <typename Scalar>
void save_train_state(const std::string& path, const train_state<Scalar>& st) {
  detail::state_writer w;
  w.bytes().append(detail::train_state_magic, 8);
  w.pod<std::uint32_t>(sizeof(Scalar));
  w.pod(st.seed);
  w.pod(st.total_steps);
  w.pod(st.global_batch);
  w.pod(st.train_size);
  w.pod(st.step);
  w.pod(st.position);
  w.pod(st.loss);
  w.pod(st.stale);
  w.pod(st.best_step);
  w.pod(st.best_accuracy);
  w.pod(st.best_macro_f1);
  w.pod(st.best_examples);
  w.array(st.order.data(), st.order.size());
  w.str(st.order_rng);
  w.str(st.dropout_rng);
  w.array(st.params.data(), static_cast<std::size_t>(st.params.size()));
  w.array(st.best_params.data(), static_cast<std::size_t>(st.best_params.size()));
  const auto& o = st.optimizer;
  w.str(o.kind);
  std::vector<std::int64_t> sizes(o.store_sizes.begin(), o.store_sizes.end());
  w.array(sizes.data(), sizes.size());
  w.array(o.steps.data(), o.steps.size());
  w.pod<std::uint64_t>(o.buffer_names.size());
  for (std::size_t i = 0; i < o.buffer_names.size(); ++i) {
    w.str(o.buffer_names[i]);
    w.array(o.buffers.at(i).data(), static_cast<std::size_t>(o.buffers.at(i).size()));
  }
  w.str(st.csv);
  const std::uint64_t sum = detail::fnv1a(w.bytes().data(), w.bytes().size());
  w.pod(sum);
  atomic_write(path, w.bytes());
}

/// Reads a state written by `save_train_state`.
/// @throws io_error naming @p path and the field for a missing, truncated, corrupt or
///   foreign file, or one written for another scalar type
template <typename Scalar>
train_state<Scalar> load_train_state(const std::string& path) {
  const std::string bytes = detail::read_file(path, "load_train_state");
  if (bytes.size() < 16 || std::memcmp(bytes.data(), detail::train_state_magic, 8) != 0)
    throw io_error("load_train_state: '" + path + "': not a peft training state (magic 'PEFTTRN1' expected)");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != detail::fnv1a(bytes.data(), bytes.size() - 8))
    throw io_error("load_train_state: '" + path + "': checksum mismatch (the file is corrupt or truncated)");
  detail::state_reader r(bytes.data() + 8, bytes.size() - 16, path);  // between the magic and the checksum
  const auto scalar = r.pod<std::uint32_t>("scalar size");
  if (scalar != sizeof(Scalar))
    r.fail("scalar size", "expected " + std::to_string(sizeof(Scalar)) + " bytes, found " + std::to_string(scalar));
  train_state<Scalar> st;
  st.seed = r.pod<std::uint64_t>("seed");
  st.total_steps = r.pod<std::int64_t>("total steps");
  st.global_batch = r.pod<std::int64_t>("global batch");
  st.train_size = r.pod<std::int64_t>("train size");
  st.step = r.pod<std::int64_t>("step");
  st.position = r.pod<std::int64_t>("position");
  st.loss = r.pod<double>("loss");
  st.stale = r.pod<std::int64_t>("stale");
  st.best_step = r.pod<std::int64_t>("best step");
  st.best_accuracy = r.pod<double>("best accuracy");
  st.best_macro_f1 = r.pod<double>("best macro-F1");
  st.best_examples = r.pod<std::int64_t>("best examples");
  st.order = r.array<std::uint64_t>("order");
  st.order_rng = r.str("order generator");
  st.dropout_rng = r.str("dropout generator");
  const auto p = r.array<Scalar>("parameters");
  st.params = Eigen::Map<const vector<Scalar>>(p.data(), static_cast<index>(p.size()));
  const auto bp = r.array<Scalar>("best parameters");
  st.best_params = Eigen::Map<const vector<Scalar>>(bp.data(), static_cast<index>(bp.size()));
  auto& o = st.optimizer;
  o.kind = r.str("optimizer kind");
  for (auto s : r.array<std::int64_t>("optimizer store sizes")) o.store_sizes.push_back(static_cast<index>(s));
  o.steps = r.array<std::int64_t>("optimizer steps");
  const auto nbuf = r.pod<std::uint64_t>("optimizer buffers");
  if (nbuf > 16) r.fail("optimizer buffers", "expected at most 16, found " + std::to_string(nbuf));
  for (std::uint64_t i = 0; i < nbuf; ++i) {
    o.buffer_names.push_back(r.str("optimizer buffer name"));
    const auto b = r.array<Scalar>("optimizer buffer");
    o.buffers.push_back(Eigen::Map<const vector<Scalar>>(b.data(), static_cast<index>(b.size())));
  }
  st.csv = r.str("training curve");
  if (!r.at_end()) r.fail("end", "unexpected bytes after the last field");
  return st;
}

}  // namespace peft

#endif  // PEFT_TRAIN_TRAIN_STATE_HPP
